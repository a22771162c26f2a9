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

from onnxprune.read.graph import ModelGraph


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
        return Layout(
            np.concatenate([part.roots for part in layouts]), np.concatenate([part.index for part in layouts])
        )


def node_label(node: gs.Node | None, index: int) -> str:
    """How reports name a node: its name, or `Op#index` (graph order) when it has none."""
    if node is None:
        return ""
    return node.name or f"{node.op}#{index}"


def storage_key(tensor: gs.Tensor) -> tuple:
    """Where a constant's values live: ("initializer", name), ("constant_node", its output's name),
    or ("folded", name) for one computed from constants by reshape/cast ops (constant_folding),
    which surgery cuts by giving its readers a cut initializer.

    Follows Identity nodes (the legacy exporter wraps shared weights in them). Never keyed by node
    name: exporters leave Constant nodes unnamed; tensor names are unique.
    """
    tensor = storage_root(tensor)
    if isinstance(tensor, gs.Constant):
        return ("initializer", tensor.name)
    return ("constant_node" if tensor.inputs[0].op == "Constant" else "folded", tensor.name)


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
    role: "producer", "consumer", "norm", "operand", "divisor", "factor" (a constant inside a computed
    operand that multiplies the channels: not zeroed), "quant_param" (a per-channel scale or zero
    point of a quantized weight: not zeroed) -- for the zero-mask oracle and reports.
    """

    kind: str
    node: gs.Node  # by identity: names may be empty or repeated
    tensor: gs.Tensor | None
    axis: int
    layout: Layout
    role: str = "producer"
    extra: object = None
    label: str = ""  # the node as reports name it (node_label)
    position: int = -1  # "slice": which input of `node` reads the constant


STRUCTURAL = " (structural only: prunable with --init reinit)"


class ChannelTracer:
    """What the per-op rules read and write while the graph is walked: layouts, roots, couplings, members."""

    def __init__(self, mg: ModelGraph, keep_tied: bool = False, exact: bool = True):
        self.mg = mg
        self.exact = exact  # False (--init reinit): structural couplings do not block
        self.keep_tied = keep_tied  # a constant read by several nodes ties them (else it is only storage)
        self.roots: list[Root] = []
        self.offsets: list[int] = []  # root -> its first channel id (root channels laid end to end)
        self.total = 0  # channel ids so far
        self._offsets_array = np.zeros(0, dtype=np.int64)
        # couplings, as pairs of channel ids that must go together, and why (for `groups`)
        self.edges: list[tuple[np.ndarray, np.ndarray]] = []
        self.links: list[tuple[np.ndarray, str]] = []
        self.blocks: list[tuple[np.ndarray, str]] = []  # channel ids that must stay, and why
        self.layouts: dict[str, Layout] = {}
        self.axes: dict[str, int] = {}
        self.spans: dict[str, tuple] = {}  # tensors whose channels spread over several axes
        self.members: list[Member] = []
        self._cut_sites: dict[int, set] = {}  # node id -> {(input position, axis)} already cut
        self.node_index = {id(n): i for i, n in enumerate(mg.nodes)}

    def label(self, node: gs.Node | None) -> str:
        return node_label(node, self.node_index.get(id(node), -1)) if node is not None else ""

    def where(self, node: gs.Node) -> str:
        """A node as messages name it."""
        return f"node {self.label(node)!r} ({node.op})"

    # ---- roots and channel couplings ------------------------------------------------------
    def new_root(
        self, node: gs.Node | None, tensor: gs.Tensor, size: int, axis: int, reason: str | None = None
    ) -> Layout:
        root = Root(
            len(self.roots),
            node.name if node else "",
            node.op if node else "input",
            tensor.name,
            int(size),
            [reason] if reason else [],
            self.node_index.get(id(node), -1) if node else -1,
            self.label(node),
        )
        self.roots.append(root)
        self.offsets.append(self.total)
        self.total += int(size)
        layout = Layout(np.full(size, root.id, dtype=np.int32), np.arange(size, dtype=np.int32))
        self.set(tensor, layout, axis)
        if reason:
            self.block(layout, reason)
        return layout

    def ids(self, layout: Layout) -> np.ndarray:
        """The channel id of every position of `layout`."""
        if len(self._offsets_array) != len(self.offsets):
            self._offsets_array = np.asarray(self.offsets, dtype=np.int64)
        return self._offsets_array[layout.roots] + layout.index

    def block(self, layout: Layout | None, reason: str, structural: bool = False) -> None:
        """The channels seen in `layout` must stay (and whatever they are coupled with).

        `structural`: cutting them keeps the graph valid but changes what the kept channels compute
        (a LayerNorm or Softmax over the channels): refused when pruning must be exact (--init keep),
        allowed when the network is retrained (--init reinit)."""
        if layout is not None and len(layout):
            self.blocks.append((self.ids(layout), reason + (STRUCTURAL if structural else "")))

    def couple(self, a: Layout, b: Layout, where: str) -> None:
        """Positions of `a` and `b` are added/multiplied together: they must be pruned alike, position by position."""
        if len(a) != len(b):
            self.block(a, f"{where}: channel counts differ")
            self.block(b, f"{where}: channel counts differ")
            return
        self._unite(self.ids(a), self.ids(b), where)

    def couple_blocks(self, layout: Layout, blocks: int, where: str) -> None:
        """`layout` is `blocks` equal blocks (a grouped conv's groups, a shuffle's rows): position i of
        every block goes together, so each block keeps the same count at the same offsets."""
        if blocks <= 1:
            return
        ids = self.ids(layout).reshape(blocks, -1)
        self._unite(np.repeat(ids[:1], blocks - 1, axis=0).ravel(), ids[1:].ravel(), where)

    def _unite(self, ids_a: np.ndarray, ids_b: np.ndarray, where: str) -> None:
        differ = ids_a != ids_b
        if differ.any():
            self.edges.append((ids_a[differ], ids_b[differ]))
            self.links.append((ids_a[differ], where))

    # ---- layouts ------------------------------------------------------------------------
    def set(self, tensor: gs.Tensor, layout: Layout, axis: int, span: tuple | None = None) -> None:
        """`span`: the channels lie on axes axis, axis+1, .. of these sizes (positions row-major)."""
        self.layouts[tensor.name] = layout
        self.axes[tensor.name] = axis
        if span is not None:
            self.spans[tensor.name] = tuple(int(d) for d in span)

    def span(self, tensor: gs.Tensor | None) -> tuple | None:
        return None if tensor is None else self.spans.get(tensor.name)

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

    def add_member(
        self,
        kind: str,
        node: gs.Node,
        tensor: gs.Tensor | None,
        axis: int,
        layout: Layout,
        role: str = "producer",
        extra: object = None,
        position: int = -1,
    ) -> None:
        self.members.append(Member(kind, node, tensor, axis, layout, role, extra, self.label(node), position))

    def slice_const(
        self, node: gs.Node, tensor: gs.Tensor | None, axis: int, layout: Layout, role: str, extra: object = None
    ) -> bool:
        """Register a constant to be sliced; False (and the layout blocked) if it is computed.
        `extra` ("zero_point", values): an integer weight whose zero is its zero point (oracle)."""
        if tensor is None or tensor.name == "":
            return True
        if not self.mg.is_const(tensor):
            self.block(layout, f"{self.where(node)}: parameter {tensor.name!r} is computed, not constant")
            return False
        source = storage_root(tensor)
        if (
            not isinstance(source, gs.Constant)
            and source.inputs[0].op == "Constant"
            and "value" not in source.inputs[0].attrs
        ):
            self.block(layout, f"{self.where(node)}: parameter {tensor.name!r} is a Constant without a tensor value")
            return False
        # the input position this member cuts: one tensor may feed several inputs of a node (dynamo
        # de-duplicates an untrained BatchNorm's equal scale and variance)
        positions = [i for i, x in enumerate(node.inputs) if x is tensor]
        taken = self._cut_sites.setdefault(id(node), set())
        position = next((p for p in positions if (p, axis) not in taken), positions[-1])
        taken.add((position, axis))
        self.add_member("slice", node, tensor, axis, layout, role, extra, position=position)
        return True
