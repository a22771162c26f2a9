"""Measured trade-offs: shrink a model at several modes x targets, train each from scratch, bench it.

`sweep(model, modes, targets, data, out_dir, **train_kwargs) -> list[dict]` runs, in order, the
unpruned baseline (weights re-initialised, trained with the same settings) and every mode x target
(one after another here, or as Ray tasks: onnxprune/sweep/executors.py, onnxprune/sweep/run.py):

    RUNDIR/baseline/unpruned.onnx  trained.onnx  trained.train.jsonl  result.json
    RUNDIR/<MODE>-<target>/pruned.onnx  trained.onnx  trained.train.jsonl  result.json

Each run: shrink (init="reinit") -> train -> bench the trained model (onnxruntime CPU, 1 thread,
batch 1) -> result.json (written atomically, last). A run whose result.json exists is skipped, so an
interrupted sweep resumes where it stopped; a run without one is redone from its start. Results of
other settings (data, recipe, epochs, limits, seed, model) are refused rather than mixed.

After every run: RUNDIR/results.csv, RUNDIR/results.json (all finished runs, baseline first) and the
plots (PNG, matplotlib Agg): `tradeoffs.png` (five panels) and one file per figure,
`accuracy_vs_{params,flops,memory,latency,energy}.png`: test accuracy against that figure, one
curve per mode, the unpruned model as a black star (the paper's Figures 3-4).

torch, the trainer and matplotlib are imported only when a sweep runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable, Optional

from onnxprune.errors import UserError
from onnxprune.read.io import file_sha256
from onnxprune.read.save import save_json

from .outputs import COLUMNS, MODES, PLOTS, write_outputs

__all__ = ["sweep", "parse_modes", "parse_targets", "run_name", "COLUMNS", "PLOTS", "write_outputs"]

BASELINE = "baseline"
RESULT_NAME = "result.json"
SETTING_KEYS = (
    "model_sha",
    "data",
    "recipe",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "schedule",
    "weight_decay",
    "limit_train",
    "limit_test",
    "seed",
    "augment",
    "bench_runs",
    "step",
    "norm",
    "input_shapes",
    "teacher_sha",
    "init",
    "distill",
)
SETTING_DEFAULTS = {"init": "reinit"}  # what a result.json from before a setting existed was made with
TRAIN_KEYS = ("epochs", "batch_size", "optimizer", "lr", "schedule", "weight_decay", "limit_train", "limit_test")


# ------------------------------------------------------------------------------------------ input


def parse_modes(modes: str | Iterable[str]) -> list[str]:
    items = modes.split(",") if isinstance(modes, str) else list(modes)
    out: list[str] = []
    for item in items:
        mode = str(item).strip().upper()
        if not mode:
            continue
        if mode not in MODES:
            raise UserError(
                f"--modes: unknown mode {item!r}; choose from PA (params), FA (FLOPs), MA (memory), "
                f"LA (latency), e.g. --modes PA,FA,MA"
            )
        if mode not in out:
            out.append(mode)
    if not out:
        raise UserError("--modes: give at least one mode, e.g. --modes PA,FA,MA")
    return out


def parse_targets(targets: str | Iterable[float]) -> list[float]:
    items = targets.split(",") if isinstance(targets, str) else list(targets)
    out: list[float] = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise UserError(f"--targets: {item!r} is not a number; give fractions like 0.8,0.6,0.4,0.2") from None
        if not 0.0 < value < 1.0:
            raise UserError(
                f"--targets: {item!r} is outside (0, 1); a target is the fraction of the baseline to keep, e.g. 0.5"
            )
        if value not in out:
            out.append(value)
    if not out:
        raise UserError("--targets: give at least one fraction, e.g. --targets 0.8,0.6,0.4,0.2")
    return out


def run_name(mode: Optional[str], target: Optional[float]) -> str:
    return BASELINE if mode is None else f"{mode}-{target:g}"


def _out_dir(out_dir: str | os.PathLike, model: Path) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: is a file; give a folder for the sweep's outputs")
    if not out.parent.resolve().is_dir():
        raise UserError(f"-o {out}: folder {out.parent} does not exist; create it first")
    if out.resolve() == model.resolve():
        raise UserError(f"-o {out}: is the input model")
    return out


def file_fingerprint(path: Path) -> str:
    """The file's SHA-256, cut to 16 hex digits: the `model_sha` a sweep's settings record."""
    return file_sha256(path)[:16]


def _read_result(path: Path) -> Optional[dict]:
    try:
        with open(path) as handle:
            payload = json.load(handle)
    except (OSError, ValueError):
        return None  # unreadable: redo the run
    return payload if isinstance(payload, dict) and "accuracy" in payload else None


def sweep(
    model: str | os.PathLike,
    modes: str | Iterable[str] = ("PA", "FA", "MA"),
    targets: str | Iterable[float] = (0.8, 0.6, 0.4, 0.2),
    data: str = "cifar10",
    out_dir: str | os.PathLike = "sweep",
    *,
    recipe: str = "cpu",
    seed: int = 0,
    bench_runs: int = 50,
    step: float = 0.1,
    progress: bool = True,
    train_progress: bool = False,
    console=None,
    on_run: Optional[Callable[[dict, bool], None]] = None,
    input_shapes: Optional[dict] = None,
    executor=None,
    teacher: str | os.PathLike | None = None,
    init: str = "reinit",
    distill: Optional[dict] = None,
    **train_kwargs,
) -> list[dict]:
    """Baseline + every mode x target: shrink (reinit), train, bench; returns every finished run's row.

    `train_kwargs` go to `trainers.train` (epochs, limit_train, limit_test, batch_size, lr, ...), the
    same for every run. `input_shapes` ({"NAME": [1, 3, H, W]}, as `--input-shape`) fixes symbolic
    input dimensions for every shrink, training and bench. Each row is also the run's result.json.
    `on_run(row, skipped)` is called after each run. Raises UserError on bad input before any work,
    and when RUNDIR holds results made with other settings. `executor` (onnxprune.executors; default:
    this process, one run after another) runs the runs; a failed run does not stop the others, and
    RunsFailed is raised at the end.

    `teacher` (`sweep --teacher`): every run (the baseline too) is distilled from this model
    (trainers.distill_loop) instead of trained on labels; `init` "keep" starts each run from the
    original's weights (the l1 criterion) instead of re-initialising; `distill` holds the
    distillation settings (alpha, temperature, hints, ...). Without labels (`--data images=PATH`) the
    plotted figure is top-1 agreement with the teacher (row["metric"] says which).
    """
    model_path = Path(model)
    mode_list, target_list = parse_modes(modes), parse_targets(targets)
    if not isinstance(bench_runs, int) or bench_runs < 1:
        raise UserError(f"--bench-runs {bench_runs}: must be an integer >= 1")
    unknown = set(train_kwargs) - set(TRAIN_KEYS) - {"threads", "device", "augment", "keep_bn", "norm", "guard"}
    if unknown:
        raise TypeError(f"sweep() got unexpected arguments: {', '.join(sorted(unknown))}")
    from onnxprune.read.io import load_model

    source = load_model(model_path)  # missing / junk model: UserError before anything is created
    if init not in ("reinit", "keep"):
        raise UserError(f"--init {init!r}: expected reinit or keep")
    if teacher is None and (init != "reinit" or distill):
        raise UserError("--init keep and the distillation settings need --teacher ORIGINAL.onnx")
    if teacher is not None:
        from trainers.teacher import check_pair

        check_pair(source, load_model(teacher), str(teacher))  # before anything is created
    out = _out_dir(out_dir, model_path)
    try:
        import trainers  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
        from trainers.data import parse_data_spec
        from trainers.loop import first_input_shape, resolve_config
        from trainers.recipes import default_augment, resolve_device
    except ImportError:
        raise UserError("the sweep trains every model and needs PyTorch: pip install 'onnxprune[train]'") from None
    config = resolve_config(recipe, **{k: train_kwargs.get(k) for k in TRAIN_KEYS})  # flags first: cheap
    from trainers.convert.norms import NORM_MODES

    if train_kwargs.get("norm") not in (None, *NORM_MODES):
        raise UserError(f"--norm {train_kwargs['norm']!r}: expected one of {', '.join(NORM_MODES)}")
    first_input_shape(source, input_shapes)  # a symbolic H/W without --input-shape fails before any work
    if getattr(executor, "name", "local") == "local":  # Ray workers have their own devices: checked there
        resolve_device(train_kwargs.get("device") or "auto")  # a bad or absent --device fails before any work
    kind, _where = parse_data_spec(data)  # after the flags: it looks on disk, and a bad flag is the nearer fix
    if kind == "images" and teacher is None:
        raise UserError(f"--data {data!r}: these images have no labels; a sweep on them needs --teacher ORIGINAL.onnx")
    settings = {k: config.get(k) for k in TRAIN_KEYS}
    settings.update(
        model=str(model_path),
        model_sha=file_fingerprint(model_path),
        data=data,
        recipe=recipe,
        seed=int(seed),
        augment=default_augment(teacher is not None, init)  # what the runs' train or distill will use
        if train_kwargs.get("augment") is None
        else bool(train_kwargs["augment"]),
        bench_runs=bench_runs,
        step=step,
        norm=train_kwargs.get("norm") or "auto",
        input_shapes={k: list(v) for k, v in input_shapes.items()} if input_shapes else None,
        teacher=str(teacher) if teacher is not None else None,
        teacher_sha=file_fingerprint(Path(teacher)) if teacher is not None else None,
        init=init,
        distill=dict(sorted((distill or {}).items())) or None,
    )

    plan: list[tuple[Optional[str], Optional[float]]] = [(None, None)]
    plan += [(m, t) for m in mode_list for t in target_list]
    done: dict[str, dict] = {}
    for mode, target in plan:  # refuse mixing settings before any work
        name = run_name(mode, target)
        found = _read_result(out / name / RESULT_NAME) if out.is_dir() else None
        if found is None:
            continue
        old = found.get("settings", {})
        for key in SETTING_KEYS:
            if old.get(key, SETTING_DEFAULTS.get(key)) != settings.get(key):
                raise UserError(
                    f"{out / name / RESULT_NAME}: made with {key}={old.get(key)!r}, this sweep has "
                    f"{key}={settings.get(key)!r}; use the same settings to resume, or a new -o folder"
                )
        done[name] = found

    out.mkdir(exist_ok=True)
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    say = console.print if progress else (lambda *a, **k: None)
    title = f"{model_path.stem}: {config['epochs']} epoch(s), {data}, recipe {recipe}"
    rows: list[dict] = []
    order = {run_name(m, t): i for i, (m, t) in enumerate(plan)}
    specs = [
        {
            "name": run_name(m, t),
            "mode": m,
            "target": t,
            "model": str(model_path),
            "run_dir": str(out / run_name(m, t)),
            "data": data,
            "config": config,
            "recipe": recipe,
            "seed": seed,
            "step": step,
            "bench_runs": bench_runs,
            "settings": settings,
            "input_shapes": settings["input_shapes"],  # lists, so the spec pickles to a Ray worker
            "train_kwargs": {k: v for k, v in train_kwargs.items() if v is not None},
            "teacher": settings["teacher"],
            "init": init,
            "distill": dict(distill or {}),
        }
        for m, t in plan
        if run_name(m, t) not in done
    ]
    if executor is None:
        from onnxprune.sweep.executors import LocalExecutor

        executor = LocalExecutor(console=console if train_progress else None)
    failed: list[tuple[str, str]] = []

    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(
            TextColumn("sweep [bold]{task.fields[run]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
    task = None
    try:
        if bar is not None:
            bar.start()
            task = bar.add_task("sweep", total=len(plan), run="")
        for name, row in done.items():
            rows.append(row)
            (bar.console.print if bar else say)(f"{name}: skipped (result.json exists), accuracy {row['accuracy']:.3f}")
            if bar is not None:
                bar.advance(task)
            if on_run:
                on_run(row, True)
        with executor:
            for spec, row, error in executor.map(specs):
                name = spec["name"]
                if bar is not None:
                    bar.update(task, run=name)
                    bar.advance(task)
                if error is not None:
                    failed.append((name, error))
                    (bar.console.print if bar else say)(f"{name}: FAILED: {error}")
                    continue
                save_json(row, out / name / RESULT_NAME)
                rows.append(row)
                rows.sort(key=lambda r: order.get(r["name"], len(order)))
                (bar.console.print if bar else say)(
                    f"{name}: accuracy {row['accuracy']:.3f}, {row['params']} params, {row['latency_ms']:.3f} ms, "
                    f"trained in {row['train_wall_seconds']:.1f} s"
                    + (f" on {row['machine']['hostname']}" if executor.name != "local" else "")
                )
                write_outputs(rows, out, title, settings)
                if on_run:
                    on_run(row, False)
        if rows and not any(spec["name"] in {r["name"] for r in rows} for spec in specs):
            write_outputs(rows, out, title, settings)  # all skipped (or failed): rewrite from the kept runs
    finally:
        if bar is not None:
            bar.stop()
    if failed:
        from onnxprune.sweep.executors import RunsFailed

        raise RunsFailed(rows, failed)
    return rows
