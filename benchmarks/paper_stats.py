"""Issue 18: the finished runs of benchmarks/paper_sweeps.py, per network and run name over seeds, and their noise.

Accuracies are in points of test accuracy (0-100).
* baseline: mean, sample standard deviation and min-max over its n_b seeds; with one seed there is
  no band and no verdict. The noise of one run, s_b, is that standard deviation but never less than
  the binomial standard error of one accuracy on the test images (sqrt(p(1-p)/n_test), about 1.1
  points at 2,000 images): two or three seeds can agree more closely by chance.
* a pruned point (one run name, n_p seeds, s_p alike): Δ = its mean - the baseline mean, with the
  standard error SE = sqrt(s_b²/n_b + s_p²/n_p); a single-seed point has no spread of its own and
  borrows the baseline's (s_p = s_b).
* verdict: "no difference" when |Δ| <= 2 SE, else "gain" or "loss". For a single-seed point that is
  the band drawn on every panel, baseline mean ± 2 s_b sqrt(1 + 1/n_b).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from benchmarks.paper_sweeps import NETWORKS, planned_runs
from onnxprune.sweep.grid import run_name

BAND_K = 2.0  # "no difference": |Δ| <= BAND_K standard errors
FOLDER = re.compile(r"^(?P<net>[A-Za-z0-9_]+)-s(?P<seed>\d+)$")
TITLES = {"vgg16": "VGG-16", "mobilenetv2": "MobileNetV2"}
MEASURE = {"PA": ("params", "params"), "FA": ("flops", "FLOPs"), "MA": ("memory_bytes", "memory")}
LATENCY_NAME = "latency.json"  # RUNS/latency.json: benchmarks/paper_latency.py's side-by-side latencies
SAME_SETTINGS = (
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
    "augment",
    "bench_runs",
    "step",
    "norm",
)


class BadRuns(Exception):
    """Result files that cannot be read together: one line for stderr."""


@dataclass
class Point:
    """One run name of one network over the seeds present."""

    name: str
    mode: Optional[str]
    target: Optional[float]
    rows: dict[int, dict] = field(default_factory=dict)  # seed -> result row

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def accuracies(self) -> list[float]:  # in points
        return [100.0 * self.rows[s]["accuracy"] for s in sorted(self.rows)]

    @property
    def mean(self) -> float:
        return sum(self.accuracies) / self.n

    @property
    def std(self) -> Optional[float]:  # sample standard deviation; None with one seed
        if self.n < 2:
            return None
        return math.sqrt(sum((a - self.mean) ** 2 for a in self.accuracies) / (self.n - 1))

    @property
    def test_floor(self) -> float:
        """The binomial standard error of one accuracy measured on the runs' test images, in points
        (0 when the test set size is not recorded: limit_test 0 means the whole, unnamed, test set)."""
        n_test = next((r.get("settings", {}).get("limit_test") for r in self.rows.values()), None)
        share = self.mean / 100
        return 100 * math.sqrt(share * (1 - share) / n_test) if n_test else 0.0

    @property
    def spread(self) -> Optional[float]:
        """The noise of one run: the seeds' sample s.d., never below the test-set floor (two or three
        seeds can agree by chance more closely than their test set can tell); None with one seed."""
        return None if self.n < 2 else max(self.std, self.test_floor)

    def measure(self, key: str) -> Optional[float]:
        values = [r.get(key) for r in self.rows.values() if r.get(key) is not None]
        return sum(values) / len(values) if values else None


@dataclass
class Network:
    name: str
    points: dict[str, Point] = field(default_factory=dict)
    settings: dict[int, dict] = field(default_factory=dict)
    latency_source: Optional[dict] = None  # latency.json's date, machine and settings; None: not re-measured

    @property
    def title(self) -> str:
        return TITLES.get(self.name, self.name)

    @property
    def baseline(self) -> Optional[Point]:
        return self.points.get("baseline")

    def pruned(self) -> list[Point]:
        """Pruned points by mode (PA, FA, MA, LA), then from the largest target down."""
        order = {mode: i for i, mode in enumerate(("PA", "FA", "MA", "LA"))}
        return sorted(
            (p for p in self.points.values() if p.mode is not None),
            key=lambda p: (order.get(p.mode, len(order)), -(p.target or 0)),
        )


# ------------------------------------------------------------------------------------------ reading


def load(runs_dir: Path) -> dict[str, Network]:
    """{network: Network} from every RUNS/<net>-s<seed>/<run>/result.json; BadRuns if seeds mix settings.

    Each run's own result.json, not the folder's results.json: the sweep rewrites that one only after
    its next run, so a run folder removed since (a superseded run) would still be listed there."""
    networks: dict[str, Network] = {}
    first: dict[str, tuple[Path, dict]] = {}  # network -> (a result file, its settings)
    for path in sorted(Path(runs_dir).glob("*-s*/*/result.json")):
        match = FOLDER.match(path.parent.parent.name)
        if not match:
            continue
        try:
            row = json.loads(path.read_text())
            name, accuracy = row["name"], float(row["accuracy"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise BadRuns(f"{path}: not a sweep result.json ({error})") from None
        if name != path.parent.name or not 0.0 <= accuracy <= 1.0:
            raise BadRuns(f"{path}: run {name!r} with accuracy {accuracy!r} in folder {path.parent.name!r}")
        net, seed = networks.setdefault(match["net"], Network(match["net"])), int(match["seed"])
        settings = row.get("settings") or {}
        if settings.get("seed", seed) != seed:
            raise BadRuns(f"{path}: made with seed {settings.get('seed')}, in the folder of seed {seed}")
        reference_path, reference = first.setdefault(net.name, (path, settings))
        for key in SAME_SETTINGS:
            if settings.get(key) != reference.get(key):
                raise BadRuns(
                    f"{path}: {key}={settings.get(key)!r}, but {reference_path} has "
                    f"{reference.get(key)!r}; runs of one network must differ only in the seed"
                )
        net.settings.setdefault(seed, settings)
        point = net.points.setdefault(name, Point(name, row.get("mode"), row.get("target")))
        point.rows[seed] = row
    _side_by_side_latency(networks, Path(runs_dir) / LATENCY_NAME)
    return networks


def _side_by_side_latency(networks: dict[str, Network], path: Path) -> None:
    """Each row's latency_ms becomes its side-by-side one from `path`, or None where that has none: a
    run's own latency was measured on whatever machine and load it trained with, so it is kept only as
    latency_ms_own and never compared."""
    try:
        measured = json.loads(path.read_text()) if path.is_file() else {}
        per_net = measured.get("networks", {})
    except (OSError, ValueError, AttributeError) as error:
        raise BadRuns(f"{path}: not a paper_latency.py file ({error})") from None
    source = {k: measured[k] for k in ("date", "machine", "settings", "command") if k in measured} or None
    for name, net in networks.items():
        net.latency_source = source if name in per_net else None
        for point in net.points.values():
            for seed, row in point.rows.items():
                row.setdefault("latency_ms_own", row.get("latency_ms"))
                row["latency_ms"] = per_net.get(name, {}).get(f"s{seed}/{point.name}", {}).get("latency_ms")


def planned(net: str) -> list[tuple[int, str]]:
    """(seed, run name) of every run benchmarks/paper_sweeps.py queues for `net`."""
    if net not in NETWORKS:
        return []
    return [
        (seed, run_name(mode, None if target is None else float(target))) for seed, mode, target in planned_runs(net)
    ]


def missing(net: str, network: Optional[Network]) -> list[tuple[int, str]]:
    have = set() if network is None else {(s, p.name) for p in network.points.values() for s in p.rows}
    return [run for run in planned(net) if run not in have]


def grid_targets(net: str) -> list[float]:
    return [float(t) for t in NETWORKS[net]["grid"][1].split(",")] if net in NETWORKS else []


# ------------------------------------------------------------------------------------------ statistics


def delta(base: Point, point: Point) -> tuple[float, Optional[float]]:
    """(Δ accuracy in points, its standard error or None without a baseline band)."""
    diff = point.mean - base.mean
    if base.n < 2:
        return diff, None
    spread = point.spread if point.n >= 2 else base.spread
    return diff, math.sqrt(base.spread**2 / base.n + spread**2 / point.n)


def verdict(diff: float, se: Optional[float]) -> str:
    if se is None:
        return "no band (1 baseline seed)"
    if abs(diff) <= BAND_K * se:
        return "no difference"
    return "gain" if diff > 0 else "loss"


def band(base: Point) -> Optional[tuple[float, float]]:
    """(low, high) in points where one single-seed run is "no difference" from the baseline mean."""
    if base.n < 2:
        return None
    half = BAND_K * base.spread * math.sqrt(1 + 1 / base.n)
    return base.mean - half, base.mean + half


def reduction(base: Point, point: Point, mode: str) -> Optional[float]:
    """% reduction of `mode`'s own measure (params for PA, FLOPs for FA, memory for MA)."""
    key = MEASURE[mode][0]
    before, after = base.measure(key), point.measure(key)
    return None if not before or after is None else 100.0 * (1 - after / before)


def nearest_target(paper_reduction: float, targets: list[float]) -> float:
    """The planned target (a fraction kept) whose nominal reduction 1 - target is nearest the paper's."""
    return min(targets, key=lambda t: (abs(100.0 * (1 - t) - paper_reduction), t))
