"""What `shrink` would weigh: each group's share of the network's params, FLOPs and memory, and
its probability of being drawn first in each mode (PA/FA/MA) — the sampler's weights, shown."""

from __future__ import annotations

from onnxprune.analysis.complexity import FIGURES, build_layers
from onnxprune.analysis.groups import Dependencies

MODE_OF_FIGURE = dict(zip(FIGURES, ("PA", "FA", "MA")))


def group_shares(deps: Dependencies) -> dict[int, dict]:
    """Per group id: `share` (fraction of each network total held by the layers whose output
    channels the group holds) and, for prunable groups, `draw_probability` per mode (the share
    among prunable groups: the loop's first draw)."""
    from onnxprune.prune.shrink import Bookkeeper

    book = Bookkeeper(deps, build_layers(deps.mg))
    totals = [book.total(f) for f in range(len(FIGURES))]
    weights = {g.id: [book.group_weight(g.id, f) for f in range(len(FIGURES))] for g in deps.groups}
    prunable_totals = [sum(weights[g.id][f] for g in deps.prunable) for f in range(len(FIGURES))]
    out = {}
    for group in deps.groups:
        w = weights[group.id]
        entry = {"share": {name: (w[f] / totals[f] if totals[f] else 0.0) for f, name in enumerate(FIGURES)}}
        if group.prunable:
            entry["draw_probability"] = {
                MODE_OF_FIGURE[name]: w[f] / prunable_totals[f] if prunable_totals[f] else 0.0
                for f, name in enumerate(FIGURES)
            }
        out[group.id] = entry
    return out
