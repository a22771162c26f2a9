"""Export the model zoo to ONNX with both torch exporters, with BatchNorm folded or kept.

Files: ``{out}/{model}.{exporter}.{bn}.onnx``

* exporter ``legacy``: ``torch.onnx.export(..., dynamo=False)`` (TorchScript exporter).
  ``folded``: ``do_constant_folding=True`` (the default), which in eval mode fuses each
  BatchNormalization into the preceding Conv. ``kept``: ``do_constant_folding=False``.
* exporter ``dynamo``: ``torch.onnx.export(..., dynamo=True, external_data=False)``.
  ``folded``: the exporter's default ``optimize=True`` pipeline (onnxscript's optimizer, whose
  default rewrite rules include ``fuse_batchnorm_into_conv``). ``kept``: the *same* optimizer
  pipeline run with the three BatchNorm-fusion rules taken out, so the kept graph differs
  from the folded one only by the BatchNormalization nodes (plain ``optimize=False`` also keeps
  BN, but leaves the graph unoptimised: e.g. the Flatten's target shape is computed by
  Constant+Concat nodes at run time). One dynamo trace serves both variants.

All exports: eval mode, static batch 1, input ``input``, output ``logits``, opset ``OPSET``,
weights inside the .onnx file. ``ensure_zoo`` exports only missing or stale files (a
manifest in the output folder records, per file, a key over the zoo sources, the package
versions and the opset), holds an ``fcntl`` lock on the folder meanwhile (safe under
pytest-xdist) and writes every file atomically (temp file + ``os.replace``).

CLI: ``python -m models.export --out build/zoo [--models a,b] [--exporters legacy,dynamo]
[--bn folded,kept] [--force] [--jobs N]``
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import onnx
import torch
from torch import nn

from models.exporters import INPUT_NAME, OPSET, OUTPUT_NAME, export_dynamo, export_legacy
from models.zoo import BN_VARIANTS, EXPORTERS, MODELS, build
from onnxprune.read.save import atomic_write

__all__ = ["OPSET", "SEED", "zoo_path", "export_model", "ensure_zoo", "count_macs", "main"]

SEED = 0
MANIFEST = ".zoo-manifest.json"
LOCKFILE = ".zoo.lock"

_HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------------------
# Paths and staleness
# --------------------------------------------------------------------------------------
def _check_variant(name: str, exporter: str, bn: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; known: {', '.join(EXPORTERS)}")
    if bn not in BN_VARIANTS:
        raise ValueError(f"unknown bn variant {bn!r}; known: {', '.join(BN_VARIANTS)}")


def zoo_path(out_dir: str | os.PathLike, name: str, exporter: str, bn: str) -> Path:
    """Where ``export_model``/``ensure_zoo`` put model ``name`` for this exporter and bn variant."""
    _check_variant(name, exporter, bn)
    return Path(out_dir) / f"{name}.{exporter}.{bn}.onnx"


def _build_key() -> str:
    """Changes whenever anything that shapes the exported files changes."""
    import onnxscript

    h = hashlib.sha256()
    for src in ("nets.py", "zoo.py", "exporters.py", "export.py"):
        h.update((_HERE / src).read_bytes())
    h.update(f"torch={torch.__version__};onnx={onnx.__version__};onnxscript={onnxscript.__version__}".encode())
    h.update(f"opset={OPSET};seed={SEED}".encode())
    return h.hexdigest()[:16]


def _read_manifest(out_dir: Path) -> dict[str, str]:
    try:
        return json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOCKFILE, "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------
# Exporting
# --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Export work is mostly Python; one intra-op thread per process avoids OpenMP spin-wait
    collapse when the box is oversubscribed (xdist workers, parallel export jobs)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _finish(proto: onnx.ModelProto, name: str, exporter: str, bn: str, key: str) -> onnx.ModelProto:
    ops = {n.op_type for n in proto.graph.node}
    if (bn == "kept") != ("BatchNormalization" in ops):
        raise RuntimeError(
            f"{name}.{exporter}.{bn}: BatchNormalization nodes {'missing' if bn == 'kept' else 'left over'}"
        )
    if [i.name for i in proto.graph.input] != [INPUT_NAME] or [o.name for o in proto.graph.output] != [OUTPUT_NAME]:
        raise RuntimeError(f"{name}.{exporter}.{bn}: unexpected graph inputs/outputs")
    meta = {
        "onnxprune.zoo.model": name,
        "onnxprune.zoo.exporter": exporter,
        "onnxprune.zoo.bn": bn,
        "onnxprune.zoo.seed": str(SEED),
        "onnxprune.zoo.key": key,
        "onnxprune.zoo.torch": torch.__version__,
    }
    kept = [p for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    return proto


def _export_variants(name: str, exporter: str, bns: Sequence[str], out_dir: Path, key: str) -> list[Path]:
    spec = MODELS[name]
    model = build(name, SEED)
    x = torch.randn(spec.input_shape, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        if exporter == "legacy":
            protos = {bn: export_legacy(model, x, bn) for bn in bns}
        else:
            protos = export_dynamo(model, x, bns)
    paths = []
    for bn in bns:
        proto = _finish(protos[bn], name, exporter, bn, key)
        path = zoo_path(out_dir, name, exporter, bn)
        data = proto.SerializeToString()
        onnx.checker.check_model(data)  # bytes: no second serialisation of a ~100 MB model
        atomic_write(path, lambda handle, data=data: handle.write(data), mode="wb")
        paths.append(path)
    return paths


def _record(out_dir: Path, paths: Iterable[Path], key: str) -> None:
    manifest = _read_manifest(out_dir)
    for p in paths:
        manifest[p.name] = key
    atomic_write(out_dir / MANIFEST, lambda handle: handle.write(json.dumps(manifest, indent=1, sort_keys=True) + "\n"))


def export_model(name: str, exporter: str, bn: str, out_dir: str | os.PathLike) -> Path:
    """Export one variant unconditionally (atomic write, under the folder lock); return its path."""
    _check_variant(name, exporter, bn)
    out = Path(out_dir)
    key = _build_key()
    with _locked(out):
        paths = _export_variants(name, exporter, [bn], out, key)
        _record(out, paths, key)
    return paths[0]


def _export_task(name: str, exporter: str, bns: list[str], out_dir: str, key: str) -> tuple[list[str], float]:
    """Worker-process entry point for parallel exports: returns (paths, seconds)."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    paths = _export_variants(name, exporter, bns, Path(out_dir), key)
    return [str(p) for p in paths], time.perf_counter() - t0


# Rough relative export cost, to start the longest tasks first when exporting in parallel.
_COST = {"resnet50_imagenet": 6, "resnet50_cifar": 5, "mobilenetv2_imagenet": 4, "mobilenetv2_cifar": 3}


def _default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def ensure_zoo(
    out_dir: str | os.PathLike,
    names: Iterable[str] | None = None,
    exporters: Iterable[str] = EXPORTERS,
    bns: Iterable[str] = BN_VARIANTS,
    *,
    force: bool = False,
    jobs: int | None = None,
    report=None,
) -> list[Path]:
    """Export the missing or stale variants of ``names`` (default: every model); return all paths.

    ``jobs``: worker processes when more than one (model, exporter) pair needs exporting
    (default: min(2, CPUs)); 1 exports in this process. ``report(name, exported_variants,
    seconds)`` is called once per model when given (seconds: export time of that model's
    variants, summed over workers).
    """
    out = Path(out_dir)
    names = list(MODELS) if names is None else list(names)
    exporters, bns = list(exporters), list(bns)
    for n in names:
        for e in exporters:
            for b in bns:
                _check_variant(n, e, b)
    key = _build_key()
    all_paths = [zoo_path(out, n, e, b) for n in names for e in exporters for b in bns]

    def stale(manifest: dict[str, str], n: str, e: str, b: str) -> bool:
        p = zoo_path(out, n, e, b)
        return force or manifest.get(p.name) != key or not p.is_file()

    # Fast path without the lock: everything present and current.
    if out.is_dir() and not force:
        manifest = _read_manifest(out)
        if not any(stale(manifest, n, e, b) for n in names for e in exporters for b in bns):
            if report:
                for n in names:
                    report(n, [], 0.0)
            return all_paths

    with _locked(out):
        manifest = _read_manifest(out)  # another process may have done the work meanwhile
        tasks = [(n, e, [b for b in bns if stale(manifest, n, e, b)]) for n in names for e in exporters]
        tasks = [t for t in tasks if t[2]]
        done: dict[str, list[str]] = {n: [] for n in names}
        seconds: dict[str, float] = {n: 0.0 for n in names}
        pending = {n: sum(t[0] == n for t in tasks) for n in names}

        def finished(n: str, e: str, todo: list[str], paths: Iterable[Path], secs: float) -> None:
            _record(out, paths, key)
            done[n] += [f"{e}.{b}" for b in todo]
            seconds[n] += secs
            pending[n] -= 1
            if report and pending[n] == 0:
                canonical = [f"{e}.{b}" for e in exporters for b in bns]
                report(n, sorted(done[n], key=canonical.index), seconds[n])

        if report:
            for n in names:
                if pending[n] == 0:
                    report(n, [], 0.0)
        jobs = min(jobs or _default_jobs(), len(tasks))
        if jobs <= 1:
            for n, e, todo in tasks:
                t0 = time.perf_counter()
                with _torch_threads(1):
                    paths = _export_variants(n, e, todo, out, key)
                finished(n, e, todo, paths, time.perf_counter() - t0)
        else:
            import concurrent.futures as cf
            import multiprocessing

            order = sorted(tasks, key=lambda t: (t[1] != "dynamo", -_COST.get(t[0], 1)))
            ctx = multiprocessing.get_context("spawn")  # no fork of a process that imported torch
            with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                futures = {pool.submit(_export_task, n, e, todo, str(out), key): (n, e, todo) for n, e, todo in order}
                for fut in cf.as_completed(futures):
                    n, e, todo = futures[fut]
                    paths, secs = fut.result()
                    finished(n, e, todo, [Path(p) for p in paths], secs)
    return all_paths


# --------------------------------------------------------------------------------------
# Summary figures
# --------------------------------------------------------------------------------------
@torch.no_grad()
def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of Conv2d and Linear layers (bias not counted), one forward pass."""
    total = 0

    def hook(m: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        model.eval()(torch.zeros(tuple(input_shape)))
    finally:
        for h in handles:
            h.remove()
    return total


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------
def _csv(value: str, known: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in known]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(bad) or '(none given)'}; choose from {', '.join(known)}"
        )
    return items


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder (e.g. build/zoo)")
    parser.add_argument(
        "--models",
        type=lambda v: _csv(v, list(MODELS), "model"),
        default=list(MODELS),
        help=f"comma-separated subset of: {','.join(MODELS)}",
    )
    parser.add_argument(
        "--exporters",
        type=lambda v: _csv(v, EXPORTERS, "exporter"),
        default=list(EXPORTERS),
        help="comma-separated subset of: legacy,dynamo",
    )
    parser.add_argument(
        "--bn",
        type=lambda v: _csv(v, BN_VARIANTS, "bn variant"),
        default=list(BN_VARIANTS),
        help="comma-separated subset of: folded,kept",
    )
    parser.add_argument("--force", action="store_true", help="re-export even the up-to-date files")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: min(2, CPUs))")
    args = parser.parse_args(argv)

    t_all = time.perf_counter()

    def report(name: str, done: list[str], seconds: float) -> None:
        spec = MODELS[name]
        model = spec.factory()
        params = sum(p.numel() for p in model.parameters())
        macs = count_macs(model, spec.input_shape)
        what = f"exported {' '.join(done)} in {seconds:.1f} s" if done else "up to date"
        shape = "x".join(map(str, spec.input_shape))
        print(f"{name:22s} {params / 1e6:6.2f} M params {macs / 1e6:7.1f} M MACs  input {shape:13s} {what}", flush=True)

    with torch.random.fork_rng(devices=[]), _torch_threads(1):
        ensure_zoo(args.out, args.models, args.exporters, args.bn, force=args.force, jobs=args.jobs, report=report)
    print(
        f"zoo in {args.out}: {len(args.models)} models x {len(args.exporters)} exporters x "
        f"{len(args.bn)} bn variants, opset {OPSET}, {time.perf_counter() - t_all:.1f} s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
