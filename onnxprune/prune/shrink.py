"""The loop (the paper's Algorithm 1 on channel groups): draw a group by complexity share, remove
a step of its channels, update the totals analytically, stop under the target. The graph is
edited once, at the end."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.random  # noqa: F401  (the sampler's generator: imported with this module, not inside the first shrink)
import onnx

from onnxprune.analysis.complexity import FIGURES, Layer, profile
from onnxprune.analysis.groups import Dependencies, Tracer, node_label
from onnxprune.analysis.latency import latency_terms, load_profile, measure_node_latency
from onnxprune.errors import UserError
from onnxprune.prune.initialize import reinitialize
from onnxprune.prune.plan import Bookkeeper
from onnxprune.prune.protect import resolve
from onnxprune.prune.rounding import AUTO, group_multiples, parse_round_to, unbiased_count
from onnxprune.prune.sampler import channels_to_remove, draw_group, l1_importance, next_count
from onnxprune.prune.surgery import fill_empty_cuts, prune_channels
from onnxprune.read.graph import load_graph
from onnxprune.read.io import ModelLike
from onnxprune.read.lazy_weights import materialize, materialized_copy
from onnxprune.report import si

MODES = {"PA": 0, "FA": 1, "MA": 2, "LA": 0}  # LA: index into the latency terms' costs
INITS = ("reinit", "keep")
CRITERIA = ("random", "l1")
STRATEGIES = ("complexity", "uniform")
MAX_ITERATIONS = 1_000_000


@dataclass
class ShrinkOptions:
    mode: str = "FA"
    target: float | None = 0.5
    budget: float | None = None
    step: float = 0.1
    seed: int = 0
    init: str = "reinit"
    criterion: str = "random"
    strategy: str = "complexity"
    min_channels: int = 1
    round_to: int | str = AUTO  # auto: per-layer-kind kernel multiples (rounding.py); 1: the paper's exact counts
    latency_profile: str | None = None
    multiples: dict | None = None  # group id -> channel multiple, set by shrink()
    floors: dict | None = None  # group id -> fewest channels it keeps (--max-ratio, protect.py)

    def floor(self, gid: int) -> int:
        return max(self.min_channels, (self.floors or {}).get(gid, 0))

    def validate(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"--mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if (self.target is None) == (self.budget is None):
            raise UserError("give exactly one of --target (a fraction) or --budget (an absolute figure)")
        if self.target is not None and not 0 < self.target < 1:
            raise UserError(f"--target {self.target}: must be a fraction strictly between 0 and 1, e.g. 0.5")
        if self.budget is not None and self.budget <= 0:
            raise UserError(f"--budget {self.budget}: must be positive")
        if not 0 < self.step < 1:
            raise UserError(f"--step {self.step}: must be a fraction strictly between 0 and 1, e.g. 0.1")
        for name, value, allowed in (
            ("--init", self.init, INITS),
            ("--criterion", self.criterion, CRITERIA),
            ("--strategy", self.strategy, STRATEGIES),
        ):
            if value not in allowed:
                raise UserError(f"{name} {value!r}: choose one of {', '.join(allowed)}")
        if self.min_channels < 1:
            raise UserError("--min-channels must be at least 1")
        self.round_to = parse_round_to(self.round_to)
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise UserError(f"--seed {self.seed}: must be a non-negative integer")


def _complexity_driven(book: Bookkeeper, kept: dict, opts: ShrinkOptions, limit: float, rng, importance) -> int:
    figure, iterations = MODES[opts.mode], 0
    while book.total(figure) > limit:
        candidates, counts = [], []
        for gid, channels in kept.items():
            new = next_count(len(channels), opts.step, opts.floor(gid), opts.multiples[gid])
            if new is not None:
                candidates.append(gid)
                counts.append(new)
        if not candidates or iterations >= MAX_ITERATIONS:
            return -1
        weights = np.array([book.group_weight(g, figure) for g in candidates])
        gid = draw_group(rng, candidates, weights)
        count = counts[candidates.index(gid)]
        if opts.multiples[gid] > 1:  # rounded without bias (rounding.py); may keep the group whole this draw
            count = unbiased_count(len(kept[gid]), opts.step, opts.floor(gid), opts.multiples[gid], rng)
            if count >= len(kept[gid]):
                iterations += 1
                continue
        drop = channels_to_remove(rng, kept[gid], len(kept[gid]) - count, opts.criterion, importance(gid))
        kept[gid] = np.setdiff1d(kept[gid], drop)
        book.remove(gid, drop)
        iterations += 1
    return iterations


def _uniform(book: Bookkeeper, kept: dict, opts: ShrinkOptions, limit: float, rng, importance) -> int:
    """Every group keeps the same fraction; bisect the fraction until the target is met."""
    figure = MODES[opts.mode]
    order = {
        gid: (np.argsort(-importance(gid), kind="stable") if opts.criterion == "l1" else rng.permutation(len(ch)))
        for gid, ch in kept.items()
    }

    def apply(ratio: float) -> dict:
        chosen = {}
        for gid, channels in kept.items():
            n = len(channels)
            multiple = opts.multiples[gid]
            count = int(n * ratio) // multiple * multiple
            count = min(n, max(count, -(-opts.floor(gid) // multiple) * multiple, 1))
            chosen[gid] = np.sort(order[gid][:count])
        book.reset()
        for gid, channels in chosen.items():
            book.remove(gid, np.setdiff1d(np.arange(len(kept[gid])), channels))
        return chosen

    if book.total(figure) <= limit:
        return 0
    low, high, best, steps = 0.0, 1.0, None, 0
    for steps in range(1, 40):  # noqa: B007  (the count of bisection steps is the return value)
        mid = (low + high) / 2
        chosen = apply(mid)
        if book.total(figure) <= limit:
            low, best = mid, chosen
        else:
            high = mid
    if best is None:
        apply(0.0)
        return -1
    kept.update(apply(low))
    return steps


def shrink(
    source: ModelLike,
    mode: str = "FA",
    target: float | None = 0.5,
    *,
    budget: float | None = None,
    step: float = 0.1,
    seed: int = 0,
    init: str = "reinit",
    criterion: str = "random",
    strategy: str = "complexity",
    min_channels: int = 1,
    round_to: int | str = AUTO,
    input_shapes: dict | None = None,
    latency_profile: str | None = None,
    keep_tied: bool = False,
    exclude: list[str] | None = None,
    max_ratio: dict[str, float] | None = None,
) -> tuple[onnx.ModelProto, dict]:
    """Prune `source` until its params/FLOPs/memory/latency (PA/FA/MA/LA) are at most the target.

    LA weighs groups by measured onnxruntime time per node (this machine's, or `latency_profile`
    measured on the target device); its target is a fraction of that measured latency.
    `keep_tied`: layers reading one shared constant stay pruned alike (else they get their own copies).
    `exclude` (node-name globs or `op:TYPE`) and `max_ratio` ({node glob: fraction}) protect layers
    (see protect.py); the report then lists them under "protected".
    """
    opts = ShrinkOptions(
        mode,
        target if budget is None else None,
        budget,
        step,
        seed,
        init,
        criterion,
        strategy,
        min_channels,
        round_to,
        latency_profile,
    )
    opts.validate()
    mg = load_graph(source, input_shapes)
    deps = Tracer(mg, keep_tied, exact=opts.init == "keep").run()  # reinit may cut structural couplings
    protection = resolve(deps, exclude, max_ratio)
    opts.floors = protection.floors
    measured = profile(mg)  # the layers the loop prunes, and the weights no layer counts
    layers, before = measured.layers, measured.totals
    times = None
    if opts.mode == "LA":
        times = (
            load_profile(latency_profile)
            if latency_profile
            else measure_node_latency(materialized_copy(mg.proto), input_shapes=input_shapes)
        )
        book = Bookkeeper(deps, latency_terms(deps, layers, times))
        baseline = book.total(0)
    else:
        book = Bookkeeper(deps, layers)
        baseline = before[FIGURES[MODES[opts.mode]]]
    if baseline <= 0:  # "within the budget" on a figure of 0 would be a claim nothing measured
        _nothing_counted(mg.name, opts.mode, len(layers), measured.uncounted_summary())
    limit = opts.budget if opts.budget is not None else opts.target * baseline
    rng = np.random.default_rng(opts.seed)
    kept = {g.id: np.arange(g.size) for g in deps.prunable if g.id not in protection.frozen}
    cache: dict[int, np.ndarray] = {}

    def importance(gid: int):
        if opts.criterion != "l1":
            return None
        if gid not in cache:
            cache[gid] = l1_importance(deps, deps.groups[gid])
        return cache[gid]

    run = _uniform if opts.strategy == "uniform" else _complexity_driven
    opts.multiples = group_multiples(deps, layers, opts.round_to)
    iterations = run(book, kept, opts, limit, rng, importance)
    exact_fallback = iterations < 0 and opts.round_to == AUTO and any(m > 1 for m in opts.multiples.values())
    if exact_fallback:  # unreachable with kernel multiples: the paper's exact counts, said in the report
        opts.multiples = dict.fromkeys(opts.multiples, 1)
        book.reset()
        rng = np.random.default_rng(opts.seed)
        kept = {g.id: np.arange(g.size) for g in deps.prunable if g.id not in protection.frozen}
        iterations = run(book, kept, opts, limit, rng, importance)
    if iterations < 0:
        inplace = not isinstance(source, onnx.ModelProto)
        _unreachable(deps, opts, baseline, protection.frozen, input_shapes, inplace)
    keep = {gid: channels for gid, channels in kept.items() if len(channels) < deps.groups[gid].size}
    # edit in place when we loaded the model ourselves: no copy of the weights
    copies: list[dict] = []
    model = prune_channels(deps, keep, inplace=not isinstance(source, onnx.ModelProto), notes=copies, materialize=False)
    if opts.init == "reinit" and keep:  # nothing pruned: the weights stay as they were
        reinitialize(model, np.random.default_rng(opts.seed))
    materialize(model)  # the weights no step replaced, read from the input file now
    after = profile(model, input_shapes).totals  # at the shape `before` and the loop used
    report = {
        "mode": opts.mode,
        "target": opts.target if opts.budget is None else opts.budget / max(baseline, 1),
        "seed": opts.seed,
        "step": opts.step,
        "init": opts.init,
        "criterion": opts.criterion,
        "strategy": opts.strategy,
        "round_to": opts.round_to,
        "round_to_used": 1 if exact_fallback else opts.round_to,
        "before": before,
        "after": after,
        "iterations": iterations,
        "layers": _changed_layers(deps, layers, keep),
        "input_shapes": _measured_shapes(mg),
        "pruned": bool(keep),
        "weights": (
            "unchanged (nothing pruned)"
            if not keep
            else "re-initialised"
            if opts.init == "reinit"
            else "kept (sliced from the original)"
        ),
    }
    if protection.notes:
        report["protected"] = protection.notes
    if measured.uncounted:  # pruned what profile sees; the figures leave these weights out
        report["uncounted"] = [dict(u) for u in measured.uncounted]
        report["uncounted_summary"] = measured.uncounted_summary()
    if copies:  # shared storage (e.g. de-duplicated zero biases) that readers now each hold a cut of
        report["unshared_constants"] = copies
    if times is not None:
        report["latency_us"] = {
            "before_measured": baseline,
            "after_estimated": book.total(0),
            "source": str(latency_profile) if latency_profile else "measured on this machine",
        }
    return model, report


FIGURE_NAMES = {"PA": "params", "FA": "FLOPs", "MA": "memory (bytes)", "LA": "latency (us)"}


def _nothing_counted(model: str, mode: str, layers: int, uncounted: str) -> None:
    """Refuse: the mode's figure counts nothing, so no target or budget is measured against anything."""
    if uncounted:
        why = uncounted
    elif layers:
        why = f"none of its {layers} layer(s) has any"
    else:
        why = "it has no layer profile counts (Conv, Gemm, MatMul, LSTM/GRU/RNN, normalisation)"
    raise UserError(
        f"{model}: profile counts 0 {FIGURE_NAMES[mode]} in it, so shrink cannot measure a budget against it: {why}"
    )


def _unreachable(
    deps: Dependencies,
    opts: ShrinkOptions,
    baseline: float,
    frozen: dict | None = None,
    input_shapes: dict | None = None,
    inplace: bool = False,
) -> None:
    """Refuse: the target is below what pruning every group to its minimum reaches. The figure quoted
    is measured: that floor is cut out of the graph and profiled (for LA, whose figure would be an
    estimate, none is quoted)."""
    name = FIGURE_NAMES[opts.mode]
    advice = "raise --target" + _loosening_flags(opts, frozen)
    structural = [g for g in deps.groups if not g.prunable and g.structural_only]
    if structural and opts.init == "keep":  # groups `onnxprune groups` calls prunable with --init reinit
        advice += (
            f", or use --init reinit ({len(structural)} group(s) are structural only: prunable with --init reinit)"
        )
    if opts.mode == "LA":
        raise UserError(f"target unreachable: every prunable group is at its minimum; {advice}")
    keep = {}
    for group in deps.prunable:
        if group.id in (frozen or {}):
            continue
        count = max(opts.floor(group.id), 1)
        count = min(group.size, -(-count // opts.multiples[group.id]) * opts.multiples[group.id])
        if count < group.size:
            keep[group.id] = np.arange(count)
    if not keep:
        raise UserError(
            f"target unreachable: no channel group can lose a channel ({len(deps.prunable)} of {len(deps.groups)} "
            f"prunable; `onnxprune groups` says why the others are not); the {name} stay {si(baseline)}; {advice}"
        )
    floor = prune_channels(deps, fill_empty_cuts(deps, keep), inplace=inplace)
    lowest = profile(floor, input_shapes).totals[FIGURES[MODES[opts.mode]]]
    raise UserError(
        f"target unreachable: every prunable group is at its minimum; the lowest reachable {name}, measured "
        f"on the graph pruned that far, is {si(lowest)} ({100.0 * lowest / max(baseline, 1):.1f}% of "
        f"{si(baseline)}); {advice}"
    )


def _loosening_flags(opts: ShrinkOptions, frozen: dict | None) -> str:
    """The flags that would let groups lose more channels, only those set tighter than their loosest
    (advising --min-channels 1 to a user who gave it is no advice)."""
    flags = []
    if opts.min_channels > 1:
        flags.append("lower --min-channels")
    if opts.round_to not in (1, AUTO):  # auto already fell back to exact counts before refusing
        flags.append("lower --round-to")
    if frozen or opts.floors:
        flags.append("protect fewer layers (--exclude, --max-ratio)")
    return f" or {', '.join(flags)}" if flags else ""


def _changed_layers(deps: Dependencies, layers: list[Layer], keep: dict) -> list[dict]:
    flags = deps.keep_flags(keep)
    rows = []
    # unnamed layers are reported as Op#index (by their output tensor: names may be empty or repeated)
    labels = {out.name: node_label(node, i) for i, node in enumerate(deps.mg.nodes) for out in node.outputs}
    for layer in layers:
        layout = deps.layouts.get(layer.out_tensor)
        if layout is None:
            continue
        mask = deps.mask(layout, flags)
        if mask.all():
            continue
        rows.append(
            {
                "node": layer.node or labels.get(layer.out_tensor, ""),
                "op": layer.op,
                "out_channels_before": int(len(mask)),
                "out_channels_after": int(mask.sum()),
                "kept": np.flatnonzero(mask).tolist(),
            }
        )
    return rows


def _measured_shapes(mg) -> dict[str, list]:
    """The graph inputs' shapes every figure of the report was measured at."""
    initializers = {i.name for i in mg.proto.graph.initializer}
    return {
        v.name: list(mg.infos[v.name].shape)
        for v in mg.proto.graph.input
        if v.name not in initializers and v.name in mg.infos and mg.infos[v.name].shape is not None
    }
