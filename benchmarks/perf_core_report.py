"""The report of benchmarks/perf_core.py: goals and verdicts, the machine line, cProfile summaries,
and the markdown section "## Core performance (issues 2-4)" appended to RESULTS.md.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path

from benchmarks.perf_core_workers import MODEL

GOALS = {"profile_s": 0.5, "surgery_s": 0.3, "shrink_s": 1.0, "rss_ratio": 3.0, "speedup": 10.0}


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
