"""Channel dependency groups.

A *group* is a set of coupled roots that lose the same channel indices (the channel algebra,
layouts and the union-find, lives in `channels`; the per-op rules in `oprules`). `Tracer` walks
the graph once applying each node's rule; `Dependencies` holds the resulting groups and members.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from onnxprune.analysis.channels import (
    STRUCTURAL,
    ChannelTracer,
    Layout,
    Member,
    Root,
    node_label,
    storage_key,
    storage_root,
)
from onnxprune.analysis.oprules import apply_rule
from onnxprune.read.graph import ModelGraph, load_graph
from onnxprune.read.io import ModelLike

__all__ = [
    "Dependencies",
    "Group",
    "Layout",
    "Member",
    "Root",
    "Tracer",
    "channel_groups",
    "node_label",
    "storage_key",
    "storage_root",
]


@dataclass
class Group:
    id: int
    roots: list[Root]
    size: int
    reasons: list[str]
    coupled_by: list[str] = field(default_factory=list)  # why its roots go together (the ops that join them)
    channels: np.ndarray = field(default=None, repr=False)  # the channel ids it holds (roots laid end to end)
    slots: np.ndarray = field(default=None, repr=False)  # per channel: its class, 0..size-1
    structural: list[str] = field(default_factory=list)  # inexact couplings it is pruned through (reinit)

    @property
    def structural_only(self) -> bool:
        """Refused only for couplings that --init reinit may cut (or, there, pruned through them)."""
        return bool(self.structural) or (bool(self.reasons) and all(r.endswith(STRUCTURAL) for r in self.reasons))

    @property
    def prunable(self) -> bool:
        return not self.reasons

    @property
    def producers(self) -> list[str]:
        return [r.label for r in self.roots]

    def to_json(self, members: list[dict] | None = None) -> dict:
        out = {
            "id": self.id,
            "channels": self.size,
            "prunable": self.prunable,
            "producers": [{"node": r.label, "name": r.node, "index": r.index, "op": r.op} for r in self.roots],
            "reasons": sorted(set(self.reasons)),
            "coupled_by": self.coupled_by,
            "structural_only": self.structural_only,
        }
        if members is not None:
            out["members"] = members
        return out


class Tracer(ChannelTracer):
    """Walks the graph once in topological order, applying each node's rule."""

    # ---- the walk -----------------------------------------------------------------------
    def run(self) -> "Dependencies":
        for node in self.mg.nodes:
            apply_rule(self, node)
        for output in self.mg.graph.outputs:
            self.block(self.layout(output), "graph output: its shape is the model's contract")
        if self.keep_tied:
            self._tie_shared_constants()
        return Dependencies(self)

    def _tie_shared_constants(self) -> None:
        """--keep-tied: a constant read by several nodes is one parameter; its readers prune alike.

        Without it, sharing is storage (torch de-duplicates equal initializers) and surgery gives
        each reader that is cut differently its own copy."""
        seen: dict[tuple, Member] = {}
        for member in self.members:
            if member.kind != "slice":
                continue
            key = (storage_key(member.tensor), member.axis)
            first = seen.setdefault(key, member)
            if first is member:
                continue
            # the same weight slice read twice (a layer applied twice): both readers prune alike
            self.couple(
                first.layout,
                member.layout,
                f"constant {storage_root(member.tensor).name!r} read by several nodes (tied: --keep-tied)",
            )


def components(n: int, edges: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Connected components of channel ids 0..n-1 joined by `edges`: each id's smallest fellow id.

    Vectorised union-find (hook each edge's larger representative under the smaller, then flatten
    by pointer jumping), so ResNet-50's ~30k channels and their couplings take milliseconds.
    """
    label = np.arange(n, dtype=np.int64)
    if not edges:
        return label
    us = np.concatenate([u for u, _ in edges]).astype(np.int64)
    vs = np.concatenate([v for _, v in edges]).astype(np.int64)
    while True:
        lu, lv = label[us], label[vs]
        low, high = np.minimum(lu, lv), np.maximum(lu, lv)
        joined = low != high
        if not joined.any():
            return label
        np.minimum.at(label, high[joined], low[joined])
        while True:
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped


class Dependencies:
    """The result of the walk: channel classes, groups of classes, members, each tensor's layout.

    A *class* is a set of root channels that must go together (the couplings' connected
    components). Classes that touch the same roots (and are alike fixed or free) form a *group*:
    the unit the sampler draws from; a group's size is its class count and keep sets name its
    classes 0..size-1 (in channel order). For most groups a class is one channel of each root.
    """

    def __init__(self, tracer: Tracer):
        self.mg = tracer.mg
        self.roots = tracer.roots
        self.layouts = tracer.layouts
        self.members = tracer.members
        n = tracer.total
        sizes = np.array([r.size for r in self.roots], dtype=np.int64)
        self.root_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        root_of_channel = np.repeat(np.arange(len(self.roots)), sizes)
        _, class_of_channel = np.unique(components(n, tracer.edges), return_inverse=True)
        classes = int(class_of_channel.max()) + 1 if n else 0
        fixed = np.zeros(n, dtype=bool)
        for ids, reason in tracer.blocks:
            if tracer.exact or not reason.endswith(STRUCTURAL):
                fixed[ids] = True
        class_fixed = np.zeros(classes, dtype=bool)
        np.logical_or.at(class_fixed, class_of_channel, fixed)
        # a class's signature: the set of roots it touches (a sum of random keys), and fixed or free
        keys = np.random.default_rng(20261129).integers(1, 2**62, size=len(self.roots) + 1, dtype=np.int64)
        pairs = np.unique(class_of_channel * (len(self.roots) + 1) + root_of_channel)
        signature = np.zeros(classes, dtype=np.int64)
        np.add.at(signature, pairs // (len(self.roots) + 1), keys[pairs % (len(self.roots) + 1)])
        signature = np.where(class_fixed, signature ^ keys[-1], signature)
        # groups numbered in order of their first channel (graph order of the first producer)
        _, first, group_of_class = np.unique(signature, return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(first))
        group_of_class = rank[group_of_class] if classes else group_of_class
        order = np.argsort(group_of_class, kind="stable")  # classes by group, then by first channel
        slot_of_class = np.empty(classes, dtype=np.int64)
        counts = np.bincount(group_of_class, minlength=len(first)) if classes else np.zeros(0, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)])
        slot_of_class[order] = np.arange(classes) - np.repeat(starts[:-1], counts)
        self.group_of_channel = group_of_class[class_of_channel].astype(np.int64) if n else np.zeros(0, np.int64)
        self.slot_of_channel = slot_of_class[class_of_channel] if n else np.zeros(0, np.int64)
        self.groups: list[Group] = []
        by_channel = np.argsort(self.group_of_channel, kind="stable")
        channel_counts = np.bincount(self.group_of_channel, minlength=len(first))
        bounds = np.concatenate([[0], np.cumsum(channel_counts)])
        for gid in range(len(first)):
            channels = by_channel[bounds[gid] : bounds[gid + 1]]
            touched = [self.roots[r] for r in np.unique(root_of_channel[channels])]
            producers = [r for r in touched if r.index >= 0]
            group = Group(gid, producers or touched, int(counts[gid]), [])
            group.channels, group.slots = channels, self.slot_of_channel[channels]
            self.groups.append(group)
        for ids, reason in tracer.blocks:
            for gid in np.unique(self.group_of_channel[ids]):
                group = self.groups[gid]
                if not (tracer.exact or not reason.endswith(STRUCTURAL)):
                    if reason not in group.structural:
                        group.structural.append(reason)
                elif reason not in group.reasons:
                    group.reasons.append(reason)
        for ids, where in tracer.links:
            for gid in np.unique(self.group_of_channel[ids]):
                if where not in self.groups[gid].coupled_by:
                    self.groups[gid].coupled_by.append(where)

    @property
    def prunable(self) -> list[Group]:
        return [g for g in self.groups if g.prunable]

    def group_of(self, node_name: str) -> Group | None:
        """The (first) group holding channels of a producer, by its name or its label (`Op#index`)."""
        for group in self.groups:
            if any(node_name in (r.node, r.label) for r in group.roots if r.index >= 0):
                return group
        return None

    def ids(self, layout: Layout) -> np.ndarray:
        """The channel id of every position of `layout`."""
        return self.root_offsets[layout.roots] + layout.index

    def groups_in(self, layout: Layout) -> np.ndarray:
        """Ids of the groups whose channels appear in `layout`."""
        return np.unique(self.group_of_channel[self.ids(layout)])

    def drop(self, flags: np.ndarray, gid: int, classes) -> None:
        """Clear the flags of the channels of classes `classes` of group `gid`."""
        group = self.groups[gid]
        flags[group.channels[np.isin(group.slots, np.asarray(classes, dtype=np.int64))]] = False

    def keep_flags(self, keep: dict[int, np.ndarray]) -> np.ndarray:
        """One boolean per root channel (roots laid end to end): is it kept?"""
        flags = np.ones(int(self.root_offsets[-1]), dtype=bool)
        for gid, kept in keep.items():
            group = self.groups[int(gid)]
            flags[group.channels[~np.isin(group.slots, np.asarray(kept, dtype=np.int64))]] = False
        return flags

    def mask(self, layout: Layout, flags: np.ndarray) -> np.ndarray:
        return flags[self.root_offsets[layout.roots] + layout.index]

    def members_of(self, group: Group) -> list[Member]:
        gid = group.id
        return [m for m in self.members if np.any(self.group_of_channel[self.ids(m.layout)] == gid)]

    def keep_from_layers(self, kept: dict[str, list[int]]) -> dict[int, np.ndarray]:
        """Keep sets (group id -> kept classes) from kept output channels per producer (by name or
        label), e.g. the `layers` rows of shrink's report: a class is kept if its channels are."""
        flags = np.ones(int(self.root_offsets[-1]), dtype=bool)
        for root in self.roots:
            rows = kept.get(root.label, kept.get(root.node)) if root.index >= 0 else None
            if rows is not None:
                start = self.root_offsets[root.id]
                flags[start : start + root.size] = False
                flags[start + np.asarray(rows, dtype=np.int64)] = True
        keep = {}
        for group in self.prunable:
            classes = np.unique(group.slots[flags[group.channels]])
            if len(classes) < group.size:
                keep[group.id] = classes
        return keep

    def ranges(self, group: Group) -> list[tuple[Root, list[tuple[int, int]]]]:
        """Per root the group touches: its channel ranges [start, stop) in the group."""
        out = []
        for root in group.roots:
            local = np.sort(
                group.channels[
                    (group.channels >= self.root_offsets[root.id]) & (group.channels < self.root_offsets[root.id + 1])
                ]
                - self.root_offsets[root.id]
            )
            breaks = np.flatnonzero(np.diff(local) != 1) + 1
            out.append((root, [(int(run[0]), int(run[-1]) + 1) for run in np.split(local, breaks) if len(run)]))
        return out


def channel_groups(
    source: ModelLike | ModelGraph, input_shapes: dict | None = None, keep_tied: bool = False, exact: bool = True
) -> Dependencies:
    """Analyse a model: which output channels can be removed together, and what that touches.

    `keep_tied`: a constant read by several nodes keeps its readers pruned alike (else each reader
    that is cut differently gets its own copy). `exact=False` (for --init reinit) also prunes through
    structural couplings (a LayerNorm or Softmax over the channels)."""
    return Tracer(load_graph(source, input_shapes), keep_tied, exact).run()
