"""Static int8 quantization of a (pruned) float model with onnxruntime.quantization.

The core stays free of torch: calibration images arrive as a float32 numpy array (N, C, H, W),
already normalised the way the model expects; `onnxprune quantize` loads them with the trainer's
data loaders (the same as `train`'s `--data`), or from a .npy file.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from onnxprune.errors import UserError

if TYPE_CHECKING:  # pragma: no cover  (numpy and onnx load where used: `onnxprune --help` imports this module)
    import numpy as np
    import onnx

# Fewer images than this give min/max ranges set by a handful of outliers or none at all.
MIN_CALIBRATION_IMAGES = 16
DEFAULT_CALIBRATION_IMAGES = 256
FORMATS = ("qdq", "qoperator")

# An op from this set (or a non-float tensor feeding a weight) means the model is already integer.
QUANTIZED_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
    "QGemm",
    "QLinearAdd",
    "QLinearMul",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
    "QLinearConcat",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
    "QLinearSoftmax",
    "QAttention",
    "DynamicQuantizeLSTM",
    "DynamicQuantizeMatMul",
}
WEIGHTED_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}  # op -> weight input index
FLOAT = 1  # onnx.TensorProto.FLOAT


@dataclass
class QuantizeResult:
    model: onnx.ModelProto
    input_name: str
    images: int
    float_bytes: int
    int8_bytes: int
    agreement: float  # top-1 agreement of int8 with float on the calibration images
    max_abs_diff: float

    def summary(self) -> dict:
        return {
            "input": self.input_name,
            "calibration_images": self.images,
            "float_bytes": self.float_bytes,
            "int8_bytes": self.int8_bytes,
            "bytes_ratio": round(self.int8_bytes / max(self.float_bytes, 1), 4),
            "top1_agreement": round(self.agreement, 4),
            "max_abs_diff": self.max_abs_diff,
        }


def refuse_unquantizable(model: onnx.ModelProto, where: str) -> None:
    """One line (exit 2) for a model that static int8 quantization cannot start from."""
    import onnx

    quantized = next((n for n in model.graph.node if n.op_type in QUANTIZED_OPS), None)
    if quantized is not None:
        raise UserError(
            f"{where}: already quantized ({quantized.op_type} node {quantized.name or quantized.output[0]!r}); "
            f"quantize the float model instead"
        )
    initializers = {i.name: i for i in model.graph.initializer}
    for value in model.graph.input:
        if value.name not in initializers and value.type.tensor_type.elem_type != FLOAT:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
            raise UserError(f"{where}: input {value.name!r} is {dtype}, not float32; quantize needs a float32 model")
    weighted = 0
    for node in model.graph.node:
        index = WEIGHTED_OPS.get(node.op_type)
        if index is None or len(node.input) <= index or node.input[index] not in initializers:
            continue
        weighted += 1
        weight = initializers[node.input[index]]
        if weight.data_type != FLOAT:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(weight.data_type)
            raise UserError(
                f"{where}: weight {weight.name!r} of node {node.name!r} is {dtype}, not float32; "
                f"quantize needs a float32 model"
            )
    if not weighted:
        raise UserError(f"{where}: no Conv/Gemm/MatMul with constant float32 weights; nothing to quantize")


def image_input(model: onnx.ModelProto, where: str, input_shapes: dict | None = None) -> tuple[str, list[int]]:
    """The one graph input to calibrate, and its shape (symbolic dims from `input_shapes`, a
    symbolic batch as 1)."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if len(inputs) != 1:
        raise UserError(f"{where}: {len(inputs)} graph inputs; quantize calibrates single-input image models")
    value = inputs[0]
    given = (input_shapes or {}).get(value.name)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    if given is not None:
        if len(given) != len(dims):
            raise UserError(f"--input-shape {value.name}: {len(given)} dimensions, the model's input has {len(dims)}")
        dims = [g if d is None else d for d, g in zip(dims, given)]
    if dims and dims[0] is None:
        dims[0] = 1
    if len(dims) != 4 or any(d is None for d in dims):
        raise UserError(f"{where}: input {value.name!r} has the shape {dims}; give --input-shape {value.name}=1xCxHxW")
    return value.name, dims


def _fix_input(model: onnx.ModelProto, name: str, dims: list[int]) -> None:
    """Static input dims, so calibration batches and onnxruntime's shape inference agree."""
    for value in model.graph.input:
        if value.name == name:
            for dim, size in zip(value.type.tensor_type.shape.dim, dims):
                dim.Clear()
                dim.dim_value = size


def _reader(name: str, images: np.ndarray, batch: int):
    from onnxruntime.quantization import CalibrationDataReader

    class ImageReader(CalibrationDataReader):
        def __init__(self):
            self._next = 0

        def get_next(self):
            if self._next + batch > len(images):
                return None
            start, self._next = self._next, self._next + batch
            return {name: images[start : start + batch]}

        def rewind(self):
            self._next = 0

    return ImageReader()


def _outputs(model: onnx.ModelProto, name: str, images: np.ndarray, batch: int) -> np.ndarray:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors reach the user as our one line, not as onnxruntime's log
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return np.concatenate(
        [session.run(None, {name: images[i : i + batch]})[0] for i in range(0, len(images) - batch + 1, batch)]
    )


def quantize(
    model: onnx.ModelProto,
    images: np.ndarray,
    *,
    fmt: str = "qdq",
    per_channel: bool = False,
    input_shapes: dict | None = None,
    where: str = "model",
) -> QuantizeResult:
    """Static quantization: int8 weights, 8-bit activations (int8 for QDQ, uint8 for QOperator),
    MinMax ranges calibrated on `images`."""
    import numpy as np
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    refuse_unquantizable(model, where)
    name, dims = image_input(model, where, input_shapes)
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 4 or list(images.shape[1:]) != dims[1:]:
        raise UserError(
            f"calibration images of shape {list(images.shape[1:])} do not fit input {name!r} of shape {dims}"
        )
    batch = dims[0]
    if len(images) < max(MIN_CALIBRATION_IMAGES, batch):
        raise UserError(f"{len(images)} calibration images; at least {MIN_CALIBRATION_IMAGES} are needed")
    float_model = onnx.ModelProto()
    float_model.CopyFrom(model)
    _fix_input(float_model, name, dims)
    with tempfile.TemporaryDirectory(prefix="onnxprune-quantize-") as tmp:
        source, prepared, target = (Path(tmp) / n for n in ("float.onnx", "prepared.onnx", "int8.onnx"))
        onnx.save_model(float_model, str(source))
        try:  # shape inference + fusions (Conv+BN of kept-BN exports) give the quantizer more to work on
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation; the plain model still quantizes
            prepared = source
        try:
            quantize_static(
                str(prepared),
                str(target),
                _reader(name, images, batch),
                quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                per_channel=per_channel,
                weight_type=QuantType.QInt8,
                # onnxruntime's x86 kernels: QDQ runs S8S8, QOperator is fast (and asks for) U8S8
                activation_type=QuantType.QInt8 if fmt == "qdq" else QuantType.QUInt8,
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own message, in one line
            raise UserError(f"{where}: onnxruntime.quantization failed: {type(exc).__name__}: {exc}") from None
        quantized = onnx.load(str(target))
    _keep_metadata(model, quantized, fmt, per_channel, len(images))
    expected, actual = _outputs(float_model, name, images, batch), _outputs(quantized, name, images, batch)
    agreement = float(
        np.mean(expected.reshape(len(expected), -1).argmax(1) == actual.reshape(len(actual), -1).argmax(1))
    )
    return QuantizeResult(
        quantized,
        name,
        len(images),
        model.ByteSize(),
        quantized.ByteSize(),
        agreement,
        float(np.abs(expected - actual).max()),
    )


def _keep_metadata(source: onnx.ModelProto, target: onnx.ModelProto, fmt: str, per_channel: bool, images: int) -> None:
    """The trainer's normalisation and classes travel with the model; the recipe is recorded."""
    present = {p.key for p in target.metadata_props}
    for prop in source.metadata_props:
        if prop.key not in present:
            target.metadata_props.add(key=prop.key, value=prop.value)
    target.metadata_props.add(
        key="onnxprune.quantized",
        value=f"int8 static {fmt}{' per-channel' if per_channel else ''}, {images} calibration images",
    )
