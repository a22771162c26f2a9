"""What `shrink` weighs: the Bookkeeper (each layer's channel counts and the network's totals, updated
as groups lose channels: the loop's state), and each group's share of the network's params, FLOPs and
memory with its probability of being drawn first in each mode (PA/FA/MA) — the sampler's weights, shown."""

from __future__ import annotations

import numpy as np

from onnxprune.analysis.complexity import FIGURES, Layer, build_layers
from onnxprune.analysis.groups import Dependencies

MODE_OF_FIGURE = dict(zip(FIGURES, ("PA", "FA", "MA")))


def group_shares(deps: Dependencies) -> dict[int, dict]:
    """Per group id: `share` (fraction of each network total held by the layers whose output
    channels the group holds) and, for prunable groups, `draw_probability` per mode (the share
    among prunable groups: the loop's first draw)."""
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


class Bookkeeper:
    """Channel counts per layer and the network's totals, updated as groups lose channels."""

    def __init__(self, deps: Dependencies, layers: list[Layer]):
        self.deps = deps
        self.layers = layers
        self.flags = deps.keep_flags({})
        # a layout counts a layer's channels only when it describes them: a tensor whose traced channels
        # lie on another axis (an NHWC map fed to a Conv, issue 25) keeps the layer's own fixed count
        self.in_layouts = [_describing(deps, layer.in_tensor, layer.cin) for layer in layers]
        self.out_layouts = [_describing(deps, layer.out_tensor, layer.cout) for layer in layers]
        self.costs = [layer.cost() for layer in layers]
        self.touching: dict[int, list[int]] = {}  # group -> layers whose counts it changes
        self.producing: dict[int, list[int]] = {}  # group -> layers whose outputs it holds
        self.producers: dict[int, list[int]] = {}  # layer -> groups holding its outputs
        for i, (lin, lout) in enumerate(zip(self.in_layouts, self.out_layouts)):
            for layout, index in ((lin, self.touching), (lout, self.touching), (lout, self.producing)):
                if layout is not None:
                    for gid in map(int, deps.groups_in(layout)):
                        index.setdefault(gid, []).append(i)
                        if index is self.producing:
                            self.producers.setdefault(i, []).append(gid)
        for gid in self.touching:
            self.touching[gid] = sorted(set(self.touching[gid]))
        # the loop's hot path: channel ids per layout once; a group's weight kept until a layer it produces changes
        self.ids = [
            [None if lay is None else deps.ids(lay) for lay in io] for io in zip(self.in_layouts, self.out_layouts)
        ]
        self.weights: dict[tuple[int, int], float] = {}  # (group, figure) -> group_weight

    def count(self, ids: np.ndarray | None, default: int) -> int:
        return default if ids is None else int(np.count_nonzero(self.flags[ids]))

    def remove(self, gid: int, classes: np.ndarray) -> None:
        """Group `gid` loses the channel classes `classes` (indices 0..size-1 of its classes)."""
        self.deps.drop(self.flags, gid, classes)
        self.recount(gid)

    def recount(self, gid: int) -> None:
        for i in self.touching.get(gid, []):
            layer = self.layers[i]
            self.costs[i] = layer.cost(self.count(self.ids[i][0], layer.cin), self.count(self.ids[i][1], layer.cout))
            for producer in self.producers.get(i, ()):
                for figure in range(len(self.costs[i])):
                    self.weights.pop((producer, figure), None)

    def reset(self) -> None:
        self.flags[:] = True
        for gid in self.touching:
            self.recount(gid)

    def total(self, figure: int) -> int:
        return sum(c[figure] for c in self.costs)

    def group_weight(self, gid: int, figure: int) -> float:
        weight = self.weights.get((gid, figure))
        if weight is None:
            weight = self.weights[(gid, figure)] = float(
                sum(self.costs[i][figure] for i in self.producing.get(gid, []))
            )
        return weight


def _describing(deps: Dependencies, tensor: str | None, channels: int):
    """The layout of `tensor` if it holds exactly the layer's `channels` positions, else None."""
    layout = deps.layouts.get(tensor) if tensor else None
    return layout if layout is not None and len(layout) == channels else None
