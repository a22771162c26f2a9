"""Channel dependency groups.

Every tensor that carries channels gets a *layout*: for each position on its channel axis, the
root (a prunable producer's output, or a fixed source) and the root's channel index. Concat
concatenates layouts, Flatten repeats them, Slice/Split cut them; binary ops couple the roots
they add together (union-find). A *group* is a set of coupled roots that lose the same channel
indices; every constant slice, attribute and shape constant that depends on a layout is a
*member* of the surgery plan. The per-op rules live in `oprules.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from .graph import ModelGraph, load_graph
from .io import ModelLike


@dataclass(frozen=True)
class Layout:
    roots: np.ndarray  # int32: root id per channel position
    index: np.ndarray  # int32: the root's channel index per position

    def __len__(self) -> int:
        return len(self.roots)

    def repeat(self, times: int) -> "Layout":
        """Each channel becomes `times` consecutive positions (Flatten, depthwise multiplier)."""
        return Layout(np.repeat(self.roots, times), np.repeat(self.index, times))

    def tile(self, times: int) -> "Layout":
        return Layout(np.tile(self.roots, times), np.tile(self.index, times))

    def cut(self, start: int, stop: int, step: int = 1) -> "Layout":
        return Layout(self.roots[start:stop:step], self.index[start:stop:step])

    @staticmethod
    def concat(layouts: list["Layout"]) -> "Layout":
        return Layout(np.concatenate([l.roots for l in layouts]), np.concatenate([l.index for l in layouts]))


def node_label(node: gs.Node | None, index: int) -> str:
    """How reports name a node: its name, or `Op#index` (graph order) when it has none."""
    if node is None:
        return ""
    return node.name or f"{node.op}#{index}"


def storage_key(tensor: gs.Tensor) -> tuple:
    """Where a constant's values live: ("initializer", name) or ("constant_node", its output's name).

    Follows Identity nodes (the legacy exporter wraps shared weights in them). Never keyed by node
    name: exporters leave Constant nodes unnamed; tensor names are unique.
    """
    tensor = storage_root(tensor)
    return ("initializer" if isinstance(tensor, gs.Constant) else "constant_node", tensor.name)


def storage_root(tensor: gs.Tensor) -> gs.Tensor:
    """The initializer or Constant-node output behind a tensor (through Identity nodes)."""
    while not isinstance(tensor, gs.Constant) and tensor.inputs and tensor.inputs[0].op == "Identity":
        tensor = tensor.inputs[0].inputs[0]
    return tensor


@dataclass
class Root:
    id: int
    node: str  # the producing node's name as the user gave it ("" for graph inputs and unnamed nodes)
    op: str
    tensor: str
    size: int
    reasons: list[str] = field(default_factory=list)  # why not prunable; empty = prunable
    index: int = -1  # the producing node's position in the graph (-1: a graph input)
    label: str = ""  # the node's name, or `Op#index` when it has none (see node_label)


@dataclass
class Member:
    """One thing surgery must change when channels of `layout` are removed.

    kind: "slice" (a constant loses positions along `axis`), "group_attr" (a Conv's `group`
    becomes the kept count), "dim" (entry `axis` of a shape constant becomes the kept count),
    "split" (a Split's sizes become the kept counts of `extra` layouts), "slice_bounds".
    role: "producer", "consumer", "norm", "operand" (for the zero-mask oracle and reports).
    """

    kind: str
    node: gs.Node  # by identity: names may be empty or repeated
    tensor: gs.Tensor | None
    axis: int
    layout: Layout
    role: str = "producer"
    extra: object = None
    label: str = ""  # the node as reports name it (node_label)


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


class Tracer:
    """Walks the graph once in topological order, applying each node's rule."""

    def __init__(self, mg: ModelGraph, keep_tied: bool = False):
        self.mg = mg
        self.keep_tied = keep_tied  # a constant read by several nodes ties them (else it is only storage)
        self.links: list[tuple[int, int, str]] = []  # (root, root, where) for every union: why groups join
        self.roots: list[Root] = []
        self.parent: list[int] = []
        self.layouts: dict[str, Layout] = {}
        self.axes: dict[str, int] = {}
        self.members: list[Member] = []
        self.node_index = {id(n): i for i, n in enumerate(mg.nodes)}

    def label(self, node: gs.Node | None) -> str:
        return node_label(node, self.node_index.get(id(node), -1)) if node is not None else ""

    def where(self, node: gs.Node) -> str:
        """A node as messages name it."""
        return f"node {self.label(node)!r} ({node.op})"

    # ---- roots and union-find -------------------------------------------------------------
    def new_root(self, node: gs.Node | None, tensor: gs.Tensor, size: int, axis: int,
                 reason: str | None = None) -> Layout:
        root = Root(len(self.roots), node.name if node else "", node.op if node else "input",
                    tensor.name, int(size), [reason] if reason else [],
                    self.node_index.get(id(node), -1) if node else -1, self.label(node))
        self.roots.append(root)
        self.parent.append(root.id)
        layout = Layout(np.full(size, root.id, dtype=np.int32), np.arange(size, dtype=np.int32))
        self.set(tensor, layout, axis)
        return layout

    def find(self, root: int) -> int:
        while self.parent[root] != root:
            self.parent[root] = self.parent[self.parent[root]]
            root = self.parent[root]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def block(self, layout: Layout | None, reason: str) -> None:
        """Every root seen in `layout` becomes unprunable."""
        if layout is None:
            return
        for root in np.unique(layout.roots):
            if reason not in self.roots[root].reasons:
                self.roots[root].reasons.append(reason)

    def couple(self, a: Layout, b: Layout, where: str) -> None:
        """Positions of `a` and `b` are added/multiplied together: they must be pruned alike."""
        if len(a) != len(b):
            self.block(a, f"{where}: channel counts differ")
            self.block(b, f"{where}: channel counts differ")
            return
        if np.array_equal(a.roots, b.roots) and np.array_equal(a.index, b.index):
            return
        pairs = np.unique(np.stack([a.roots, b.roots], axis=1), axis=0)
        aligned = bool(np.array_equal(a.index, b.index))
        for ra, rb in pairs:
            same_sizes = self.roots[ra].size == self.roots[rb].size
            if ra != rb and aligned and same_sizes:
                self.union(int(ra), int(rb))
                self.links.append((int(ra), int(rb), where))
            elif ra != rb or not aligned:
                reason = f"{where}: channels meet out of order"
                self.block(a, reason)
                self.block(b, reason)
                return

    # ---- layouts ------------------------------------------------------------------------
    def set(self, tensor: gs.Tensor, layout: Layout, axis: int) -> None:
        self.layouts[tensor.name] = layout
        self.axes[tensor.name] = axis

    def layout(self, tensor: gs.Tensor | None) -> Layout | None:
        if tensor is None:
            return None
        return self.layouts.get(tensor.name)

    def axis(self, tensor: gs.Tensor) -> int | None:
        return self.axes.get(tensor.name)

    def layout_or_fixed(self, tensor: gs.Tensor, axis: int, reason: str) -> Layout | None:
        """The layout of a channel-carrying tensor, or a fixed (unprunable) one for opaque data."""
        layout = self.layout(tensor)
        if layout is not None:
            return layout
        shape = self.mg.shape(tensor)
        if shape is None or axis >= len(shape):
            return None
        producer = tensor.inputs[0] if tensor.inputs else None
        return self.new_root(producer, tensor, shape[axis], axis, reason)

    def add_member(self, kind: str, node: gs.Node, tensor: gs.Tensor | None, axis: int, layout: Layout,
                   role: str = "producer", extra: object = None) -> None:
        self.members.append(Member(kind, node, tensor, axis, layout, role, extra, self.label(node)))

    def slice_const(self, node: gs.Node, tensor: gs.Tensor | None, axis: int, layout: Layout, role: str) -> bool:
        """Register a constant to be sliced; False (and the layout blocked) if it is computed."""
        if tensor is None or tensor.name == "":
            return True
        if not self.mg.is_const(tensor):
            self.block(layout, f"{self.where(node)}: parameter {tensor.name!r} is computed, not constant")
            return False
        source = storage_root(tensor)
        if not isinstance(source, gs.Constant) and "value" not in source.inputs[0].attrs:
            self.block(layout, f"{self.where(node)}: parameter {tensor.name!r} is a Constant without a tensor value")
            return False
        self.add_member("slice", node, tensor, axis, layout, role)
        return True

    # ---- the walk -----------------------------------------------------------------------
    def run(self) -> "Dependencies":
        from .oprules import apply_rule

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
