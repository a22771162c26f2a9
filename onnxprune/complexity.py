"""Per-layer params, FLOPs (multiply-accumulates) and memory, from node shapes.

Each layer's cost is a function of its input and output channel counts with every other factor
(kernel, spatial size, batch) fixed, so pruning updates the totals with arithmetic.

Definitions (the README repeats them):
- layers: Conv, ConvTranspose, Gemm, MatMul, BatchNormalization/InstanceNormalization nodes;
- params: elements of the constant float weights of those nodes (weight, bias, BN scale/shift/
  mean/var); an initializer read by several nodes counts once, at its first reader;
- FLOPs: multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul; bias adds, BN, activations and
  pooling are not counted (the pruning literature's convention);
- memory: bytes of the layer's weights plus bytes of its output activation (by dtype).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from .errors import UserError
from .graph import ModelGraph, display_name, load_graph
from .io import ModelLike
from .shapes import input_shape_hints

LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "InstanceNormalization")
FIGURES = ("params", "flops", "memory_bytes")


@dataclass(frozen=True)
class ParamTensor:
    name: str
    shape: tuple
    itemsize: int
    out_axis: int | None  # this axis follows the layer's output channel count
    in_axis: int | None  # this axis follows the per-group input channel count

    def elements(self, cin_eff: int, cout: int) -> int:
        dims = list(self.shape)
        if self.out_axis is not None:
            dims[self.out_axis] = cout
        if self.in_axis is not None:
            dims[self.in_axis] = cin_eff
        return int(np.prod(dims, dtype=np.int64))


@dataclass
class Layer:
    node: str
    op: str
    in_tensor: str | None
    out_tensor: str
    cin: int
    cout: int
    flop_factor: int  # FLOPs = flop_factor * cin_eff * cout / out_div
    act_factor: int  # output elements = act_factor * cout
    act_itemsize: int
    params: list[ParamTensor] = field(default_factory=list)
    in_div: int = 1  # Conv groups: input channels per group = cin / in_div
    in_fixed: int | None = None  # depthwise: input channels per group never change
    out_div: int = 1  # ConvTranspose groups
    index: int = -1  # the node's position in the graph (names may be empty or repeated)

    def cin_eff(self, cin: int) -> int:
        return self.in_fixed if self.in_fixed is not None else cin // self.in_div

    def cost(self, cin: int | None = None, cout: int | None = None) -> tuple[int, int, int]:
        cin = self.cin if cin is None else cin
        cout = self.cout if cout is None else cout
        eff = self.cin_eff(cin)
        params = sum(p.elements(eff, cout) for p in self.params)
        weight_bytes = sum(p.elements(eff, cout) * p.itemsize for p in self.params)
        flops = self.flop_factor * eff * cout // self.out_div
        memory = weight_bytes + self.act_factor * cout * self.act_itemsize
        return params, flops, memory


def _prod(values) -> int:
    return int(np.prod(list(values), dtype=np.int64))


class _LayerBuilder:
    def __init__(self, mg: ModelGraph):
        self.mg = mg
        self.counted: set = set()

    def shape(self, node: gs.Node, tensor: gs.Tensor) -> tuple:
        shape = self.mg.shape(tensor)
        if shape is None:
            tried = "; ".join(getattr(self.mg.infos, "failures", [])) or "ONNX inference left it unknown"
            hint = input_shape_hints(self.mg.model, only_symbolic=True)
            advice = f"give the input size with {hint}" if hint else "no tool can evaluate the ops it depends on"
            raise UserError(f"node {self.mg.display_name(node)!r} ({node.op}): the shape of {tensor.name!r} cannot be "
                            f"inferred ({tried}); {advice}")
        return shape

    def param(self, tensor: gs.Tensor | None, out_axis: int | None, in_axis: int | None) -> list[ParamTensor]:
        if tensor is None or not tensor.name or not self.mg.is_const(tensor):
            return []
        source = self.mg.const_source(tensor)
        info = self.mg.info(tensor)
        value_shape = self.mg.shape(tensor)
        if source in self.counted or value_shape is None:
            return []
        if info is not None and info.elem_type not in (1, 10, 11, 16):  # float, f16, double, bf16
            return []
        self.counted.add(source)
        itemsize = info.itemsize if info is not None else 4
        rank = len(value_shape)
        out_axis = out_axis if out_axis is not None and out_axis < rank else None
        in_axis = in_axis if in_axis is not None and in_axis < rank else None
        return [ParamTensor(tensor.name, tuple(value_shape), itemsize, out_axis, in_axis)]

    def build(self, node: gs.Node) -> Layer | None:
        out = node.outputs[0]
        out_shape = self.shape(node, out)
        act_itemsize = self.mg.info(out).itemsize if self.mg.info(out) else 4
        x = node.inputs[0]
        if node.op == "Conv":
            w = self.shape(node, node.inputs[1])
            x_shape = self.shape(node, x)
            groups = int(node.attrs.get("group", 1))
            cin, cout = x_shape[1], w[0]
            depthwise = groups == cin and groups > 1
            params = self.param(node.inputs[1], 0, 1 if not depthwise else None)
            params += self.param(node.inputs[2] if len(node.inputs) > 2 else None, 0, None)
            spatial = _prod(out_shape[2:]) * out_shape[0]
            return Layer(node.name, node.op, x.name, out.name, cin, cout, spatial * _prod(w[2:]), spatial,
                         act_itemsize, params, in_div=groups, in_fixed=w[1] if depthwise else None)
        if node.op == "ConvTranspose":
            w = self.shape(node, node.inputs[1])
            x_shape = self.shape(node, x)
            groups = int(node.attrs.get("group", 1))
            params = self.param(node.inputs[1], 1, 0) + self.param(node.inputs[2] if len(node.inputs) > 2 else None, 0, None)
            return Layer(node.name, node.op, x.name, out.name, x_shape[1], out_shape[1],
                         _prod(x_shape[2:]) * x_shape[0] * _prod(w[2:]), _prod(out_shape[2:]) * out_shape[0],
                         act_itemsize, params, out_div=groups)
        if node.op == "Gemm":
            a = self.shape(node, x)
            b = self.shape(node, node.inputs[1])
            trans_a, trans_b = int(node.attrs.get("transA", 0)), int(node.attrs.get("transB", 0))
            m, k = (a[1], a[0]) if trans_a else (a[0], a[1])
            n = b[0] if trans_b else b[1]
            params = self.param(node.inputs[1], 0 if trans_b else 1, 1 if trans_b else 0)
            c = node.inputs[2] if len(node.inputs) > 2 else None
            c_shape = self.mg.shape(c) if c is not None and c.name else None
            params += self.param(c, len(c_shape) - 1 if c_shape and c_shape[-1] == n and n > 1 else None, None)
            return Layer(node.name, node.op, x.name, out.name, k, n, m, m, act_itemsize, params)
        if node.op == "MatMul":
            a = self.shape(node, x)
            b = self.shape(node, node.inputs[1])
            k, n = a[-1], b[-1]
            params = self.param(node.inputs[1], len(b) - 1, len(b) - 2) if len(b) == 2 else []
            rows = _prod(out_shape[:-1])
            return Layer(node.name, node.op, x.name, out.name, k, n, rows, rows, act_itemsize, params)
        # normalization: parameters per channel, no MACs counted
        x_shape = self.shape(node, x)
        channels = x_shape[1]
        params = [p for t in node.inputs[1:] for p in self.param(t, 0, None)]
        return Layer(node.name, node.op, x.name, out.name, channels, channels, 0,
                     _prod(out_shape) // max(channels, 1), act_itemsize, params)


def build_layers(mg: ModelGraph) -> list[Layer]:
    builder = _LayerBuilder(mg)
    layers = []
    for index, node in enumerate(mg.nodes):
        if node.op not in LAYER_OPS or (node.domain or "") not in ("", "ai.onnx"):
            continue
        layer = builder.build(node)
        if layer is not None:
            layer.node, layer.index = display_name(node, index), index
            layers.append(layer)
    return layers


def totals_of(costs: list[tuple[int, int, int]]) -> dict[str, int]:
    return {name: int(sum(c[i] for c in costs)) for i, name in enumerate(FIGURES)}


@dataclass
class Profile:
    model: str
    layers: list[Layer]
    costs: list[tuple[int, int, int]]
    totals: dict[str, int]
    shape_method: str = "onnx"  # how the shapes were resolved: "onnx", "symbolic" or "probe"

    def rows(self) -> list[dict]:
        rows = []
        for layer, (params, flops, memory) in zip(self.layers, self.costs):
            rows.append({"node": layer.node, "op": layer.op, "out_channels": layer.cout, "params": params,
                         "flops": flops, "memory_bytes": memory})
        return rows

    def share(self, row: dict, figure: str) -> float:
        total = self.totals[figure]
        return row[figure] / total if total else 0.0

    def to_json(self) -> dict:
        return {"model": self.model, "shape_method": self.shape_method, "totals": dict(self.totals),
                "layers": self.rows()}


def profile(source: ModelLike | ModelGraph, input_shapes: dict | None = None) -> Profile:
    """Per-layer params, FLOPs and memory of a model, with totals."""
    mg = load_graph(source, input_shapes)
    layers = build_layers(mg)
    costs = [layer.cost() for layer in layers]
    return Profile(mg.name, layers, costs, totals_of(costs), mg.shape_method)
