"""Run a (pruned) ONNX model in another runtime and compare it with onnxruntime.

Runtimes are optional (extras: `interop` for OpenVINO, `ncnn` for ncnn through pnnx, see
interop_ncnn); a missing one, or one that rejects the graph, is a one-line UserError naming the
runtime and, when its message lets us, the node.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx

from onnxprune.errors import UserError
from onnxprune.measure.runtime_errors import rejection
from onnxprune.read.io import ModelLike, load_model

RUNTIMES = ("openvino", "ncnn")  # ncnn: converted by pnnx, see interop_ncnn
TOLERANCE = 1e-4  # float32 runtimes differ by reassociation only; relative to the output's magnitude


def runtime_available(runtime: str) -> str | None:
    """None when `runtime` imports, else why not (for skips and error lines)."""
    if runtime not in RUNTIMES:
        return f"unknown runtime {runtime!r} (known: {', '.join(RUNTIMES)})"
    if runtime == "ncnn":
        from onnxprune.measure.interop_ncnn import ncnn_available

        return ncnn_available()
    try:
        __import__(runtime)
    except ImportError as exc:
        return f"{runtime} is not installed ({exc}); install onnxprune[interop]"
    return None


def _openvino(model: onnx.ModelProto) -> Callable[[dict], list[np.ndarray]]:
    import openvino as ov

    core = ov.Core()
    try:
        network = core.read_model(model.SerializeToString(), b"")
    except Exception as exc:  # noqa: BLE001 - any OpenVINO failure is the graph's rejection
        raise rejection("openvino", model, exc, "reading it") from None
    try:
        # f32: some CPUs default to bf16, which would hide nothing but differ by far more than 1e-4
        compiled = core.compile_model(network, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    except Exception as exc:  # noqa: BLE001
        raise rejection("openvino", model, exc, "compiling it") from None

    def infer(feeds: dict) -> list[np.ndarray]:
        try:
            result = compiled(feeds)
        except Exception as exc:  # noqa: BLE001
            raise rejection("openvino", model, exc, "running it") from None
        return [np.asarray(result[output]) for output in compiled.outputs]

    return infer


def run_in(runtime: str, source: ModelLike, feeds: dict) -> list[np.ndarray]:
    """The model's outputs for `feeds` in `runtime`, in graph output order."""
    problem = runtime_available(runtime)
    if problem:
        raise UserError(problem)
    model = load_model(source, check=False)
    if runtime == "ncnn":
        from onnxprune.measure.interop_ncnn import ncnn_session

        return ncnn_session(model, feeds)(feeds)
    return _openvino(model)(feeds)


def random_feeds(model: onnx.ModelProto, seed: int = 0) -> dict:
    """Seeded normal inputs from the graph's declared inputs (symbolic dims as 1)."""
    rng = np.random.default_rng(seed)
    initializers = {i.name for i in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.dim_value > 0 else 1 for d in tensor.shape.dim]
        feeds[value.name] = rng.standard_normal(shape).astype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
    return feeds


def compare_with_onnxruntime(runtime: str, source: ModelLike, seed: int = 0) -> float:
    """Largest |runtime - onnxruntime| over the outputs on random inputs, relative to max(1, |onnxruntime|).
    The other runtime runs first, so its rejection is the one reported."""
    import onnxruntime as ort

    problem = runtime_available(runtime)
    if problem:
        raise UserError(problem)
    model = load_model(source, check=False)
    feeds = random_feeds(model, seed)
    actual = run_in(runtime, model, feeds)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors reach the user as our one line, not as onnxruntime's log
    options.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        expected = session.run(None, feeds)
    except Exception as exc:  # noqa: BLE001
        raise rejection("onnxruntime", model, exc, "running it") from None
    worst = 0.0
    for want, got in zip(expected, actual):
        if want.shape != got.shape:
            raise UserError(f"{runtime} returns an output of shape {list(got.shape)}, onnxruntime {list(want.shape)}")
        worst = max(worst, float(np.abs(want - got).max()) / max(1.0, float(np.abs(want).max())))
    return worst
