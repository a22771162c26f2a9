"""The real-graph corpus (models/corpus.py, `make corpus`): CNNs from paddle2onnx, torch 1.9 and
2.x, tf2onnx, keras2onnx and a dynamically quantized graph, none written by us.

On every model: profile/groups/check/bench exit 0 with the manifest's --input-shape; profile
agrees with onnx-tool per weighted node; the trainer's converter matches onnxruntime; shrink FA 0.5
--init keep either prunes with the zero-mask oracle holding on every output, or refuses only the
couplings listed in EXPECTED_REFUSALS. Skips when the corpus is not built.

Cases that fail on the code this file was written against are `xfail(strict=True)` with the
issue-11 item (and the helper) that fixes them: once fixed, the xpass fails, so the mark goes.
"""
from __future__ import annotations

import re

import numpy as np
import onnx
import pytest

from models.corpus import default_dir, load_manifest, shape_flags
from onnxprune.cli import main
from onnxprune.groups import channel_groups
from onnxprune.verify import max_relative_error, run, zero_mask

CORPUS = load_manifest()
if CORPUS is None:
    pytest.skip(f"real-graph corpus absent from {default_dir()}: run `make corpus` (or set CORPUS_DIR)",
                allow_module_level=True)
BY_NAME = {entry["name"]: entry for entry in CORPUS}
FLOAT_MODELS = [entry["name"] for entry in CORPUS if not entry["quantized"]]

SHAPES = "reading: shapes ONNX inference cannot resolve (issue 11 item 2)"
CONSTANT_WEIGHTS = "reading: weights in Constant nodes (issue 11 item 3)"
QUANTIZED = "reading: quantized ops counted (issue 11 item 4)"
SHRINK_INPUT_SHAPE = "shrink ignores --input-shape (issue 11 item 1)"
RESIZE = "trainers: converter lacks Resize (issue 11 item 5)"
LSTM = "trainers: converter lacks LSTM (issue 11 item 5)"
BATCH_FOLD = ("trainers: converter folds a batch-dependent shape from its batch-2 probe "
              "(batch 1 in, batch 2 out; issue 11 item 5)")
QUANT_CONVERT = "trainers: converter lacks quantized ops, or train refuses them (issue 11 items 4-5)"

# (test, model) -> why it fails today; each is an xfail(strict=True).
KNOWN_FAILURES = {
    **{("verb", f"{model}-{verb}"): SHAPES for model in ("ppocrv4_rec", "ppocr_cls", "ddddocr_rec")
       for verb in ("profile", "check")},
    ("onnx_tool", "ppocrv4_det"): CONSTANT_WEIGHTS,
    ("onnx_tool", "ppocrv4_rec"): SHAPES + "; " + CONSTANT_WEIGHTS,
    ("onnx_tool", "ppocr_cls"): SHAPES + "; " + CONSTANT_WEIGHTS,
    ("onnx_tool", "ddddocr_rec"): SHAPES,
    ("onnx_tool", "ddddocr_rec_int8"): QUANTIZED,
    ("convert", "ppocrv4_det"): RESIZE,
    ("convert", "nudenet_320n"): RESIZE,
    ("convert", "ddddocr_det"): RESIZE,
    ("convert", "ddddocr_rec"): LSTM,
    ("convert", "ddddocr_rec_int8"): QUANT_CONVERT,
    ("convert", "magika_v3_3"): BATCH_FOLD,
    ("shrink", "ppocrv4_det"): CONSTANT_WEIGHTS,
    ("shrink", "ppocrv4_rec"): SHAPES + "; " + CONSTANT_WEIGHTS,
    ("shrink", "ppocr_cls"): SHAPES + "; " + CONSTANT_WEIGHTS,
    ("shrink", "nudenet_320n"): SHRINK_INPUT_SHAPE,
    ("shrink", "ddddocr_rec"): SHAPES,
    ("shrink", "mtcnn_pnet"): SHRINK_INPUT_SHAPE,
}

# Couplings shrink may refuse, with why. Everything else a group is refused for fails the test.
ALWAYS_REFUSED = {
    r"^graph output: ": "a graph output's shape is the model's contract",
    r"\(Softmax\): (normalises over|mixes values across) (the )?channel": "softmax over the class axis",
}
EXPECTED_REFUSALS = {
    "nudenet_320n": {
        r"\(Add\): channels meet out of order": "C2f: Split halves re-joined by Concat feed a residual Add "
                                                "(channel-level groups issue lifts it)",
        r"/dfl/Reshape' \(Reshape\): reshape splits or reorders channels": "DFL head: 64 = 4 boxes x 16 bins "
                                                                           "(channel-level groups issue)",
        r"/model.22/(Add_10|Sub)' .*unknown shape": "DFL anchor arithmetic on a computed grid (1-channel group)",
    },
    "magika_v3_3": {
        r"MagikaV2/Reshape' \(Reshape\): reshape splits or reorders channels": "Keras flattens (positions x "
                                                                              "channels) into one axis",
        r"LayerNorm_1/(Sum|Sum_1)' \(ReduceSum\): reduces over the channel axis": "LayerNorm over channels",
        r"LayerNorm_1/Mul_1' \(Mul\): combined with opaque data": "LayerNorm's normalised product",
        r"get_logits_/(Max|Sum)' \(Reduce(Max|Sum)\)": "softmax written as ReduceMax/ReduceSum",
    },
}


def _params(test: str, names, pair=lambda name: name):
    out = []
    for name in names:
        reason = KNOWN_FAILURES.get((test, pair(name)))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(name, marks=marks, id=pair(name)))
    return out


def _shape_args(entry: dict) -> list[str]:
    return [arg for flag in shape_flags(entry) for arg in ("--input-shape", flag)]


def _feeds(entry: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    model = onnx.load(entry["path"], load_external_data=False)
    dtypes = {i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in model.graph.input}
    feeds = {}
    for name, shape in entry["input_shape"].items():
        if np.issubdtype(dtypes[name], np.integer):
            feeds[name] = rng.integers(0, 256, shape).astype(dtypes[name])
        else:
            feeds[name] = rng.standard_normal(shape).astype(dtypes[name])
    return feeds


VERB_ARGS = {
    "profile": [],
    "groups": [],
    "check": ["--max-params", "1T", "--max-flops", "1T"],
    "bench": ["--runs", "2", "--warmup", "1", "--in-process"],
}


@pytest.mark.parametrize("case", _params("verb", [(m, v) for m in BY_NAME for v in VERB_ARGS],
                                         pair=lambda c: f"{c[0]}-{c[1]}"))
def test_verbs_exit_0(case, capsys):
    name, verb = case
    entry = BY_NAME[name]
    rc = main([verb, entry["path"], *VERB_ARGS[verb], *_shape_args(entry)])
    assert rc == 0, capsys.readouterr().err


def _with_constants_as_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
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


def _onnx_tool_rows(path: str, entry: dict) -> list[tuple]:
    """(node, op, params, MACs - bias MAC, weight elements, bias elements) for weighted float nodes."""
    onnx_tool = pytest.importorskip("onnx_tool")
    model = onnx_tool.Model(_with_constants_as_initializers(onnx.load(path)), {"verbose": False})
    model.graph.shape_infer(_feeds(entry))
    model.graph.profile()
    rows = []
    for node in model.graph.nodemap.values():
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        has_bias = node.op_type in ("Conv", "ConvTranspose", "Gemm") and len(node.input) > 2
        bias = int(np.prod(model.graph.tensormap[node.input[2]].shape)) if has_bias else 0
        out_elements = int(np.prod(node.outshape))
        macs = int(node.macs[0]) - (out_elements if has_bias else 0)
        rows.append((node.name, node.op_type, int(node.params), macs, int(node.params) - bias, bias))
    return rows


QUANTIZED_TWIN = {"ddddocr_rec_int8": "ddddocr_rec"}  # same architecture, float weights
QUANTIZED_OPS = {"ConvInteger": "Conv", "QLinearConv": "Conv", "MatMulInteger": "Gemm", "QLinearMatMul": "Gemm"}


@pytest.mark.parametrize("name", _params("onnx_tool", [m for m in BY_NAME if m != "magika_v3_3"]))
def test_profile_matches_onnx_tool_per_node(name):
    # magika_v3_3 is left out: onnx-tool cannot infer values through its GlobalMaxPool.
    from onnxprune.complexity import profile

    entry = BY_NAME[name]
    ours = {row["node"]: row for row in profile(entry["path"], entry["input_shape"]).rows()}
    if name in QUANTIZED_TWIN:
        twin = BY_NAME[QUANTIZED_TWIN[name]]
        theirs = _onnx_tool_rows(twin["path"], twin)
        graph = onnx.load(entry["path"]).graph
        quantized = [n.name for n in graph.node if n.op_type in QUANTIZED_OPS]
        family = {"Conv": [r for r in theirs if r[1] == "Conv"], "Gemm": [r for r in theirs if r[1] != "Conv"]}
        ops = {n.name: n.op_type for n in graph.node}
        paired = {"Conv": iter(family["Conv"]), "Gemm": iter(family["Gemm"])}
        assert len(quantized) == len(theirs)
        for node in quantized:
            _, _, _, macs, weights, bias = next(paired[QUANTIZED_OPS[ops[node]]])
            assert ours[node]["flops"] == macs, node
            assert ours[node]["params"] in (weights, weights + bias), node
        return
    theirs = _onnx_tool_rows(entry["path"], entry)
    assert theirs
    for node, op, params, macs, _, _ in theirs:
        assert ours[node]["params"] == params, node
        assert ours[node]["flops"] == macs, node


@pytest.mark.parametrize("name", _params("convert", list(BY_NAME)))
def test_converter_matches_onnxruntime(name):
    import torch

    from trainers.convert import convert

    entry = BY_NAME[name]
    feeds = _feeds(entry)
    expected = run(onnx.load(entry["path"]), feeds)
    (shape,) = entry["input_shape"].values()
    module = convert(entry["path"], input_shape=shape).eval()
    with torch.no_grad():
        got = module(*[torch.from_numpy(x) for x in feeds.values()])
    got = list(got) if isinstance(got, (list, tuple)) else [got]
    assert len(got) == len(expected)
    for actual, reference in zip(got, expected):
        assert actual.shape == reference.shape
        assert max_relative_error(actual.numpy(), reference) < 1e-4


def _refusals(deps) -> list[str]:
    return [reason for group in deps.groups if not group.prunable for reason in group.reasons]


@pytest.mark.parametrize("name", _params("shrink", FLOAT_MODELS))
def test_shrink_prunes_with_zero_mask_oracle_or_refuses_only_listed_couplings(name, tmp_path, capsys):
    entry = BY_NAME[name]
    deps = channel_groups(entry["path"], entry["input_shape"])
    allowed = {**ALWAYS_REFUSED, **EXPECTED_REFUSALS.get(name, {})}
    unexpected = [r for r in _refusals(deps) if not any(re.search(p, r) for p in allowed)]
    assert not unexpected, unexpected[:5]
    out, report_path = tmp_path / "pruned.onnx", tmp_path / "report.json"
    rc = main(["shrink", entry["path"], "--mode", "FA", "--target", "0.5", "--init", "keep", "--seed", "1",
               "-o", str(out), "--report", str(report_path), *_shape_args(entry)])
    err = capsys.readouterr().err
    if not deps.prunable:
        assert rc == 2 and "target unreachable" in err, err
        return
    assert rc == 0, err
    import json

    report = json.loads(report_path.read_text())
    kept = {row["node"]: row["kept"] for row in report["layers"]}
    keep = {g.id: kept[g.roots[0].node] for g in deps.prunable if g.roots[0].node in kept}
    assert keep, "nothing was pruned"
    pruned = onnx.load(out)
    onnx.checker.check_model(pruned, full_check=True)
    feeds = _feeds(entry, seed=1)
    for got, want in zip(run(pruned, feeds), run(zero_mask(deps, keep), feeds), strict=True):
        assert got.shape == want.shape
        assert max_relative_error(got, want) < 1e-5
