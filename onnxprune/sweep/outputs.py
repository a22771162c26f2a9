"""What a sweep writes after every run: results.csv, results.json and the plots (matplotlib Agg,
imported only here): `tradeoffs.png` and one `accuracy_vs_<figure>.png` per figure."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Optional, Sequence

from onnxprune.read.save import atomic_write, save_json

MODES = ("PA", "FA", "MA", "LA")  # the modes a sweep takes (sweep.grid), and the curves in this order
COLUMNS = (
    "name",
    "mode",
    "target",
    "accuracy",
    "params",
    "flops",
    "memory_bytes",
    "latency_ms",
    "energy_uj_per_image",
    "train_wall_seconds",
    "train_seconds",
    "images_per_s",
)
# file stem suffix -> (result key, axis label)
PLOTS = {
    "params": ("params", "parameters"),
    "flops": ("flops", "FLOPs (multiply-accumulates)"),
    "memory": ("memory_bytes", "memory (bytes)"),
    "latency": ("latency_ms", "latency, median (ms, 1 thread, batch 1)"),
    "energy": ("energy_uj_per_image", "energy per image (µJ, estimate)"),
}


def _write_csv(path: Path, rows: Sequence[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
    atomic_write(path, lambda h: h.write(buffer.getvalue()))


def _plot(rows: Sequence[dict], out_dir: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter, MaxNLocator, PercentFormatter

    base = next((r for r in rows if r["mode"] is None), None)
    metric = next((r["metric"] for r in rows if r.get("metric")), "test accuracy")
    hosts = {(r.get("machine") or {}).get("hostname") for r in rows} - {None}
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    colors = {"PA": "tab:blue", "FA": "tab:orange", "MA": "tab:green", "LA": "tab:red"}
    markers = {"PA": "o", "FA": "s", "MA": "^", "LA": "D"}
    labels = {"PA": "PA (params)", "FA": "FA (FLOPs)", "MA": "MA (memory)", "LA": "LA (latency)"}

    def panel(ax, key: str, label: str) -> None:
        for mode in modes:
            pts = sorted(
                ((r[key], r["accuracy"], r["target"]) for r in rows if r["mode"] == mode and r.get(key) is not None),
                key=lambda p: -p[2],
            )
            if not pts:
                continue
            xs, ys, ts = zip(*pts)
            ax.plot(xs, [100 * y for y in ys], marker=markers[mode], color=colors[mode], label=labels[mode])
            for x, y, t in pts:
                ax.annotate(
                    f"{t:g}", (x, 100 * y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=colors[mode]
                )
        if base is not None and base.get(key) is not None:
            ax.plot(
                [base[key]],
                [100 * base["accuracy"]],
                marker="*",
                markersize=14,
                color="black",
                linestyle="none",
                label="unpruned",
            )
        if key == "latency_ms" and len(hosts) > 1:  # latency is only comparable on one machine
            ax.plot([], [], linestyle="none", label=f"! benched on {len(hosts)} machines: compare per machine")
        ax.set_xlabel(label)
        ax.set_ylabel(metric)
        # whole-percent ticks, so a 0-decimal label never rounds a 2.5-step tick
        ax.yaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 5, 10], integer=True))
        ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        if key in ("params", "flops"):
            ax.xaxis.set_major_formatter(EngFormatter())
        elif key == "memory_bytes":
            ax.xaxis.set_major_formatter(EngFormatter(unit="B"))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")

    def save(fig, path: Path) -> None:
        atomic_write(path, lambda h: fig.savefig(h, format="png", dpi=110, bbox_inches="tight"), mode="wb")
        plt.close(fig)

    written: list[Path] = []
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, (_stem, (key, label)) in zip(axes.flat, PLOTS.items()):
        panel(ax, key, label)
    axes.flat[-1].axis("off")
    axes.flat[-1].text(
        0.0,
        0.5,
        "points: fraction kept (target)\nstar: the unpruned model, trained alike\n"
        "energy: an estimate from FLOPs and memory",
        fontsize=10,
        va="center",
    )
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, out_dir / "tradeoffs.png")
    written.append(out_dir / "tradeoffs.png")
    for stem, (key, label) in PLOTS.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        panel(ax, key, label)
        ax.set_title(f"{title}: accuracy vs {stem}", fontsize=10)
        fig.tight_layout()
        path = out_dir / f"accuracy_vs_{stem}.png"
        save(fig, path)
        written.append(path)
    return written


def write_outputs(
    rows: Sequence[dict], out_dir: Path, title: str = "sweep", settings: Optional[dict] = None
) -> dict[str, Any]:
    """(Re)write results.csv, results.json and the plots from the finished runs."""
    out_dir = Path(out_dir)
    _write_csv(out_dir / "results.csv", rows)
    save_json({"settings": settings or {}, "runs": list(rows)}, out_dir / "results.json")
    plots = _plot(rows, out_dir, title) if rows else []
    return {
        "csv": str(out_dir / "results.csv"),
        "json": str(out_dir / "results.json"),
        "plots": [str(p) for p in plots],
    }


# ------------------------------------------------------------------------------------------ the sweep
