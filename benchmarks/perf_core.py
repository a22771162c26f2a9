#!/usr/bin/env python3
"""Core performance of onnxprune on ResNet-50/ImageNet (issues 2-4).

    .venv/bin/python benchmarks/perf_core.py [--quick] [--reps 5] [--zoo build/zoo]
        [--results benchmarks/RESULTS.md] [--no-torch-pruning] [--cprofile]

Measures, for the four ResNet-50/ImageNet exports (legacy/dynamo exporter x BN folded/kept):

1. issue 2: `profile(model_proto)` time, beyond `load_model(path)` (timed separately). Goal <= 0.5 s.
2. issue 3: `load_graph` + `Tracer(mg).run()` + `prune_channels(deps, {g.id: first half})` time beyond
   loading (goal <= 0.3 s), and peak RSS (goal: peak increase over the loaded process <= 3x the file size).
3. issue 4: `shrink(proto, "FA", 0.5)` time beyond load and save (goal <= 1 s), peak RSS (<= 3x the file),
   and, side by side, Torch-Pruning 1.6.1 pruning the PyTorch ResNet-50 to the same MACs with random
   importance (goal: ours >= 10x faster).

Every timing is the median of --reps repetitions, each in a fresh subprocess (so that the peak RSS
(ru_maxrss) of each measurement is its own). The median is printed as a table and a section
"## Core performance (issues 2-4)" is appended to --results.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without install

VARIANTS = ("legacy.folded", "legacy.kept", "dynamo.folded", "dynamo.kept")
MODEL = "resnet50_imagenet"
GOALS = {"profile_s": 0.5, "surgery_s": 0.3, "shrink_s": 1.0, "rss_ratio": 3.0, "speedup": 10.0}


# --------------------------------------------------------------------------------------
# Workers (each runs in its own fresh process; prints one JSON line)
# --------------------------------------------------------------------------------------
def _rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _mark_loaded() -> dict:
    """RSS now (after loading), then reset the RSS high-water mark (VmHWM) so the work's own peak is seen."""
    info = {"rss_loaded_mib": _status_mib("VmRSS"), "rss_load_peak_mib": _rss_mib()}
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        info["hwm_reset"] = True
    except OSError:
        info["hwm_reset"] = False
    return info


def _peak_info(loaded: dict) -> dict:
    work_peak = _status_mib("VmHWM") if loaded["hwm_reset"] else _rss_mib()
    return {
        **loaded,
        "rss_work_peak_mib": work_peak,
        "rss_peak_mib": _rss_mib(),
        "rss_increase_mib": work_peak - loaded["rss_loaded_mib"],
    }


def _import_all() -> None:
    # Import every library module up front so imports count neither in timings nor in RSS increases.
    import onnx  # noqa: F401
    import onnx_graphsurgeon  # noqa: F401

    import onnxprune  # noqa: F401
    from onnxprune import shrink  # noqa: F401
    from onnxprune.analysis import (
        complexity,  # noqa: F401
        groups,  # noqa: F401
    )
    from onnxprune.prune import (
        initialize,  # noqa: F401
        surgery,  # noqa: F401
    )
    from onnxprune.read import (
        graph,  # noqa: F401
        io,  # noqa: F401
    )


def work_profile(path: str, prof: str | None) -> dict:
    _import_all()
    from onnxprune.analysis.complexity import profile
    from onnxprune.read.io import load_model

    t0 = time.perf_counter()
    model = load_model(path)
    t1 = time.perf_counter()
    c1 = time.process_time()
    loaded = _mark_loaded()
    p = _maybe_profiled(prof, lambda: profile(model))
    t2 = time.perf_counter()
    c2 = time.process_time()
    return {
        "load_s": t1 - t0,
        "work_s": t2 - t1,
        "work_cpu_s": c2 - c1,
        **_peak_info(loaded),
        "flops": p.totals["flops"],
        "params": p.totals["params"],
    }


def work_surgery(path: str, prof: str | None) -> dict:
    _import_all()
    import numpy as np

    from onnxprune.analysis.groups import Tracer
    from onnxprune.prune.surgery import prune_channels
    from onnxprune.read.graph import load_graph
    from onnxprune.read.io import load_model

    t0 = time.perf_counter()
    model = load_model(path)
    t1 = time.perf_counter()
    c1 = time.process_time()
    loaded = _mark_loaded()
    info = {}

    def run():
        mg = load_graph(model)
        ta = time.perf_counter()
        deps = Tracer(mg).run()
        tb = time.perf_counter()
        keep = {g.id: np.arange(g.size // 2 or 1) for g in deps.prunable}
        out = prune_channels(deps, keep)
        tc = time.perf_counter()
        info.update(groups=len(deps.prunable), load_graph_s=ta - t1, tracer_s=tb - ta, prune_s=tc - tb)
        return out

    out = _maybe_profiled(prof, run)
    t2 = time.perf_counter()
    c2 = time.process_time()
    info["out_nodes"] = len(out.graph.node)
    return {"load_s": t1 - t0, "work_s": t2 - t1, "work_cpu_s": c2 - c1, **_peak_info(loaded), **info}


def work_shrink(path: str, prof: str | None) -> dict:
    _import_all()
    import onnxprune
    from onnxprune.read.io import load_model

    try:
        from onnxprune.read.save import save_model
    except ImportError:  # pragma: no cover
        save_model = None
    import tempfile

    t0 = time.perf_counter()
    model = load_model(path)
    t1 = time.perf_counter()
    c1 = time.process_time()
    loaded = _mark_loaded()
    out, report = _maybe_profiled(prof, lambda: onnxprune.shrink(model, mode="FA", target=0.5, seed=0))
    t2 = time.perf_counter()
    c2 = time.process_time()
    peak = _peak_info(loaded)
    with tempfile.TemporaryDirectory() as tmp:
        dest = os.path.join(tmp, "out.onnx")
        if save_model is not None:
            save_model(out, dest)
        else:
            import onnx

            onnx.save(out, dest)
        t3 = time.perf_counter()
    return {
        "load_s": t1 - t0,
        "work_s": t2 - t1,
        "work_cpu_s": c2 - c1,
        "save_s": t3 - t2,
        **peak,
        "before": report["before"],
        "after": report["after"],
        "iterations": report["iterations"],
    }


def _macs_params(model, example):
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def work_torch_pruning(target_macs: float, ratio: float | None, prof: str | None) -> dict:
    """Torch-Pruning 1.6.1 on the zoo's ResNet-50: DepGraph build + pruning with random importance.

    With `ratio` None, bisect the uniform pruning ratio so that the pruned MACs match `target_macs`
    (each probe on a fresh model), then time one final run at that ratio.
    """
    import torch
    import torch_pruning as tp

    from models.zoo import MODELS, build

    torch.set_num_threads(1)
    spec = MODELS[MODEL]
    example = torch.randn(*spec.input_shape)
    base = build(MODEL, seed=0)

    cpu_used = [0.0]

    def prune_once(r: float, timed: bool = False):
        import copy

        model = copy.deepcopy(base)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        c0 = time.process_time()

        def go():
            pruner = tp.pruner.MetaPruner(
                model,
                example,
                importance=tp.importance.RandomImportance(),
                pruning_ratio=r,
                ignored_layers=[model_fc(model)],
            )
            t_graph = time.perf_counter()
            pruner.step()
            return t_graph

        t_graph = _maybe_profiled(prof if timed else None, go)
        t1 = time.perf_counter()
        cpu_used[0] = time.process_time() - c0
        return model, t1 - t0, t_graph - t0

    macs0, params0 = _macs_params(base, example)
    search = []
    ts = time.perf_counter()
    if ratio is None:
        lo, hi = 0.0, 0.9
        for _ in range(14):
            mid = (lo + hi) / 2
            m, _, _ = prune_once(mid)
            macs, _ = _macs_params(m, example)
            search.append((mid, macs))
            if macs > target_macs:
                lo = mid
            else:
                hi = mid
        # pick the side closer to the target
        cands = [(abs(m - target_macs), r) for r, m in search]
        ratio = min(cands)[1]
    search_s = time.perf_counter() - ts
    model, total_s, graph_s = prune_once(ratio, timed=True)
    macs, params = _macs_params(model, example)
    return {
        "ratio": ratio,
        "work_s": total_s,
        "work_cpu_s": cpu_used[0],
        "depgraph_s": graph_s,
        "macs_before": macs0,
        "params_before": params0,
        "macs": macs,
        "params": params,
        "search_steps": len(search),
        "search_s": search_s,
        "rss_peak_mib": _rss_mib(),
    }


def model_fc(model):
    import torch.nn as nn

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1]


def _maybe_profiled(prof: str | None, fn):
    if not prof:
        return fn()
    import cProfile

    pr = cProfile.Profile()
    result = pr.runcall(fn)
    pr.dump_stats(prof)
    return result


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------
def spawn(kind: str, *args: str, prof: str | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, *args]
    if prof:
        cmd += ["--prof-out", prof]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {kind} {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def top_offenders(prof_path: str, n: int = 12) -> list[str]:
    import pstats

    st = pstats.Stats(prof_path)
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():
        rows.append((tt, ct, nc, f"{_short(file)}:{line}:{func}"))
    rows.sort(reverse=True)
    return [f"tottime {tt:6.3f}s  cumtime {ct:6.3f}s  calls {nc:>8}  {name}" for tt, ct, nc, name in rows[:n]]


def top_cumulative(prof_path: str, n: int = 15, prefix: str = "onnxprune") -> list[str]:
    import pstats

    st = pstats.Stats(prof_path)
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():
        if prefix in file:
            rows.append((ct, tt, nc, f"{_short(file)}:{line}:{func}"))
    rows.sort(reverse=True)
    return [f"cumtime {ct:6.3f}s  tottime {tt:6.3f}s  calls {nc:>8}  {name}" for ct, tt, nc, name in rows[:n]]


def _short(file: str) -> str:
    for marker in ("/onnxprune/", "site-packages/"):
        if marker in file:
            return file[file.index(marker) + (1 if marker.startswith("/") else len(marker)) :]
    return file


def ok(value: float, goal: float, higher_is_better: bool = False) -> str:
    good = value >= goal if higher_is_better else value <= goal
    return "PASS" if good else "MISS"


def ok2(rec: dict, goal: float) -> str:
    """Verdict on wall time / on CPU time (the work is single-threaded; CPU time is robust to a shared machine)."""
    return f"{ok(rec['work_s'], goal)} / {ok(rec['work_cpu_s'], goal)}"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--zoo", default=str(ROOT / "build" / "zoo"))
    ap.add_argument("--reps", type=int, default=5, help="repetitions per measurement (median reported)")
    ap.add_argument("--quick", action="store_true", help="3 repetitions, only legacy.folded for shrink/torch-pruning")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--no-results", action="store_true", help="do not append to --results")
    ap.add_argument("--no-torch-pruning", action="store_true")
    ap.add_argument("--cprofile", action="store_true", help="cProfile any measurement that misses its goal")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--prof-out", help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.worker:
        if a.worker == "profile":
            res = work_profile(a.args[0], a.prof_out)
        elif a.worker == "surgery":
            res = work_surgery(a.args[0], a.prof_out)
        elif a.worker == "shrink":
            res = work_shrink(a.args[0], a.prof_out)
        elif a.worker == "torch_pruning":
            ratio = None if a.args[1] == "search" else float(a.args[1])
            res = work_torch_pruning(float(a.args[0]), ratio, a.prof_out)
        else:
            raise SystemExit(f"unknown worker {a.worker}")
        print(json.dumps(res))
        return 0

    reps = 3 if a.quick and a.reps == 5 else a.reps
    variants = [v for v in a.variants.split(",") if v]
    zoo = Path(a.zoo)
    started = _dt.datetime.now(_dt.timezone.utc)
    rows = []
    for v in variants:
        path = zoo / f"{MODEL}.{v}.onnx"
        if not path.is_file():
            print(f"skip {path}: missing (run `make models`)", file=sys.stderr)
            continue
        size_mib = path.stat().st_size / 2**20
        row = {"variant": v, "path": str(path), "size_mib": size_mib}
        for kind in ("profile", "surgery", "shrink"):
            if kind == "shrink" and a.quick and v != variants[0]:
                continue
            runs = [spawn(kind, str(path)) for _ in range(reps)]
            for r in runs:
                r["rss_ratio"] = r["rss_increase_mib"] / size_mib
                r["rss_peak_ratio"] = r["rss_peak_mib"] / size_mib
            rec = {
                k: median_of(runs, k)
                for k in (
                    "load_s",
                    "work_s",
                    "work_cpu_s",
                    "rss_loaded_mib",
                    "rss_peak_mib",
                    "rss_work_peak_mib",
                    "rss_increase_mib",
                    "rss_ratio",
                    "rss_peak_ratio",
                    "rss_load_peak_mib",
                )
            }
            for extra in ("load_graph_s", "tracer_s", "prune_s", "save_s"):
                if extra in runs[0]:
                    rec[extra] = median_of(runs, extra)
            for extra in ("groups", "before", "after", "iterations", "flops", "params"):
                if extra in runs[0]:
                    rec[extra] = runs[0][extra]
            row[kind] = rec
            print(
                f"{v:14s} {kind:8s} work {rec['work_s']:.3f}s cpu {rec['work_cpu_s']:.3f}s (load {rec['load_s']:.3f}s) "
                f"peak {rec['rss_peak_mib']:.0f} MiB, loaded {rec['rss_loaded_mib']:.0f} MiB, "
                f"work peak {rec['rss_work_peak_mib']:.0f} MiB (+{rec['rss_ratio']:.2f}x file)",
                flush=True,
            )
        rows.append(row)

    tp_rec = None
    if not a.no_torch_pruning and rows and "shrink" in rows[0]:
        try:
            import torch_pruning  # noqa: F401

            have_tp = True
        except ImportError:
            have_tp = False
            print(
                "torch-pruning not installed: skipping the side-by-side (pip install torch-pruning==1.6.1)",
                file=sys.stderr,
            )
        if have_tp:
            target = rows[0]["shrink"]["after"]["flops"]
            first = spawn("torch_pruning", str(target), "search")
            tp_runs = [first] + [spawn("torch_pruning", str(target), str(first["ratio"])) for _ in range(reps - 1)]
            tp_rec = dict(first)
            tp_rec["work_s"] = median_of(tp_runs, "work_s")
            tp_rec["depgraph_s"] = median_of(tp_runs, "depgraph_s")
            tp_rec["work_cpu_s"] = median_of(tp_runs, "work_cpu_s")
            print(
                f"torch-pruning  ratio {tp_rec['ratio']:.4f} work {tp_rec['work_s']:.3f}s "
                f"(DepGraph {tp_rec['depgraph_s']:.3f}s) MACs {tp_rec['macs'] / 1e9:.3f}G params {tp_rec['params'] / 1e6:.2f}M",
                flush=True,
            )

    # cProfile misses
    offenders: dict[str, list[str]] = {}
    if a.cprofile:
        import tempfile

        for row in rows:
            for kind, goal in (("profile", "profile_s"), ("surgery", "surgery_s"), ("shrink", "shrink_s")):
                if kind in row and row[kind]["work_s"] > GOALS[goal] and f"{kind}" not in offenders:
                    prof = os.path.join(tempfile.mkdtemp(), f"{kind}.prof")
                    spawn(kind, row["path"], prof=prof)
                    offenders[f"{kind} ({row['variant']})"] = (
                        top_cumulative(prof) + ["--- by own time ---"] + top_offenders(prof)
                    )

    text = render(rows, tp_rec, reps, started, offenders, argv)
    print(text)
    if not a.no_results:
        with open(a.results, "a") as fh:
            fh.write("\n" + text + "\n")
        print(f"appended to {a.results}")
    return 0


def render(rows, tp_rec, reps, started, offenders, argv) -> str:
    cmd = "python benchmarks/perf_core.py " + " ".join(
        shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:])
    )
    out = [
        "## Core performance (issues 2-4)",
        "",
        f"- command: `{cmd.strip()}`",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}",
        f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}; load average at the end (1/5/15 min): {loadavg()}",
        "- times: wall (CPU time of the process in brackets); verdicts 'wall / CPU'. The CPU is shared with other "
        "jobs, so wall times can be inflated; the work is single-threaded, so CPU time approximates an idle machine's wall time.",
        f"- each figure: median of {reps} runs, each in a fresh process (OMP/MKL threads = 1); "
        "RSS: 'loaded' = VmRSS right after `load_model`; 'work peak' = VmHWM during the work only (high-water mark reset "
        "via /proc/self/clear_refs after loading); 'increase' = work peak - loaded; 'process peak' = ru_maxrss of the whole "
        "process (imports + loading + work); ratios are to the .onnx file size (medians of per-run ratios)",
        "",
    ]
    out += [
        "### Issue 2: `profile(model_proto)` beyond `load_model(path)` (goal <= 0.5 s)",
        "",
        "| variant | file MiB | load_model s | profile s (cpu) | goal wall / cpu |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        p = r["profile"]
        out.append(
            f"| {r['variant']} | {r['size_mib']:.1f} | {p['load_s']:.3f} | {p['work_s']:.3f} ({p['work_cpu_s']:.3f}) | "
            f"{ok2(p, GOALS['profile_s'])} |"
        )
    out += [
        "",
        "### Issue 3: `load_graph` + `Tracer.run` + `prune_channels` (half of every prunable group) "
        "beyond loading (goal <= 0.3 s; peak RSS increase <= 3x file)",
        "",
        "| variant | groups | load_graph s | Tracer s | prune_channels s | total s (cpu) | RSS loaded MiB | "
        "work peak MiB | process peak MiB | increase / file | process peak / file | time | memory |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        s = r["surgery"]
        out.append(
            f"| {r['variant']} | {s.get('groups', '')} | {s['load_graph_s']:.3f} | {s['tracer_s']:.3f} | "
            f"{s['prune_s']:.3f} | {s['work_s']:.3f} ({s['work_cpu_s']:.3f}) | {s['rss_loaded_mib']:.0f} | {s['rss_work_peak_mib']:.0f} | "
            f"{s['rss_peak_mib']:.0f} | {s['rss_ratio']:.2f}x | {s['rss_peak_ratio']:.2f}x | {ok2(s, GOALS['surgery_s'])} | "
            f"{ok(s['rss_ratio'], GOALS['rss_ratio'])} |"
        )
    out += [
        "",
        '### Issue 4: `shrink(proto, mode="FA", target=0.5)` beyond load and save (goal <= 1 s; '
        "peak RSS increase <= 3x file)",
        "",
        "| variant | load s | shrink s (cpu) | save s | iterations | FLOPs before -> after | params before -> after | "
        "RSS loaded MiB | work peak MiB | process peak MiB | increase / file | process peak / file | time | memory |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        if "shrink" not in r:
            continue
        s = r["shrink"]
        b, a = s["before"], s["after"]
        out.append(
            f"| {r['variant']} | {s['load_s']:.3f} | {s['work_s']:.3f} ({s['work_cpu_s']:.3f}) | {s.get('save_s', 0):.3f} | "
            f"{s['iterations']} | {b['flops'] / 1e9:.3f}G -> {a['flops'] / 1e9:.3f}G | "
            f"{b['params'] / 1e6:.2f}M -> {a['params'] / 1e6:.2f}M | {s['rss_loaded_mib']:.0f} | "
            f"{s['rss_work_peak_mib']:.0f} | {s['rss_peak_mib']:.0f} | {s['rss_ratio']:.2f}x | {s['rss_peak_ratio']:.2f}x | "
            f"{ok2(s, GOALS['shrink_s'])} | {ok(s['rss_ratio'], GOALS['rss_ratio'])} |"
        )
    if tp_rec is not None:
        ours = rows[0]["shrink"]
        speed = tp_rec["work_s"] / ours["work_s"]
        speed_cpu = tp_rec["work_cpu_s"] / ours["work_cpu_s"]
        out += [
            "",
            f"#### Side by side with Torch-Pruning 1.6.1 (same PyTorch ResNet-50, `models/zoo.py` "
            f"{MODEL}, random importance, MetaPruner, fc output ignored; uniform `pruning_ratio` bisected "
            f"to {tp_rec['ratio']:.4f} so MACs match ours; torch threads = 1)",
            "",
            "| tool | pruning work s (cpu) | params before -> after | MACs before -> after |",
            "|---|---:|---|---|",
            f"| onnxprune shrink FA 0.5 ({rows[0]['variant']}) | {ours['work_s']:.3f} ({ours['work_cpu_s']:.3f}) | "
            f"{ours['before']['params'] / 1e6:.2f}M -> {ours['after']['params'] / 1e6:.2f}M | "
            f"{ours['before']['flops'] / 1e9:.3f}G -> {ours['after']['flops'] / 1e9:.3f}G |",
            f"| Torch-Pruning (DepGraph {tp_rec['depgraph_s']:.3f}s + prune) | {tp_rec['work_s']:.3f} ({tp_rec['work_cpu_s']:.3f}) | "
            f"{tp_rec['params_before'] / 1e6:.2f}M -> {tp_rec['params'] / 1e6:.2f}M | "
            f"{tp_rec['macs_before'] / 1e9:.3f}G -> {tp_rec['macs'] / 1e9:.3f}G |",
            "",
            f"Torch-Pruning's time is one run at the already-known ratio; finding that ratio took "
            f"{tp_rec['search_steps']} bisection probes, {tp_rec['search_s']:.1f}s including MAC counting "
            "(onnxprune's shrink finds its own stopping point inside the timed work).",
            "",
            f"Speed-up (Torch-Pruning / onnxprune): **{speed:.2f}x** wall, **{speed_cpu:.2f}x** CPU "
            f"(goal >= {GOALS['speedup']:.0f}x: {ok(speed, GOALS['speedup'], True)} / "
            f"{ok(speed_cpu, GOALS['speedup'], True)}). onnxprune's FLOPs are Conv/Gemm multiply-accumulates; "
            "Torch-Pruning's MACs (`tp.utils.count_ops_and_params`) also count BN etc., hence small differences "
            "in the 'before' figures.",
        ]
    if offenders:
        out += ["", "### Where the time goes (cProfile, one run, for measurements that missed their goal)", ""]
        for name, lines in offenders.items():
            out += [f"{name}:", "", "```", *lines, "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
