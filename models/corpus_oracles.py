"""Oracles run on the real-graph corpus, shared by tests/models/test_corpus.py and benchmarks/corpus.py.

* ``feeds``: seeded inputs of the manifest's shapes (integers 0..255 for an integer input).
* ``onnx_tool_rows``: onnx-tool's per-node params and MACs for Conv/ConvTranspose/Gemm/MatMul,
  minus the one MAC per output element that onnx-tool adds for a bias (we do not count it);
  weights in Constant nodes or reshaped from initializers given to it as initializers;
  ConvTranspose MACs from onnx-tool's shapes, as onnx-tool over-counts them by stride^2.
* ``shrink_and_verify``: ``onnxprune shrink`` through the CLI, then the zero-mask oracle on every
  output (a Sigmoid/Softmax output on its logits: verify.output_errors) and the full ONNX checker.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import onnx

from .corpus import shape_flags

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def feeds(entry: dict, seed: int = 0) -> dict:
    """Random feeds for every graph input: the manifest's shapes, else the input's own fixed shape
    (silero-vad's LSTM states h and c)."""
    rng = np.random.default_rng(seed)
    graph = onnx.load(entry["path"], load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    dtypes = {i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in inputs}
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in inputs}
    out = {}
    for name in dtypes:
        shape = entry["input_shape"].get(name, shapes[name])
        if np.issubdtype(dtypes[name], np.integer):
            out[name] = rng.integers(0, 256, shape).astype(dtypes[name])
        else:
            out[name] = rng.standard_normal(shape).astype(dtypes[name])
    return out


def shape_args(entry: dict) -> list[str]:
    return [arg for flag in shape_flags(entry) for arg in ("--input-shape", flag)]


def constants_as_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx-tool counts no params in Constant nodes: give it the same values as initializers."""
    graph = model.graph
    for node in list(graph.node):
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            graph.node.remove(node)
    return model


def constant_reshapes_folded(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx-tool counts no params in a weight that a Reshape of two initializers computes (GoogLeNet's
    classifier, onnx-caffe2): fold each such Reshape into an initializer, as `profile` reads it."""
    graph = model.graph
    values = {init.name: init for init in graph.initializer}
    for node in list(graph.node):
        if node.op_type == "Reshape" and all(name in values for name in node.input[:2]):
            data = onnx.numpy_helper.to_array(values[node.input[0]])
            target = [
                d if d else data.shape[i] for i, d in enumerate(onnx.numpy_helper.to_array(values[node.input[1]]))
            ]
            folded = onnx.numpy_helper.from_array(data.reshape(target), node.output[0])
            graph.initializer.append(folded)
            values[folded.name] = folded
            graph.node.remove(node)
    return model


def onnx_tool_rows(entry: dict) -> list[tuple[str, str, int, int, int, int]]:
    """(node, op, params, MACs without the bias MAC, weight elements, bias elements) per weighted node."""
    import onnx_tool

    model = onnx.load(entry["path"])
    model = onnx_tool.Model(constant_reshapes_folded(constants_as_initializers(model)), {"verbose": False})
    with contextlib.redirect_stdout(io.StringIO()):
        model.graph.shape_infer(feeds(entry))
        model.graph.profile()
    rows = []
    for node in model.graph.nodemap.values():
        if node.op_type not in WEIGHTED_OPS:
            continue
        has_bias = node.op_type != "MatMul" and len(node.input) > 2
        bias = int(np.prod(model.graph.tensormap[node.input[2]].shape)) if has_bias else 0
        macs = int(node.macs[0]) - (int(np.prod(node.outshape)) if has_bias else 0)
        if node.op_type == "ConvTranspose":
            # onnx-tool charges the whole kernel to every *output* pixel, stride^2 times too many
            # MACs; each *input* pixel scatters one kernel: N * H_in * W_in * prod(weight shape).
            x_shape = model.graph.tensormap[node.input[0]].shape
            w_shape = model.graph.tensormap[node.input[1]].shape
            macs = int(x_shape[0] * np.prod(x_shape[2:]) * np.prod(w_shape))
        rows.append((node.name, node.op_type, int(node.params), macs, int(node.params) - bias, bias))
    return rows


QUANTIZED_OPS = {"ConvInteger": "Conv", "QLinearConv": "Conv", "MatMulInteger": "Gemm", "QLinearMatMul": "Gemm"}


def profile_mismatches(entry: dict, by_name: dict) -> tuple[list[str], int]:
    """Weighted nodes whose `profile` params/MACs differ from onnx-tool's, and how many were compared.

    A quantized graph is compared node by node, in graph order, with its float twin (same
    architecture; onnx-tool cannot run integer graphs): MACs equal, params the weights' (with or
    without the bias, which a quantizer adds in a separate Add).
    """
    from onnxprune.analysis.complexity import profile

    ours = {row["node"]: row for row in profile(entry["path"], entry["input_shape"]).rows()}
    twin = entry.get("float_twin")
    if twin is None:
        theirs = onnx_tool_rows(entry)
        wrong = []
        for node, _, params, macs, _, _ in theirs:
            # an unnamed node is Op_index to onnx-tool and Op#index to us (CenterFace, torch 1.2)
            row = ours.get(node) or ours.get(re.sub(r"_(\d+)$", r"#\1", node), {})
            if (row.get("params"), row.get("flops")) != (params, macs):
                wrong.append(node)
        return wrong, len(theirs)
    theirs = onnx_tool_rows(by_name[twin])
    quantized = [n for n in onnx.load(entry["path"]).graph.node if n.op_type in QUANTIZED_OPS]
    if len(quantized) != len(theirs):
        return [f"{len(quantized)} quantized nodes vs {len(theirs)} in {twin}"], len(theirs)
    wrong = []
    for family in ("Conv", "Gemm"):
        nodes = [n.name for n in quantized if QUANTIZED_OPS[n.op_type] == family]
        rows = [row for row in theirs if (row[1] == "Conv") == (family == "Conv")]
        for node, (_, _, _, macs, weights, bias) in zip(nodes, rows, strict=True):
            row = ours.get(node, {})
            if row.get("flops") != macs or row.get("params") not in (weights, weights + bias):
                wrong.append(node)
    return wrong, len(theirs)


def run_cli(args: list[str]) -> tuple[int, str]:
    """Exit code and the last stderr line of ``onnxprune ARGS``, run in this process."""
    from onnxprune.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(args)
    lines = err.getvalue().strip().splitlines()
    return rc, (lines[-1] if lines else "")


def shrink_and_verify(entry: dict, deps, workdir: Path | None = None, target: float = 0.5, seed: int = 1) -> dict:
    """Shrink FA `target` --init keep; on success the pruned graph's outputs against the zero-mask model's.

    Returns rc, err, keep (group id -> kept channels), flops before/after, check (None or the
    checker's message) and max_errors (one per output).
    """
    from onnxprune.measure.verify import dequantized, output_errors, run, zero_mask

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        out, report_path = Path(tmp) / "pruned.onnx", Path(tmp) / "report.json"
        rc, err = run_cli(
            [
                "shrink",
                entry["path"],
                "--mode",
                "FA",
                "--target",
                str(target),
                "--init",
                "keep",
                "--seed",
                str(seed),
                "-o",
                str(out),
                "--report",
                str(report_path),
                *shape_args(entry),
            ]
        )
        result = {"rc": rc, "err": err}
        if rc != 0:
            return result
        report = json.loads(report_path.read_text())
        pruned = onnx.load(out)
    # a layer may hold channels of several groups (channel-level groups): rebuild keep sets per class
    keep = deps.keep_from_layers({row["node"]: row["kept"] for row in report["layers"]})
    result.update(keep=keep, flops_before=report["before"]["flops"], flops_after=report["after"]["flops"])
    try:
        onnx.checker.check_model(pruned, full_check=True)
        result["check"] = None
    except Exception as exc:  # noqa: BLE001  (reported, and asserted on by the test)
        result["check"] = " ".join(str(exc).split())[:200]
    inputs = feeds(entry, seed=seed)
    reference = zero_mask(deps, keep)
    if dequantized(pruned) is not None:  # QDQ: activation quantize/dequantize pairs taken out (verify.py)
        pruned, reference = dequantized(pruned), dequantized(reference)
    got, want = run(pruned, inputs), run(reference, inputs)
    result["shapes_equal"] = [a.shape for a in got] == [b.shape for b in want]
    result["max_errors"] = output_errors(pruned, reference, inputs) if result["shapes_equal"] else []
    return result


# onnxruntime's CPU Sigmoid (MLAS) is an approximation with an absolute error up to 1.66e-7 (measured on
# [-30, 30], onnxruntime 1.32; torch.sigmoid is exact to float32 rounding). On its random input PP-OCRv4 det's
# DB head saturates (pre-sigmoid values in [-55, -9.7], outputs <= 5.9e-5): every node up to the Sigmoid
# matches onnxruntime to 1.2e-6 relative, and there onnxruntime is 1.2e-7 (2.07e-3 of the output scale) from
# the float64 run of the converted graph, the converter in float32 1.4e-5. So outputs are compared with that
# absolute floor on top of 1e-4 relative (tests/trainers/test_ops.py pins the bound).
ORT_SIGMOID_ABS_ERROR = 2e-7


def converter_agrees(actual, reference, rtol: float = 1e-4) -> bool:
    """The converter's output equals onnxruntime's within `rtol` of the output scale, plus
    onnxruntime's own Sigmoid error (absolute) for saturated outputs near 0."""
    scale = max(float(np.abs(reference).max()), float(np.abs(actual).max()))
    return float(np.abs(np.asarray(actual, np.float64) - reference).max()) <= rtol * scale + ORT_SIGMOID_ABS_ERROR
