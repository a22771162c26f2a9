"""Nodes that hold weights profile does not count: a budget check must not pass them silently.

A node "holds weights" when a constant input (directly, or as the stored input of a
DequantizeLinear) of at least WEIGHT_ELEMENTS float or 8/4-bit elements feeds it and
- it is a counted layer but that constant sits where the layer's cost does not look (MatMul(W, x)),
- or it is an op profile does not understand: any op of a custom domain, or a standard op that
  is not in UNDERSTOOD (Einsum, Attention, DeformConv, ...),
- or it is a Gather reading rows of a float matrix (an embedding table).
Elementwise ops with constants (bias adds, scales, YOLO anchor grids) and shape arithmetic are
understood: their constants are not layer weights in the pruning literature's sense.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnxprune.read.graph import ModelGraph

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


def _uncounted_weight(mg: ModelGraph, tensor: gs.Tensor, counted: set) -> int:
    """Elements of a weight-like constant behind `tensor` that no layer counted, else 0."""
    if not tensor.name:
        return 0
    if isinstance(tensor, gs.Constant):  # the common case first: an initializer, usually counted
        if ("initializer", tensor.name) in counted:
            return 0
    elif not mg.is_const(tensor):
        producer = tensor.inputs[0] if tensor.inputs else None
        if producer is None or producer.op != "DequantizeLinear" or not mg.is_const(producer.inputs[0]):
            return 0
        tensor = producer.inputs[0]
    if mg.const_source(tensor) in counted:
        return 0
    info, shape = mg.info(tensor), mg.shape(tensor)
    if shape is None or (info is not None and info.elem_type not in WEIGHT_TYPES):
        return 0
    elements = 1
    for dim in shape:
        elements *= int(dim)
    return elements if elements >= WEIGHT_ELEMENTS else 0


def uncounted_weights(mg: ModelGraph, layers: list, counted: set) -> list[dict]:
    """Nodes holding weights that `layers` (whose constants are `counted`) leave out, in graph order."""
    layer_at = {layer.index for layer in layers}
    found = []
    for index, node in enumerate(mg.nodes):
        standard = (node.domain or "") in ("", "ai.onnx")
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
        elements = sum(_uncounted_weight(mg, t, counted) for t in candidates)
        if elements:
            found.append(
                {
                    "node": mg.display_name(node),
                    "op": node.op if standard else f"{node.domain}.{node.op}",
                    "elements": elements,
                }
            )
    return found
