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

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from onnxprune.errors import UserError
from onnxprune.read.inputs import InputSpec, input_specs, make_inputs, random_inputs

from .machine import machine_info
from .peak_memory import _measure, _measure_isolated

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
