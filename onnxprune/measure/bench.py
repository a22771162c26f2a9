"""Benchmark ONNX models with onnxruntime on the CPU: latency, throughput, memory, CPU, energy.

Pure Python + onnxruntime + numpy (+ onnx to read the graph inputs), so it runs unchanged on
an aarch64 board (Raspberry Pi, Jetson) next to the ARM onnxruntime wheel. How each number is
measured is documented in docs/bench.md; in short:

* latency: wall time of each `session.run` (time.perf_counter), after `warmup` untimed runs;
  median / p90 / p99 over `runs` timed runs (numpy linear percentiles).
* throughput: images per second = batch * runs / (sum of the timed run latencies).
* peak memory: each model is measured in a fresh process (multiprocessing "spawn"). There, after
  the imports and the random inputs exist, the resident set (VmRSS) is read, the peak counter
  (VmHWM) is reset through /proc/self/clear_refs, the session is created and all runs are done;
  peak memory = VmHWM - VmRSS before. So it counts what loading the model, the session's arena
  and the runs need, not the Python interpreter. Off Linux, ru_maxrss stands in for VmHWM.
* CPU utilisation: process CPU time (all threads) / wall time over the timed runs, in percent of
  one core (two busy threads read 200 %).
* energy: an ESTIMATE, not a measurement: FLOPs x 2.3 pJ plus a memory term, by `energy_model`:
  "horowitz" (default) 640 pJ per 32-bit DRAM access (Horowitz, ISSCC 2014, 45 nm), "paper" 640 pJ
  per MB as Zawish et al., IEEE TAI 2024 print it. FLOPs (multiply-accumulates) and memory come
  from `onnxprune.profile`.

Batch: a model whose first input dimension is symbolic runs with `batch` as that dimension. A
model with a fixed first dimension runs only with batch equal to it: anything else is a
UserError (re-export with a dynamic batch axis); the graph is never rewritten.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from onnxprune.errors import UserError
from onnxprune.read.inputs import InputSpec, input_specs, make_inputs, random_inputs

PathLike = Union[str, os.PathLike]

__all__ = [
    "bench",
    "bench_many",
    "compare",
    "report_json",
    "machine_info",
    "BenchResult",
    "estimate_energy_pj",
    "ENERGY_NOTE",
    "ENERGY_MODELS",
    "energy_note",
    "InputSpec",
    "input_specs",
    "make_inputs",
    "random_inputs",
]

# Energy models (ESTIMATES). Both price a multiply-accumulate at the paper's 2.3 pJ; they differ
# in the memory term. "horowitz": 640 pJ per 32-bit DRAM access, the figure of Horowitz,
# "Computing's energy problem", ISSCC 2014 (45 nm), with one access per 4 bytes of the profile's
# memory. "paper": 640 pJ per MB, as Zawish et al., IEEE TAI 2024 print it, which makes the memory
# term negligible (0.04 of 721.6 uJ for VGG-16), so the energy ratio equals the FLOPs ratio.
ENERGY_PJ_PER_FLOP = 2.3
ENERGY_PJ_PER_MB = 640.0  # "paper"
ENERGY_PJ_PER_DRAM_ACCESS = 640.0  # "horowitz": one 32-bit word
DRAM_WORD_BYTES = 4
ENERGY_MODELS = ("horowitz", "paper")
DEFAULT_ENERGY_MODEL = "horowitz"
_NOTES = {
    "horowitz": "ESTIMATE, not a measurement: FLOPs x 2.3 pJ + memory bytes / 4 x 640 pJ (640 pJ per 32-bit DRAM "
    "access, Horowitz, ISSCC 2014, 45 nm)",
    "paper": "ESTIMATE, not a measurement: FLOPs x 2.3 pJ + memory MB x 640 pJ (the units printed in Zawish et al., "
    "IEEE TAI 2024; the memory term is then negligible)",
}
ENERGY_NOTE = _NOTES[DEFAULT_ENERGY_MODEL]


def _energy_model(model: str) -> str:
    if model not in ENERGY_MODELS:
        raise UserError(
            f"--energy-model {model!r}: choose horowitz (640 pJ per 32-bit DRAM access) or paper (640 pJ per MB)"
        )
    return model


def energy_note(model: str = DEFAULT_ENERGY_MODEL) -> str:
    """How the energy ESTIMATE of `model` ("horowitz" or "paper") is computed, in one sentence."""
    return _NOTES[_energy_model(model)]


def estimate_energy_pj(flops: int, memory_bytes: int, model: str = DEFAULT_ENERGY_MODEL) -> float:
    """The energy ESTIMATE in picojoules: FLOPs x 2.3 pJ plus a memory term, by `model`:
    "horowitz" (default) memory_bytes / 4 x 640 pJ; "paper" memory_bytes / 1e6 x 640 pJ."""
    if _energy_model(model) == "paper":
        return flops * ENERGY_PJ_PER_FLOP + (memory_bytes / 1e6) * ENERGY_PJ_PER_MB
    return flops * ENERGY_PJ_PER_FLOP + (memory_bytes / DRAM_WORD_BYTES) * ENERGY_PJ_PER_DRAM_ACCESS


# ---------------------------------------------------------------------------------------------
# Memory probes
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class BenchResult:
    model: str
    file_bytes: int  # os.path.getsize of the .onnx file
    external_data_bytes: int  # side files holding weights (models > 2 GiB), else 0
    runs: int
    warmup: int
    threads: int
    batch: int  # first dimension fed (images per run)
    seed: int
    inputs: dict[str, list[int]]  # shapes fed
    latency_ms: dict[str, float]  # median, p90, p99, mean, min, max, std
    throughput_ips: float  # images per second
    peak_memory_bytes: int  # peak RSS growth of creating the session + running it
    process_peak_rss_bytes: int  # peak RSS of the whole measuring process
    memory_method: str
    cpu_util_pct: float  # process CPU time / wall time over the timed runs, 100 = one core
    params: Optional[int] = None  # from onnxprune.profile (None if profiling failed)
    flops: Optional[int] = None  # multiply-accumulates of one run of the batch
    memory_bytes: Optional[int] = None  # the profile's memory figure
    energy_pj: Optional[float] = None  # ESTIMATE for one run of the batch
    energy_model: str = DEFAULT_ENERGY_MODEL
    energy_note: str = ENERGY_NOTE
    profile_error: Optional[str] = None
    isolated: bool = True  # measured in a fresh spawned process
    onnxruntime: str = ""
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return self.file_bytes + self.external_data_bytes

    @property
    def median_ms(self) -> float:
        return self.latency_ms["median"]

    @property
    def energy_uj_per_image(self) -> Optional[float]:
        return None if self.energy_pj is None else self.energy_pj / 1e6 / self.batch

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["size_bytes"] = self.size_bytes
        data["energy_uj_per_image"] = self.energy_uj_per_image
        return data


def _cpuinfo() -> dict[str, str]:
    """The first processor's entries of /proc/cpuinfo ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def machine_info() -> dict[str, Any]:
    """Where the numbers come from: architecture, CPU model name, cores, vector extensions,
    onnxruntime version, and whether the CPU is emulated (qemu-user shows the host's /proc/cpuinfo:
    an x86 CPU under an aarch64 Python), so ARM, emulated-ARM and x86 figures are never mixed."""
    fields = _cpuinfo()
    cpu = next((fields[k] for k in ("model name", "Model", "Hardware") if fields.get(k)), platform.processor() or "")
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    x86_cpuinfo = "sse2" in flags
    arch = platform.machine()
    emulated = arch.lower() in ("aarch64", "arm64", "armv7l") and x86_cpuinfo
    info = {
        "arch": arch,
        "cpu": f"emulated (qemu-user) on {cpu}" if emulated else cpu,
        "cores": os.cpu_count(),
        "isa": sorted(
            flags & {"avx2", "avx512f", "avx512_vnni", "avx512vnni", "fma", "asimd", "asimddp", "sve", "neon", "i8mm"}
        )
        if not emulated
        else [],
        "emulated": emulated,
        "system": platform.system(),
        "python": platform.python_version(),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    return info


def _external_data_bytes(model_path: Path) -> int:
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # load_model has already vetted the file
        return 0
    locations = set()
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    locations.add(entry.value)
    total = 0
    for location in locations:
        target = model_path.parent / location
        if target.is_file():
            total += target.stat().st_size
    return total


def _profile(model_path: Path, specs: Sequence[InputSpec]) -> tuple[Optional[dict[str, int]], Optional[str]]:
    try:
        from onnxprune.analysis.complexity import profile
    except ImportError as exc:
        return None, f"onnxprune.profile unavailable ({exc})"
    try:
        totals = profile(str(model_path), input_shapes={s.name: list(s.shape) for s in specs}).totals
        return {k: int(totals[k]) for k in ("params", "flops", "memory_bytes")}, None
    except UserError as exc:
        return None, str(exc)


def bench(
    model_path: PathLike,
    runs: int = 100,
    warmup: int = 10,
    threads: int = 1,
    batch: int = 1,
    seed: int = 0,
    input_shapes: Optional[dict[str, list[int]]] = None,
    isolate: bool = True,
    energy_model: str = DEFAULT_ENERGY_MODEL,
) -> BenchResult:
    """Benchmark one model on the onnxruntime CPU provider; see the module docstring for methods.

    `threads` sets intra_op_num_threads (inter_op 1, sequential execution). `isolate=False`
    measures in this process (faster to start; peak memory then also reflects this process).
    Raises UserError for bad files, bad settings, or a model onnxruntime cannot run.
    """
    path = Path(model_path)
    for flag, value, least in (
        ("--runs", runs, 1),
        ("--warmup", warmup, 0),
        ("--threads", threads, 1),
        ("--batch", batch, 1),
    ):
        if not isinstance(value, int) or value < least:
            raise UserError(f"{flag} {value}: must be an integer >= {least}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"--seed {seed}: must be a non-negative integer")
    _energy_model(energy_model)
    specs = input_specs(path, batch, input_shapes)  # vets the file too (UserError on junk)
    args = (str(path), specs, seed, runs, warmup, threads)
    raw = _measure_isolated(*args) if isolate else _measure(*args)
    if "error" in raw:
        raise UserError(raw["error"])

    latencies_ms = np.asarray(raw["latencies_s"], dtype=np.float64) * 1e3
    median, p90, p99 = (float(v) for v in np.percentile(latencies_ms, [50, 90, 99]))
    fed_batch = specs[0].shape[0] if specs[0].shape else 1
    totals, profile_error = _profile(path, specs)
    result = BenchResult(
        model=str(path),
        file_bytes=os.path.getsize(path),
        external_data_bytes=_external_data_bytes(path),
        runs=runs,
        warmup=warmup,
        threads=threads,
        batch=fed_batch,
        seed=seed,
        inputs={s.name: list(s.shape) for s in specs},
        latency_ms={
            "median": median,
            "p90": p90,
            "p99": p99,
            "mean": float(latencies_ms.mean()),
            "min": float(latencies_ms.min()),
            "max": float(latencies_ms.max()),
            "std": float(latencies_ms.std()),
        },
        throughput_ips=fed_batch * runs / max(float(latencies_ms.sum()) / 1e3, 1e-12),
        peak_memory_bytes=int(raw["peak_memory_bytes"]),
        process_peak_rss_bytes=int(raw["process_peak_rss_bytes"]),
        memory_method=raw["memory_method"] + (" in a fresh spawned process" if isolate else " in this process"),
        cpu_util_pct=100.0 * raw["cpu_s"] / max(raw["wall_s"], 1e-12),
        profile_error=profile_error,
        isolated=isolate,
        onnxruntime=raw["onnxruntime"],
        machine=machine_info(),
    )
    if totals:
        result.params, result.flops, result.memory_bytes = totals["params"], totals["flops"], totals["memory_bytes"]
        result.energy_pj = estimate_energy_pj(result.flops, result.memory_bytes, energy_model)
    result.energy_model, result.energy_note = energy_model, energy_note(energy_model)
    return result


def _ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or denominator is None:
        return None
    if numerator == denominator:
        return 1.0  # the baseline against itself, even where a figure is 0
    if denominator == 0:
        return None
    return numerator / denominator


def compare(results: Sequence[BenchResult]) -> list[dict[str, Optional[float]]]:
    """Ratios of each result against the first (the baseline, whose ratios are all 1.0).

    speedup = baseline median latency / this median latency (> 1: faster);
    throughput/size/memory/params/flops/energy ratios = this / baseline (< 1: smaller).
    """
    if not results:
        return []
    base = results[0]
    rows = []
    for r in results:
        rows.append(
            {
                "speedup": _ratio(base.median_ms, r.median_ms),
                "throughput_ratio": _ratio(r.throughput_ips, base.throughput_ips),
                "size_ratio": _ratio(r.size_bytes, base.size_bytes),
                "peak_memory_ratio": _ratio(r.peak_memory_bytes, base.peak_memory_bytes),
                "params_ratio": _ratio(r.params, base.params),
                "flops_ratio": _ratio(r.flops, base.flops),
                "energy_ratio": _ratio(r.energy_uj_per_image, base.energy_uj_per_image),
            }
        )
    return rows


def bench_many(models: Sequence[PathLike], **kwargs: Any) -> list[BenchResult]:
    """bench() each model in turn (each in its own fresh process unless isolate=False)."""
    return [bench(m, **kwargs) for m in models]


def report_json(results: Sequence[BenchResult]) -> dict[str, Any]:
    """The --json payload: settings, the baseline, and every result with its ratios."""
    ratios = compare(results)
    first = results[0] if results else None
    return {
        "baseline": first.model if first else None,
        "settings": (
            {
                "runs": first.runs,
                "warmup": first.warmup,
                "threads": first.threads,
                "seed": first.seed,
                "onnxruntime": first.onnxruntime,
                "provider": "CPUExecutionProvider",
                "isolated": first.isolated,
            }
            if first
            else {}
        ),
        "machine": dict(first.machine, threads=first.threads) if first else machine_info(),
        "energy_note": first.energy_note if first else ENERGY_NOTE,
        "models": [dict(r.to_json(), vs_baseline=ratio) for r, ratio in zip(results, ratios)],
    }
