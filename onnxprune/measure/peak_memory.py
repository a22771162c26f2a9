"""Peak memory of a model's onnxruntime session and runs, measured in a fresh process (docs/bench.md):
VmHWM reset through /proc/self/clear_refs after the imports, ru_maxrss off Linux."""

from __future__ import annotations

import gc
import sys
import time
from typing import Any, Optional, Sequence

from onnxprune.errors import UserError
from onnxprune.read.inputs import InputSpec, random_inputs


def _proc_status() -> dict[str, int]:
    """VmRSS / VmHWM in bytes from /proc/self/status (Linux); {} elsewhere."""
    found = {}
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    found[key] = int(rest.split()[0]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        return {}
    return found


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0). False where not permitted/available."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _ru_maxrss() -> Optional[int]:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, kB elsewhere


# ---------------------------------------------------------------------------------------------
# The measurement (runs in a fresh process)
# ---------------------------------------------------------------------------------------------


def _measure(
    model_path: str, specs: Sequence[InputSpec], seed: int, runs: int, warmup: int, threads: int
) -> dict[str, Any]:
    """Create a session, warm up, time `runs` runs; returns raw numbers. Top-level: spawn pickles it."""
    import onnxruntime as ort

    feeds = random_inputs(specs, seed)
    gc.collect()
    status = _proc_status()
    if status:
        rss_before = status["VmRSS"]
        reset = _reset_peak()
        method = (
            "VmHWM - VmRSS before session (peak reset via /proc/self/clear_refs)"
            if reset
            else "VmHWM - VmRSS before session (peak not resettable; includes earlier peak)"
        )
    else:
        rss_before = _ru_maxrss() or 0
        method = "ru_maxrss after - ru_maxrss before session"

    options = ort.SessionOptions()
    options.log_severity_level = 4  # our one-line error says what failed; no onnxruntime log lines
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])
        for _ in range(warmup):
            session.run(None, feeds)
        latencies = []
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feeds)
            latencies.append(time.perf_counter() - start)
        cpu_s, wall_s = time.process_time() - cpu_start, time.perf_counter() - wall_start
    except Exception as exc:  # onnxruntime raises its own types (Fail, InvalidGraph, RuntimeException...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"error": f"{model_path}: onnxruntime cannot run it ({type(exc).__name__}: {first})"}

    status = _proc_status()
    if status:
        peak_process = status["VmHWM"]
    else:
        peak_process = _ru_maxrss() or 0
    return {
        "latencies_s": latencies,
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "peak_memory_bytes": max(0, peak_process - rss_before),
        "process_peak_rss_bytes": peak_process,
        "memory_method": method,
        "onnxruntime": ort.__version__,
    }


def _measure_isolated(*args: Any) -> dict[str, Any]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(_measure, *args).result()
    except BrokenProcessPool:
        if not _can_start_python():
            raise UserError(
                f"{args[0]}: cannot start a fresh Python ({sys.executable}) to measure in; under "
                f"qemu-user without binfmt run build/arm/bin/python3.11 (docs/edge.md), or "
                f"pass --in-process"
            ) from None
        raise UserError(
            f"{args[0]}: the benchmark process died (out of memory, or onnxruntime crashed); try a smaller --batch"
        ) from None


def _can_start_python() -> bool:
    """Whether sys.executable starts: under qemu-user without binfmt the host cannot run it."""
    import subprocess

    try:
        return subprocess.run([sys.executable, "-c", ""], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
