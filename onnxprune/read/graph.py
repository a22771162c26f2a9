"""The analysis IR: an onnx-graphsurgeon graph plus inferred shapes and constant lookup.

gs gives producer/consumer links and lazy constants (importing a 100 MB model takes ~1 ms);
edits are written back to the ModelProto by `surgery`, so untouched weights are never copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import onnx
import onnx.numpy_helper
import onnx_graphsurgeon as gs

from onnxprune.errors import UserError
from onnxprune.read import lazy_weights
from onnxprune.read.constant_folding import folded_value, is_foldable
from onnxprune.read.io import ModelLike, load_model
from onnxprune.read.names import display_name  # noqa: F401 - re-exported: graph.display_name
from onnxprune.read.shapes import TensorInfo, infer_shapes


@dataclass
class ModelGraph:
    proto: onnx.ModelProto  # the analysed model; from a path its weights stay in the file (lazy_weights)
    graph: gs.Graph
    infos: dict[str, TensorInfo]
    name: str = "model"
    _opset: int = field(default=0, init=False)
    _index: dict | None = field(default=None, init=False, repr=False)
    _folded: dict = field(default_factory=dict, init=False, repr=False)  # tensor name -> value or None

    @property
    def model(self) -> onnx.ModelProto:
        """The model, self-contained (weights left in the file are read in, once, in place): what
        to hand to onnxruntime or a user. The analysis itself reads `proto`."""
        return lazy_weights.materialize(self.proto)

    @property
    def opset(self) -> int:
        if not self._opset:
            self._opset = next((o.version for o in self.proto.opset_import if o.domain in ("", "ai.onnx")), 13)
        return self._opset

    @property
    def shape_method(self) -> str:
        """How the shapes were resolved: "onnx", "symbolic" (onnxruntime's) or "probe" (a run)."""
        return getattr(self.infos, "method", "onnx")

    @property
    def shape_fallbacks(self) -> dict:
        """Which fallback ran and why (`fallbacks`), and the unknown tensors nothing reads, for which none ran."""
        return {
            "fallbacks": list(getattr(self.infos, "fallbacks", [])),
            "unknown_unread": list(getattr(self.infos, "unknown_unread", [])),
        }

    @property
    def nodes(self) -> list[gs.Node]:
        return self.graph.nodes

    def shape(self, tensor: gs.Tensor) -> tuple | None:
        if isinstance(tensor, gs.Constant):
            return tuple(tensor.shape)
        info = self.infos.get(tensor.name)
        if info is None or not info.known:
            return None
        return info.shape

    def info(self, tensor: gs.Tensor) -> TensorInfo | None:
        return self.infos.get(tensor.name)

    def const_value(self, tensor: gs.Tensor | None) -> np.ndarray | None:
        """The value of an initializer or of a Constant node's output; None for computed tensors."""
        if tensor is None or tensor.name == "":
            return None
        if isinstance(tensor, gs.Constant):
            return _zero_copy(tensor)
        producer = tensor.inputs[0] if tensor.inputs else None
        if producer is not None and producer.op == "Constant":
            return constant_node_value(producer)
        if producer is not None and producer.op == "Identity":
            return self.const_value(producer.inputs[0])  # legacy exporter wraps some weights
        if is_foldable(producer):  # Reshape(Constant) & co.: constant too
            return self._folded_value(tensor)
        return None

    def _folded_value(self, tensor: gs.Tensor) -> np.ndarray | None:
        if tensor.name not in self._folded:
            self._folded[tensor.name] = folded_value(self, tensor)
        return self._folded[tensor.name]

    def fold_small(self, tensor: gs.Tensor, depth: int = 0) -> np.ndarray | None:
        """Evaluate a small integer subgraph of constants (shape arithmetic); None if not constant."""
        value = self.const_value(tensor)
        if value is not None or depth > 12 or not tensor.inputs:
            return value
        node = tensor.inputs[0]
        args = [self.fold_small(i, depth + 1) if i.name else None for i in node.inputs]
        if not args or args[0] is None:
            return None
        try:
            if node.op == "Concat" and all(a is not None for a in args):
                return np.concatenate([np.atleast_1d(a) for a in args], axis=int(node.attrs.get("axis", 0)))
            if node.op == "Unsqueeze":
                axes = node.attrs.get("axes", args[1] if len(args) > 1 else None)
                return np.expand_dims(args[0], tuple(int(a) for a in np.atleast_1d(axes)))
            if node.op == "Squeeze":
                axes = node.attrs.get("axes", args[1] if len(args) > 1 else None)
                return np.squeeze(args[0], None if axes is None else tuple(int(a) for a in np.atleast_1d(axes)))
            if node.op == "Cast":
                return args[0]
            if node.op == "Gather" and args[1] is not None:
                return np.take(args[0], args[1], axis=int(node.attrs.get("axis", 0)))
        except (ValueError, IndexError, TypeError):
            return None
        return None

    def is_const(self, tensor: gs.Tensor | None) -> bool:
        if tensor is None or tensor.name == "":
            return False
        if isinstance(tensor, gs.Constant):
            return True
        producer = tensor.inputs[0] if tensor.inputs else None
        if producer is None:
            return False
        if producer.op == "Constant":
            return any(key in producer.attrs for key in CONSTANT_VALUE_ATTRS)
        if producer.op == "Identity":
            return self.is_const(producer.inputs[0])
        return is_foldable(producer) and self.is_const(producer.inputs[0]) and self._folded_value(tensor) is not None

    def const_source(self, tensor: gs.Tensor) -> tuple[str, str]:
        """Where a constant's bytes live: ("initializer", name) or ("constant_node", its OUTPUT tensor name).

        Keyed by tensor names, which ONNX keeps unique; node names may be empty or repeated
        (paddle2onnx leaves its weight Constant nodes unnamed). `constant_node_proto` finds the node.
        """
        if isinstance(tensor, gs.Constant):
            return ("initializer", tensor.name)
        producer = tensor.inputs[0]
        if producer.op == "Identity" or is_foldable(producer):  # a folded chain stores its source's bytes
            return self.const_source(producer.inputs[0])
        return ("constant_node", producer.outputs[0].name)

    def node_index(self, node: gs.Node) -> int:
        """The node's position in the graph (stable across proto and gs: gs keeps the order)."""
        if self._index is None:
            self._index = {id(n): i for i, n in enumerate(self.graph.nodes)}
        return self._index[id(node)]

    def display_name(self, node: gs.Node) -> str:
        """How messages and reports name a node: its name, or op#index when it has none."""
        return display_name(node, self.node_index(node))


CONSTANT_VALUE_ATTRS = ("value", "value_float", "value_floats", "value_int", "value_ints")


def constant_node_value(node: gs.Node) -> np.ndarray | None:
    """A Constant node's value from whichever value attribute it uses; None for sparse/string ones."""
    attrs = node.attrs
    if "value" in attrs:
        value = attrs["value"]
        return _zero_copy(value) if isinstance(value, gs.Constant) else np.asarray(value)
    if "value_float" in attrs:
        return np.asarray(attrs["value_float"], dtype=np.float32)
    if "value_floats" in attrs:
        return np.asarray(attrs["value_floats"], dtype=np.float32)
    if "value_int" in attrs:
        return np.asarray(attrs["value_int"], dtype=np.int64)
    if "value_ints" in attrs:
        return np.asarray(attrs["value_ints"], dtype=np.int64)
    return None


def constant_nodes(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """The model's Constant nodes by output tensor name (the second item of a "constant_node" source)."""
    return {node.output[0]: node for node in model.graph.node if node.op_type == "Constant" and node.output}


def node_reads(node: onnx.NodeProto) -> Iterator[str]:
    """Every tensor name `node` reads: its inputs, and the outer-scope names that its If/Loop/Scan
    bodies (at any depth) read by name without listing them as inputs.

    What decides whether a tensor is still used or must come first: an initializer, Constant or
    graph input read only inside a branch is as used as one a main-graph node lists."""
    yield from (name for name in node.input if name)
    for body in subgraphs(node):
        yield from _outer_reads(body)


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The node's graph attributes (If's branches, Loop's and Scan's bodies)."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        yield from attr.graphs


def _outer_reads(graph: onnx.GraphProto) -> Iterator[str]:
    """Names `graph` reads that it does not define itself (ONNX forbids shadowing an outer name)."""
    local = {value.name for value in graph.input} | {init.name for init in graph.initializer}
    local |= {sparse.values.name for sparse in graph.sparse_initializer}
    local |= {name for inner in graph.node for name in inner.output}
    for inner in graph.node:
        yield from (name for name in node_reads(inner) if name not in local)


def set_constant_node_value(node: onnx.NodeProto, value: np.ndarray) -> None:
    """Give a Constant node a new value, as a `value` tensor attribute (replacing value_floats &
    co., which cannot hold a reshaped array)."""
    old = next((a for a in node.attribute if a.name == "value"), None)
    name = old.t.name if old is not None else node.output[0]
    tensor = onnx.numpy_helper.from_array(np.ascontiguousarray(value), name)
    for attr in [a for a in node.attribute if a.name in CONSTANT_VALUE_ATTRS]:
        node.attribute.remove(attr)
    node.attribute.append(onnx.helper.make_attribute("value", tensor))


def _zero_copy(constant: gs.Constant) -> np.ndarray:
    """A read-only view on an initializer's raw bytes (gs would copy them twice); a weight left in
    the file (lazy_weights) is read from there."""
    proto = getattr(getattr(constant, "_values", None), "tensor", None)
    if isinstance(proto, onnx.TensorProto) and lazy_weights.is_lazy(proto):
        return lazy_weights.read_array(proto)
    if (
        isinstance(proto, onnx.TensorProto)
        and proto.HasField("raw_data")
        and proto.data_location != onnx.TensorProto.EXTERNAL
    ):
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(proto.data_type))
            raw = proto.raw_data  # upb hands out a copy per access: take it once
            if dtype != np.dtype(object) and dtype.itemsize * int(np.prod(proto.dims, dtype=np.int64)) == len(raw):
                return np.frombuffer(raw, dtype=dtype).reshape(tuple(proto.dims))
        except (KeyError, TypeError, ValueError):
            pass
    return np.asarray(constant.values)


def load_graph(source: ModelLike | ModelGraph, input_shapes: dict | None = None) -> ModelGraph:
    """Load, infer shapes, import into gs. Accepts a path, a ModelProto or a ModelGraph.

    From a path the weights stay in the file (lazy_weights): the analysis reads only the ones it
    needs the values of, so a model's size costs neither time nor memory here."""
    if isinstance(source, ModelGraph):
        return source
    model = load_model(source, lazy=True)
    name = str(source) if not isinstance(source, onnx.ModelProto) else (model.graph.name or "model")
    infos = infer_shapes(model, input_shapes)
    try:
        graph = gs.import_onnx(model)
    except Exception as exc:  # gs raises assorted errors on malformed graphs
        raise UserError(f"{name}: cannot read the graph ({type(exc).__name__}: {exc})") from None
    return ModelGraph(proto=model, graph=graph, infos=infos, name=name)
