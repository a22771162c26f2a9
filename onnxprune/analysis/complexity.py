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

import math
from dataclasses import dataclass, field

import onnx_graphsurgeon as gs

from onnxprune.analysis.layer import Layer, ParamTensor
from onnxprune.analysis.recurrent import recurrent_layer
from onnxprune.errors import UserError
from onnxprune.read.graph import ModelGraph, display_name, load_graph
from onnxprune.read.io import ModelLike
from onnxprune.read.shapes import input_shape_hints

# op -> (weight input, bias input); the quantized forms cost what their float op costs
CONV_INPUTS = {"Conv": (1, 2), "QLinearConv": (3, 8), "ConvInteger": (1, None)}
GEMM_INPUTS = {"Gemm": (1, 2), "QGemm": (3, 6)}  # op -> (B input, C input); QGemm: onnxruntime's
MATMUL_INPUTS = {"MatMul": 1, "QLinearMatMul": 3, "MatMulInteger": 1}  # op -> B input
# the weight's scale and zero point (per output channel when not scalars)
WEIGHT_QUANT_INPUTS = {
    "QLinearConv": (4, 5),
    "QGemm": (4, 5),
    "ConvInteger": (3,),
    "QLinearMatMul": (4, 5),
    "MatMulInteger": (3,),
}
QUANTIZED_OPS = ("QGemm", "QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "DynamicQuantizeLSTM")
RECURRENT_OPS = ("LSTM", "GRU", "RNN", "DynamicQuantizeLSTM")
LAYER_OPS = (
    *CONV_INPUTS,
    "ConvTranspose",
    *GEMM_INPUTS,
    *MATMUL_INPUTS,
    "BatchNormalization",
    "InstanceNormalization",
    *RECURRENT_OPS,
)
LAYER_DOMAINS = {op: ("", "ai.onnx") for op in LAYER_OPS} | {
    op: ("com.microsoft",) for op in ("QGemm", "DynamicQuantizeLSTM")
}
FLOAT_TYPES = (1, 10, 11, 16)  # float, float16, double, bfloat16
QUANTIZED_TYPES = FLOAT_TYPES + (2, 3, 6, 21, 22)  # + uint8, int8, int32 (bias), uint4, int4
FIGURES = ("params", "flops", "memory_bytes")


def _prod(values) -> int:
    return math.prod(int(v) for v in values)


class _LayerBuilder:
    def __init__(self, mg: ModelGraph):
        self.mg = mg
        self.counted: set = set()

    def shape(self, node: gs.Node, tensor: gs.Tensor) -> tuple:
        shape = self.mg.shape(tensor)
        if shape is None:
            tried = "; ".join(getattr(self.mg.infos, "failures", [])) or "ONNX inference left it unknown"
            hint = input_shape_hints(self.mg.proto, only_symbolic=True)
            advice = f"give the input size with {hint}" if hint else "no tool can evaluate the ops it depends on"
            raise UserError(
                f"node {self.mg.display_name(node)!r} ({node.op}): the shape of {tensor.name!r} cannot be "
                f"inferred ({tried}); {advice}"
            )
        return shape

    def weight_const(self, tensor: gs.Tensor | None) -> tuple[gs.Tensor, gs.Node | None] | None:
        """The constant holding a weight: the tensor itself, or the stored (int8) input of the
        DequantizeLinear that produces it (QDQ graphs), with that DequantizeLinear."""
        if tensor is None or not tensor.name:
            return None
        if self.mg.is_const(tensor):
            return tensor, None
        producer = tensor.inputs[0] if tensor.inputs else None
        if producer is not None and producer.op == "DequantizeLinear" and self.mg.is_const(producer.inputs[0]):
            return producer.inputs[0], producer
        return None

    def param(
        self, tensor: gs.Tensor | None, out_axis: int | None, in_axis: int | None, quantized: bool = False
    ) -> list[ParamTensor]:
        found = self.weight_const(tensor)
        if found is None:
            return []
        tensor, dequantize = found
        scales = self.quant_params(dequantize.inputs[1:]) if dequantize is not None else []
        return self._param(tensor, out_axis, in_axis, quantized or dequantize is not None) + scales

    def quant_params(self, tensors) -> list[ParamTensor]:
        """A quantized weight's per-channel scales and zero points (scalars are not counted)."""
        return [
            p
            for t in tensors
            if t is not None and t.name and _numel(self.mg.shape(t)) > 1
            for p in self._param(t, 0, None, True)
        ]

    def _param(
        self, tensor: gs.Tensor, out_axis: int | None, in_axis: int | None, quantized: bool
    ) -> list[ParamTensor]:
        if not self.mg.is_const(tensor):
            return []
        source = self.mg.const_source(tensor)
        info = self.mg.info(tensor)
        value_shape = self.mg.shape(tensor)
        if source in self.counted or value_shape is None:
            return []
        allowed = QUANTIZED_TYPES if quantized else FLOAT_TYPES
        if info is not None and info.elem_type not in allowed:
            return []
        self.counted.add(source)
        itemsize = info.itemsize if info is not None else 4
        rank = len(value_shape)
        out_axis = out_axis if out_axis is not None and out_axis < rank else None
        in_axis = in_axis if in_axis is not None and in_axis < rank else None
        return [ParamTensor(tensor.name, tuple(value_shape), itemsize, out_axis, in_axis)]

    def build(self, node: gs.Node) -> Layer | None:
        out, x = node.outputs[0], node.inputs[0]
        info = self.mg.info(out) or self.mg.info(x)
        act_itemsize = info.itemsize if info else 4
        if node.op in RECURRENT_OPS:  # its cost needs X and the weights, not Y (often read by nothing)
            return recurrent_layer(self, node, out, act_itemsize)
        out_shape = self.shape(node, out)
        quantized = node.op in QUANTIZED_OPS
        if node.op in CONV_INPUTS:
            w_at, b_at = CONV_INPUTS[node.op]
            w = self.shape(node, node.inputs[w_at])
            x_shape = self.shape(node, x)
            groups = int(node.attrs.get("group", 1))
            cin, cout = x_shape[1], w[0]
            depthwise = groups == cin and groups > 1
            params = self.param(node.inputs[w_at], 0, 1 if not depthwise else None, quantized)
            params += self.param(_input(node, b_at), 0, None, quantized)
            params += self.quant_params(_input(node, i) for i in WEIGHT_QUANT_INPUTS.get(node.op, ()))
            spatial = _prod(out_shape[2:]) * out_shape[0]
            return Layer(
                node.name,
                node.op,
                x.name,
                out.name,
                cin,
                cout,
                spatial * _prod(w[2:]),
                spatial,
                act_itemsize,
                params,
                in_div=groups,
                in_fixed=w[1] if depthwise else None,
            )
        if node.op == "ConvTranspose":
            w = self.shape(node, node.inputs[1])
            x_shape = self.shape(node, x)
            groups = int(node.attrs.get("group", 1))
            params = self.param(node.inputs[1], 1, 0) + self.param(_input(node, 2), 0, None)
            return Layer(
                node.name,
                node.op,
                x.name,
                out.name,
                x_shape[1],
                out_shape[1],
                _prod(x_shape[2:]) * x_shape[0] * _prod(w[2:]),
                _prod(out_shape[2:]) * out_shape[0],
                act_itemsize,
                params,
                out_div=groups,
            )
        if node.op in GEMM_INPUTS:
            b_at, c_at = GEMM_INPUTS[node.op]
            a = self.shape(node, x)
            b = self.shape(node, node.inputs[b_at])
            trans_a, trans_b = int(node.attrs.get("transA", 0)), int(node.attrs.get("transB", 0))
            m, k = (a[1], a[0]) if trans_a else (a[0], a[1])
            n = b[0] if trans_b else b[1]
            params = self.param(node.inputs[b_at], 0 if trans_b else 1, 1 if trans_b else 0, quantized)
            c = _input(node, c_at)
            c_shape = self.mg.shape(c) if c is not None and c.name else None
            params += self.param(
                c, len(c_shape) - 1 if c_shape and c_shape[-1] == n and n > 1 else None, None, quantized
            )
            params += self.quant_params(_input(node, i) for i in WEIGHT_QUANT_INPUTS.get(node.op, ()))
            return Layer(node.name, node.op, x.name, out.name, k, n, m, m, act_itemsize, params)
        if node.op in MATMUL_INPUTS:
            b_at = MATMUL_INPUTS[node.op]
            a = self.shape(node, x)
            b = self.shape(node, node.inputs[b_at])
            k, n = a[-1], b[-1]
            params = self.param(node.inputs[b_at], len(b) - 1, len(b) - 2, quantized) if len(b) >= 2 else []
            params += self.quant_params(_input(node, i) for i in WEIGHT_QUANT_INPUTS.get(node.op, ()))
            rows = _prod(out_shape[:-1])
            return Layer(node.name, node.op, x.name, out.name, k, n, rows, rows, act_itemsize, params)
        # normalization: parameters per channel, no MACs counted
        x_shape = self.shape(node, x)
        channels = x_shape[1]
        params = [p for t in node.inputs[1:] for p in self.param(t, 0, None)]
        return Layer(
            node.name,
            node.op,
            x.name,
            out.name,
            channels,
            channels,
            0,
            _prod(out_shape) // max(channels, 1),
            act_itemsize,
            params,
        )


def _numel(shape: tuple | None) -> int:
    return _prod(shape) if shape is not None else 0


def _input(node: gs.Node, position: int | None) -> gs.Tensor | None:
    if position is None or len(node.inputs) <= position or not node.inputs[position].name:
        return None
    return node.inputs[position]


def build_layers(mg: ModelGraph) -> list[Layer]:
    return _build(mg)[0]


def _build(mg: ModelGraph) -> tuple[list[Layer], set]:
    """The layers, and the sources of the constants they count."""
    builder = _LayerBuilder(mg)
    layers = []
    for index, node in enumerate(mg.nodes):
        if node.op not in LAYER_OPS or (node.domain or "") not in LAYER_DOMAINS[node.op]:
            continue
        layer = builder.build(node)
        if layer is not None:
            layer.node, layer.index = display_name(node, index), index
            layers.append(layer)
    return layers, builder.counted


def totals_of(costs: list[tuple[int, int, int]]) -> dict[str, int]:
    return {name: int(sum(c[i] for c in costs)) for i, name in enumerate(FIGURES)}


@dataclass
class Profile:
    model: str
    layers: list[Layer]
    costs: list[tuple[int, int, int]]
    totals: dict[str, int]
    shape_method: str = "onnx"  # how the shapes were resolved: "onnx", "symbolic" or "probe"
    uncounted: list[dict] = field(default_factory=list)  # nodes holding weights no layer counts
    # which shape fallback ran and why, and the unknown tensors nothing reads (no fallback for them)
    shape_fallbacks: dict = field(default_factory=lambda: {"fallbacks": [], "unknown_unread": []})

    def rows(self) -> list[dict]:
        rows = []
        for layer, (params, flops, memory) in zip(self.layers, self.costs):
            rows.append(
                {
                    "node": layer.node,
                    "op": layer.op,
                    "out_channels": layer.cout,
                    "params": params,
                    "flops": flops,
                    "memory_bytes": memory,
                }
            )
        return rows

    def share(self, row: dict, figure: str) -> float:
        total = self.totals[figure]
        return row[figure] / total if total else 0.0

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "shape_method": self.shape_method,
            "shape_fallbacks": self.shape_fallbacks,
            "totals": dict(self.totals),
            "layers": self.rows(),
            "uncounted": [dict(u) for u in self.uncounted],
        }

    def uncounted_summary(self) -> str:
        """One line naming the nodes whose weights the totals leave out ("" when none)."""
        if not self.uncounted:
            return ""
        shown = ", ".join(
            f"{u['node']} ({u['op']}, {u['elements']} weights{' ' + u['reason'] if u.get('reason') else ''})"
            for u in self.uncounted[:5]
        )
        more = f" and {len(self.uncounted) - 5} more" if len(self.uncounted) > 5 else ""
        return (
            f"{len(self.uncounted)} node(s) hold weights that profile cannot count: {shown}{more}; "
            f"the totals leave them out"
        )


def profile(source: ModelLike | ModelGraph, input_shapes: dict | None = None) -> Profile:
    """Per-layer params, FLOPs and memory of a model, with totals."""
    from onnxprune.analysis.uncounted import uncounted_weights

    mg = load_graph(source, input_shapes)
    layers, counted = _build(mg)
    costs = [layer.cost() for layer in layers]
    return Profile(
        mg.name,
        layers,
        costs,
        totals_of(costs),
        mg.shape_method,
        uncounted_weights(mg, layers, counted),
        mg.shape_fallbacks,
    )
