"""Channel dependency groups.

A *group* is a set of coupled roots that lose the same channel indices (the channel algebra,
layouts and the union-find, lives in `channels`; the per-op rules in `oprules`). `Tracer` walks
the graph once applying each node's rule; `Dependencies` holds the resulting groups and members.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .channels import ChannelTracer, Layout, Member, Root, node_label, storage_key, storage_root
from .graph import ModelGraph, load_graph
from .io import ModelLike
from .oprules import apply_rule

__all__ = ["Dependencies", "Group", "Layout", "Member", "Root", "Tracer", "channel_groups", "node_label",
           "storage_key", "storage_root"]


@dataclass
class Group:
    id: int
    roots: list[Root]
    size: int
    reasons: list[str]
    coupled_by: list[str] = field(default_factory=list)  # why its roots go together (the ops that join them)

    @property
    def prunable(self) -> bool:
        return not self.reasons

    @property
    def producers(self) -> list[str]:
        return [r.label for r in self.roots]

    def to_json(self, members: list[dict] | None = None) -> dict:
        out = {"id": self.id, "channels": self.size, "prunable": self.prunable,
               "producers": [{"node": r.label, "name": r.node, "index": r.index, "op": r.op} for r in self.roots],
               "reasons": sorted(set(self.reasons)), "coupled_by": self.coupled_by}
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
            self.couple(first.layout, member.layout, f"constant {storage_root(member.tensor).name!r} read by several "
                        f"nodes (tied: --keep-tied)")



class Dependencies:
    """The result of the walk: groups, members, and each tensor's layout."""

    def __init__(self, tracer: Tracer):
        self.mg = tracer.mg
        self.roots = tracer.roots
        self.layouts = tracer.layouts
        self.members = tracer.members
        self.root_group = np.array([tracer.find(r.id) for r in tracer.roots], dtype=np.int32)
        by_group: dict[int, list[Root]] = {}
        for root in self.roots:
            by_group.setdefault(int(self.root_group[root.id]), []).append(root)
        # Groups are numbered in graph order of their first producer; fixed sources are kept
        # (they explain unprunable couplings) but only groups with a real producer are listed.
        self.groups: list[Group] = []
        self.group_of_root = np.full(len(self.roots), -1, dtype=np.int32)
        for members in by_group.values():
            producers = [r for r in members if r.index >= 0]
            reasons = [reason for r in members for reason in r.reasons]
            gid = len(self.groups)
            self.groups.append(Group(gid, producers or members, members[0].size, reasons))
            for r in members:
                self.group_of_root[r.id] = gid
        for a, _, where in tracer.links:
            coupled_by = self.groups[self.group_of_root[a]].coupled_by
            if where not in coupled_by:
                coupled_by.append(where)
        self.root_offsets = np.concatenate([[0], np.cumsum([r.size for r in self.roots])]).astype(np.int64)

    @property
    def prunable(self) -> list[Group]:
        return [g for g in self.groups if g.prunable]

    def group_of(self, node_name: str) -> Group | None:
        """The group a producer belongs to, by its name or its label (`Op#index`)."""
        for group in self.groups:
            if any(node_name in (r.node, r.label) for r in group.roots if r.index >= 0):
                return group
        return None

    def keep_flags(self, keep: dict[int, np.ndarray]) -> np.ndarray:
        """One boolean per root channel (roots laid end to end): is it kept?"""
        flags = np.ones(int(self.root_offsets[-1]), dtype=bool)
        for root in self.roots:
            kept = keep.get(int(self.group_of_root[root.id]))
            if kept is None:
                continue
            row = np.zeros(root.size, dtype=bool)
            row[np.asarray(kept, dtype=np.int64)] = True
            flags[self.root_offsets[root.id]: self.root_offsets[root.id] + root.size] = row
        return flags

    def mask(self, layout: Layout, flags: np.ndarray) -> np.ndarray:
        return flags[self.root_offsets[layout.roots] + layout.index]

    def members_of(self, group: Group) -> list[Member]:
        gid = group.id
        return [m for m in self.members if np.any(self.group_of_root[m.layout.roots] == gid)]


def channel_groups(source: ModelLike | ModelGraph, input_shapes: dict | None = None,
                   keep_tied: bool = False) -> Dependencies:
    """Analyse a model: which output channels can be removed together, and what that touches.

    `keep_tied`: a constant read by several nodes keeps its readers pruned alike (else each reader
    that is cut differently gets its own copy)."""
    return Tracer(load_graph(source, input_shapes), keep_tied).run()
