"""The channel algebra: layouts, roots, the union-find over them, and the tracer's state.

Every tensor that carries channels gets a *layout*: for each position on its channel axis, the
root (a prunable producer's output, or a fixed source) and the root's channel index. Concat
concatenates layouts, Flatten repeats them, Slice/Split cut them; binary ops couple the roots
they add together (union-find). Every constant slice, attribute and shape constant that depends
on a layout is a *member* of the surgery plan.

The per-op rules (`oprules`) and the group builder (`groups`) both import this module; it imports
neither, so the arrows run one way: groups -> oprules -> channels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from .graph import ModelGraph



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


class ChannelTracer:
    """What the per-op rules read and write while the graph is walked: layouts, roots, couplings, members."""

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

