"""Nodes that hold weights profile does not count: a budget check must not pass them silently.

A node "holds weights" when a constant input (directly, or as the stored input of a
DequantizeLinear) of at least WEIGHT_ELEMENTS float or 8/4-bit elements feeds it and
- it is a counted layer but that constant sits where the layer's cost does not look (MatMul(W, x)),
- or it is an op profile does not understand: any op of a custom domain, or a standard op that
  is not in UNDERSTOOD (Einsum, Attention, DeformConv, ...),
- or it is a Gather reading rows of a float matrix (an embedding table),
- or it holds subgraphs (If, Loop, Scan): every weight-like constant read inside them, at any depth
  (their own initializers and Constant nodes, outer initializers read by name), and every one fed
  to it as an explicit input (Loop/Scan state), since profile does not follow control flow.
Each constant counts once, at its first holder in graph order.
Elementwise ops with constants (bias adds, scales, YOLO anchor grids) and shape arithmetic are
understood: their constants are not layer weights in the pruning literature's sense.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxprune.read.graph import ModelGraph, constant_node_value

WEIGHT_ELEMENTS = 16
WEIGHT_TYPES = (1, 10, 11, 16, 2, 3, 21, 22)  # float, f16, double, bf16, uint8, int8, uint4, int4
UNDERSTOOD = frozenset(
    """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BitShift BitwiseAnd BitwiseNot
BitwiseOr BitwiseXor Cast CastLike Ceil Celu CenterCropPad Clip Compress Concat ConcatFromSequence Constant
ConstantOfShape Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout DynamicQuantizeLinear Elu Equal
Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu GlobalAveragePool GlobalLpPool
GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization HardSigmoid HardSwish Hardmax Identity
If InstanceNormalization IsInf IsNaN LRN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop
LpNormalization LpPool Max MaxPool MaxRoiPool MaxUnpool Mean MeanVarianceNormalization Min Mish Mod Mul Neg
NonMaxSuppression NonZero Not OneHot Or PRelu Pad Pow QuantizeLinear Range Reciprocal ReduceL1 ReduceL2
ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu
Reshape Resize ReverseSequence RoiAlign Round Scatter ScatterElements ScatterND Selu SequenceAt
SequenceConstruct SequenceEmpty SequenceInsert SequenceLength Shape Shrink Sigmoid Sign Sin Sinh Size Slice
Softmax Softplus Softsign SpaceToDepth Split SplitToSequence Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu
Tile TopK Transpose Trilu Unique Unsqueeze Upsample Where Xor
""".split()
)
# inputs of counted layers that are quantization parameters or states, not weights
NOT_WEIGHTS = {
    "QLinearConv": {1, 2, 4, 5, 6, 7},
    "QGemm": {1, 2, 4, 5, 7, 8},
    "ConvInteger": {2, 3},
    "QLinearMatMul": {1, 2, 4, 5, 6, 7},
    "MatMulInteger": {2, 3},
    "LSTM": {4, 5, 6},
    "GRU": {4, 5},
    "RNN": {4, 5},
    "DynamicQuantizeLSTM": {4, 5, 6, 8, 9, 10, 11},
}


def _weight_source(mg: ModelGraph, tensor: gs.Tensor, counted: set) -> tuple[tuple, int] | None:
    """(where its bytes live, elements) of a weight-like constant behind main-graph `tensor` that no
    layer counted; None when there is none."""
    if not tensor.name:
        return None
    if isinstance(tensor, gs.Constant):  # the common case first: an initializer, usually counted
        if ("initializer", tensor.name) in counted:
            return None
    elif not mg.is_const(tensor):
        tensor = _decoded_from(mg, tensor)
        if tensor is None:
            return None
    source = mg.const_source(tensor)
    if source in counted:
        return None
    info, shape = mg.info(tensor), mg.shape(tensor)
    if shape is None or (info is not None and info.elem_type not in WEIGHT_TYPES):
        return None
    elements = math.prod(int(dim) for dim in shape)
    return (source, elements) if elements >= WEIGHT_ELEMENTS else None


# ops that decode a stored weight without mixing in any data: DequantizeLinear, and the hand-made
# forms of it (PP-OCRv6's "compressed" models store int8 and compute Cast -> Mul(scale))
DECODING_OPS = frozenset(
    {"DequantizeLinear", "Cast", "Mul", "Div", "Add", "Sub", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "Flatten"}
)
DECODING_DEPTH = 8


def _decoded_from(mg: ModelGraph, tensor: gs.Tensor) -> gs.Tensor | None:
    """The stored constant a main-graph tensor is computed from by decoding ops whose other inputs are
    constants too (scales, zero points, shapes): the largest of them, where they all are; None when
    the tensor depends on anything computed from the model's inputs."""
    for _ in range(DECODING_DEPTH):
        producer = tensor.inputs[0] if tensor.inputs else None
        if producer is None or producer.op not in DECODING_OPS:
            return None
        operands = [t for t in producer.inputs if t.name]
        variable = [t for t in operands if not mg.is_const(t)]
        if len(variable) > 1:
            return None
        if not variable:
            return max(operands, key=lambda t: math.prod(int(d) for d in (mg.shape(t) or [0])), default=None)
        tensor = variable[0]
    return None


def _uncounted_weight(mg: ModelGraph, tensor: gs.Tensor, counted: set, seen: set) -> int:
    """Elements of a weight-like constant behind `tensor` that no layer counted and no earlier
    holder claimed, else 0."""
    found = _weight_source(mg, tensor, counted)
    if found is None or found[0] in seen:
        return 0
    seen.add(found[0])
    return found[1]


def _subgraphs(node: gs.Node) -> list[gs.Graph]:
    graphs = []
    for value in node.attrs.values():
        if isinstance(value, gs.Graph):
            graphs.append(value)
        elif isinstance(value, (list, tuple)):
            graphs += [v for v in value if isinstance(v, gs.Graph)]
    return graphs


def _constant_type(constant: gs.Constant) -> int | None:
    """The ONNX element type of an initializer (or Constant value), read without loading it."""
    proto = getattr(getattr(constant, "_values", None), "tensor", None)
    if isinstance(proto, onnx.TensorProto):
        return proto.data_type
    try:
        return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(constant.dtype))
    except (TypeError, ValueError, KeyError):
        return None


def _inner_weight(mg: ModelGraph, tensor: gs.Tensor, counted: set, seen: set, main_nodes: set) -> int:
    """Elements of a weight-like constant read inside a subgraph, each constant once, else 0."""
    producer = tensor.inputs[0] if tensor.inputs else None
    if not tensor.name:
        return 0
    if producer is not None and id(producer) in main_nodes:  # an outer-scope tensor: the main graph knows it
        return _uncounted_weight(mg, tensor, counted, seen)
    if isinstance(tensor, gs.Constant):  # the subgraph's own initializer, or an outer one read by name
        source, shape, elem_type = ("initializer", tensor.name), tensor.shape, _constant_type(tensor)
    elif producer is not None and producer.op == "Constant":
        source = ("constant_node", tensor.name)
        value = producer.attrs.get("value")
        if isinstance(value, gs.Constant):
            shape, elem_type = value.shape, _constant_type(value)
        else:  # value_floats & co.: small lists, read as they are
            array = constant_node_value(producer)
            if array is None:
                return 0
            shape, elem_type = array.shape, onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
    else:  # computed inside, or a subgraph input
        return 0
    if source in counted or source in seen or shape is None or elem_type not in WEIGHT_TYPES:
        return 0
    elements = math.prod(int(dim) for dim in shape)
    if elements < WEIGHT_ELEMENTS:
        return 0
    seen.add(source)
    return elements


def _subgraph_weights(mg: ModelGraph, node: gs.Node, counted: set, seen: set, main_nodes: set) -> int:
    """Elements of the weight-like constants read inside `node`'s subgraphs, at any depth."""
    total = 0
    for graph in _subgraphs(node):
        for inner in graph.nodes:
            total += sum(_inner_weight(mg, t, counted, seen, main_nodes) for t in inner.inputs)
            total += _subgraph_weights(mg, inner, counted, seen, main_nodes)
    return total


def _control_flow_reason(op: str, inside: int, fed: int) -> str:
    parts = [f"inside its {op} {'branches' if op == 'If' else 'body'}"] if inside else []
    parts += [f"fed into the {op} as inputs"] if fed else []
    return f"{' and '.join(parts)}: onnxprune does not follow control flow"


def uncounted_weights(mg: ModelGraph, layers: list, counted: set) -> list[dict]:
    """Nodes holding weights that `layers` (whose constants are `counted`) leave out, in graph order."""
    layer_at = {layer.index for layer in layers}
    main_nodes = {id(node) for node in mg.nodes}
    seen: set = set()
    found = []
    for index, node in enumerate(mg.nodes):
        standard = (node.domain or "") in ("", "ai.onnx")
        op = node.op if standard else f"{node.domain}.{node.op}"
        if _subgraphs(node):  # If/Loop/Scan: what the body reads and what the node is fed
            fed = sum(_uncounted_weight(mg, t, counted, seen) for t in node.inputs)
            inside = _subgraph_weights(mg, node, counted, seen, main_nodes)
            if fed or inside:
                reason = _control_flow_reason(op, inside, fed)
                found.append({"node": mg.display_name(node), "op": op, "elements": fed + inside, "reason": reason})
            continue
        if index in layer_at:
            skip = NOT_WEIGHTS.get(node.op, set())
            candidates = [t for i, t in enumerate(node.inputs) if i not in skip]
        elif node.op == "Gather" and standard:
            data = node.inputs[0]
            shape = mg.shape(data) if data.name else None
            candidates = [data] if shape is not None and len(shape) >= 2 and not mg.is_const(node.inputs[1]) else []
        elif standard and node.op in UNDERSTOOD:
            continue
        else:
            candidates = list(node.inputs)
        amounts = [(t, _uncounted_weight(mg, t, counted, seen)) for t in candidates]
        elements = sum(amount for _, amount in amounts)
        if elements:
            entry = {"node": mg.display_name(node), "op": op, "elements": elements}
            # said only where an uncounted weight itself came through decoding ops (not for a layer's
            # computed activation input beside a constant weight its cost does not look at: MatMul(W, x))
            if index in layer_at and any(amount and not mg.is_const(t) for t, amount in amounts):
                entry["reason"] = "decoded from stored constants by ops profile does not fold (Cast, Mul, ...)"
            found.append(entry)
    return found
