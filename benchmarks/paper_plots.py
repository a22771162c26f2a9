"""The per-network files of benchmarks/paper_figures.py: the trade-off figure (accuracy against
params, FLOPs, memory, latency and energy, docs/paper/<net>_tradeoffs.png) and the runs' CSV
(docs/paper/<net>_runs.csv)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from benchmarks.paper_stats import BAND_K, Network, band
from onnxprune.sweep.grid import COLUMNS, PLOTS

# ------------------------------------------------------------------------------------------ plots


def plot(net: Network, path: Path) -> None:
    """Accuracy against params, FLOPs, memory, latency and energy: one curve per mode (seed 0), every
    multi-seed pruned point with its min-max, the baseline mean and its band on every panel."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    colors = {"PA": "tab:blue", "FA": "tab:orange", "MA": "tab:green", "LA": "tab:red"}
    markers = {"PA": "o", "FA": "s", "MA": "^", "LA": "D"}
    base = net.baseline
    limits = band(base) if base is not None else None
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, (_stem, (key, label)) in zip(axes.flat, PLOTS.items()):
        for mode in dict.fromkeys(p.mode for p in net.pruned()):
            pts = sorted(
                (
                    (p.rows[0][key], 100 * p.rows[0]["accuracy"], p.target)
                    for p in net.pruned()
                    if p.mode == mode and 0 in p.rows and p.rows[0].get(key) is not None
                ),
                key=lambda t: -t[2],
            )
            if pts:
                xs, ys, ts = zip(*pts)
                ax.plot(xs, ys, marker=markers.get(mode, "o"), color=colors.get(mode), label=f"{mode}, seed 0")
                for x, y, t in pts:
                    ax.annotate(
                        f"{t:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=colors.get(mode)
                    )
        for point in (p for p in net.pruned() if p.n >= 2 and p.measure(key) is not None):
            low, high = min(point.accuracies), max(point.accuracies)
            ax.errorbar(
                [point.measure(key)],
                [point.mean],
                yerr=[[point.mean - low], [high - point.mean]],
                fmt="D",
                mfc="white",
                color="black",
                capsize=4,
                zorder=5,
                label=f"{point.name}: mean, min–max of {point.n} seeds",
            )
        if base is not None:
            ax.axhline(
                base.mean, color="black", linestyle="--", linewidth=1, label=f"baseline mean of {base.n} seed(s)"
            )
            if limits is not None:
                ax.axhspan(*limits, color="grey", alpha=0.25, label="band: one run inside = no difference")
            else:
                ax.plot([], [], linestyle="none", label="no band yet: 1 baseline seed")
            if base.measure(key) is not None:
                ax.plot(
                    [base.measure(key)],
                    [base.mean],
                    marker="*",
                    markersize=14,
                    color="black",
                    linestyle="none",
                    label="baseline",
                )
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        if key in ("params", "flops"):
            ax.xaxis.set_major_formatter(EngFormatter())
        elif key == "memory_bytes":
            ax.xaxis.set_major_formatter(EngFormatter(unit="B"))
        ax.grid(True, alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[-1].axis("off")
    axes.flat[-1].legend(handles, labels, loc="upper left", fontsize=9)
    runs = sum(p.n for p in net.points.values())
    axes.flat[-1].text(
        0.0,
        0.05,
        f"{runs} finished runs; numbers by a point: fraction kept\n"
        f"band: baseline mean ± {BAND_K:g} s · sqrt(1 + 1/n), s = s.d. of seeds,\n  at least the test set's binomial s.e.\nenergy: an estimate",
        fontsize=9,
        transform=axes.flat[-1].transAxes,
    )
    settings = next(iter(net.settings.values()), {})
    fig.suptitle(
        f"{net.title} / {settings.get('data')}, recipe {settings.get('recipe')} ({settings.get('epochs')} "
        f"epochs of {settings.get('limit_train') or 0:,} images, seed 0 unless marked): accuracy vs resources"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def write_csv(net: Network, path: Path) -> None:
    columns = ["seed", *COLUMNS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for point in net.points.values():
        for seed, row in sorted(point.rows.items()):
            writer.writerow({"seed": seed, **{k: "" if row.get(k) is None else row[k] for k in COLUMNS}})
    path.write_text(buffer.getvalue())
