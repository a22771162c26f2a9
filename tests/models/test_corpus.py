"""The real-graph corpus (models/corpus.py, `make corpus`): CNNs from paddle2onnx, torch 1.2 (IR 4),
1.9, 1.11 and 2.x, tf2onnx (1.8 at IR 4, 1.9, 1.16), keras2onnx, a dynamically quantized graph, one
whose weights are decoded from int8 at run time, audio front ends, a voice activity detector and a GRU
captcha reader, and the ONNX Model Zoo's nine IR 3 classics (onnx-caffe2 layout, random weights:
models/zoo_classics.py), none written by us.

On every model: profile/groups/check/bench exit 0 with the manifest's --input-shape; profile
agrees with onnx-tool per weighted node; the trainer's converter matches onnxruntime; shrink's loop
totals start at profile's; shrink FA 0.5 --init keep either prunes with the zero-mask oracle holding
on every output, or refuses only the couplings listed in EXPECTED_REFUSALS. VGG-19 (575 MB) is
shrunk only with ONNXPRUNE_CORPUS_HEAVY=1 (benchmarks/corpus.py always does). Skips when the corpus
is not built.

Cases that fail on the code this file was written against are `xfail(strict=True)` with the
issue-11 item (and the helper) that fixes them: once fixed, the xpass fails, so the mark goes.
"""

from __future__ import annotations

import os
import re

import onnx
import pytest

from models.corpus import default_dir, load_manifest
from models.corpus_oracles import converter_agrees, feeds, profile_mismatches, run_cli, shape_args, shrink_and_verify
from onnxprune.analysis.groups import channel_groups
from onnxprune.measure.verify import max_relative_error, run

CORPUS = load_manifest()
if CORPUS is None:
    pytest.skip(
        f"real-graph corpus absent from {default_dir()}: run `make corpus` (or set CORPUS_DIR)", allow_module_level=True
    )
BY_NAME = {entry["name"]: entry for entry in CORPUS}
FLOAT_MODELS = [entry["name"] for entry in CORPUS if not entry["quantized"]]

# (test, model) -> why it fails on main; each is an xfail(strict=True), so a fix turns it into a
# failure until the entry goes. Empty: the last one (ppocr_cls's biases fed through
# Reshape(Constant), issue 11 item 3) is lifted by onnxprune/read/constant_folding.py.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}
# Graphs the trainer's converter refuses by design, with the words its one-line refusal must hold.
CONVERTER_REFUSALS = {"slanet": "(op Loop) is not supported by the trainer's converter"}
# Graphs holding weights profile cannot count (control flow): `check` refuses to pass a budget on
# them unless --allow-uncounted, and names the node.
UNCOUNTED = {
    "slanet": "p2o.Loop.0 (Loop, 525854 weights fed into the Loop as inputs",
    "ppocrv6_rec_tiny_int8w": "Conv.0 (Conv, 648 weights decoded from stored constants",
}
# Graphs whose trained weights cannot be written back into their own structure (train exports them
# through torch instead), with the words of the reason.
WRITEBACK_REFUSALS = {"ppocrv6_rec_tiny_int8w": "is computed in the graph, not stored"}

# Couplings shrink may refuse, with why. Everything else a group is refused for fails the test.
ALWAYS_REFUSED = {
    r"^graph output: ": "a graph output's shape is the model's contract",
    r"\(Softmax\): (normalises over|mixes values across) (the )?channel": "softmax over the class axis",
}
EXPECTED_REFUSALS = {
    "ppocrv4_rec": {
        r"\(ReduceMean\): reduces over the channel axis": "LayerNorm over channels in the SVTR neck",
        r"\(Sub\): adds 'p2o.ReduceMean.\d+', computed, to every channel \(structural only": "LayerNorm's x - mean(x)",
        r"'p2o.Reshape.(67|73)' \(Reshape\): reshape splits or reorders channels": "attention QKV: 360 = 3 x heads "
        "x head dim (channel-level groups)",
    },
    "nudenet_320n": {
        r"/dfl/Reshape' \(Reshape\): reshape splits or reorders channels": "DFL head: 64 = 4 boxes x 16 bins",
        r"/dfl/Softmax' \(Softmax\): channels spread over several axes": "DFL head: softmax over the 16 bins "
        "of each box, after 64 -> 4 x 16",
        r"/model.22/(Sub|Sub_1|Add_10|Add_11)' \((Sub|Add)\): (channels meet out of order|combined with opaque)": "box decode: anchor points -/+ the sliced distances, the output's 1-2 coordinate channels",
    },
    "ddddocr_rec": {
        r"'LSTM_79' \(LSTM\): no channel rule": "the LSTM's input weights are not sliced (channel-level groups)",
    },
    # the ONNX Model Zoo's classics (IR 3, random weights): LRN normalises each channel over its neighbours
    **{
        name: {r"\(LRN\): normalises over the channel axis \(structural only": "LRN over channels"}
        for name in ("zoo_alexnet", "zoo_zfnet512", "zoo_inception_v1")
    },
    "oww_melspectrogram": {
        r"'ReduceMax_\d+' \(ReduceMax\): reduces over the channel axis \(structural only": "the log-mel floor: "
        "80 dB under the maximum over every frequency bin",
    },
    "silero_vad_sequence": {r"'/recurrent/LSTM' \(LSTM\): no channel rule": "the LSTM's input weights are not sliced"},
    "vtop_captcha_crnn": {r"'/rnn/GRU' \(GRU\): no channel rule": "the GRU's input weights are not sliced"},
    "ppocrv6_rec_tiny_int8w": {
        r"\(Conv\): weights are computed, not constant": "every layer's weight is decoded from int8 at run time",
        r"\(MatMul\): only MatMul by a constant 2-D weight is pruned": "the head's weight is decoded at run time too",
    },
    "slanet": {
        r"'p2o.Resize.\d+' \(Resize\): sizes are computed": "FPN upsampling to a computed [N, C, H, W]",
        r"'p2o.Concat.\d+' \(Concat\): concatenated with a fixed input": "CSP-PAN concatenations with a fixed branch",
        r"'p2o.Loop.0' \(Loop\): read inside a subgraph": "the attention decoder reads the head's channels in its Loop",
    },
    "magika_v3_3": {
        r"MagikaV2/Reshape' \(Reshape\): reshape splits or reorders channels": "Keras flattens (positions x "
        "channels) into one axis",
        r"LayerNorm_1/(Sum|Sum_1)' \(ReduceSum\): reduces over the channel axis": "LayerNorm over channels",
        r"LayerNorm_1/Mul_1' \(Mul\): combined with opaque data": "LayerNorm's normalised product",
        r"LayerNorm_1/Sub_1' \(Sub\): adds .* to every channel \(structural only": "LayerNorm's x - mean(x)",
        r"get_logits_/(Max|Sum)' \(Reduce(Max|Sum)\)": "softmax written as ReduceMax/ReduceSum",
        r"get_logits_/Sub' \(Sub\): adds .* to every channel \(structural only": "softmax's x - max(x)",
    },
}


def _params(test: str, names, pair=lambda name: name):
    out = []
    for name in names:
        reason = KNOWN_FAILURES.get((test, pair(name)))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(name, marks=marks, id=pair(name)))
    return out


VERB_ARGS = {
    "profile": [],
    "groups": [],
    "check": ["--max-params", "1T", "--max-flops", "1T"],
    "bench": ["--runs", "2", "--warmup", "1", "--in-process"],
}


@pytest.mark.parametrize(
    "case", _params("verb", [(m, v) for m in BY_NAME for v in VERB_ARGS], pair=lambda c: f"{c[0]}-{c[1]}")
)
def test_verbs_exit_0(case):
    name, verb = case
    entry = BY_NAME[name]
    rc, err = run_cli([verb, entry["path"], *VERB_ARGS[verb], *shape_args(entry)])
    if verb == "check" and name in UNCOUNTED:  # never passes a budget on weights it did not count
        assert rc == 2 and UNCOUNTED[name] in err and "--allow-uncounted" in err, err
        rc, err = run_cli([verb, entry["path"], *VERB_ARGS[verb], *shape_args(entry), "--allow-uncounted"])
    assert rc == 0, err


@pytest.mark.parametrize("name", _params("onnx_tool", [m for m in BY_NAME if m not in ("magika_v3_3", "slanet")]))
def test_profile_matches_onnx_tool_per_node(name):
    # left out: onnx-tool cannot infer values through magika_v3_3's GlobalMaxPool nor SLANet's Loop.
    pytest.importorskip("onnx_tool")
    wrong, compared = profile_mismatches(BY_NAME[name], BY_NAME)
    assert compared > 0
    assert not wrong, wrong[:5]


@pytest.mark.parametrize("name", _params("convert", list(BY_NAME)))
def test_converter_matches_onnxruntime(name):
    """Float graphs convert and match; a quantized graph (shrink never prunes one) may instead be
    refused before any work, naming its unsupported ops."""
    import torch

    from onnxprune.errors import UserError
    from trainers.convert import convert

    entry = BY_NAME[name]
    inputs = feeds(entry)
    expected = run(onnx.load(entry["path"]), inputs)
    (shape,) = entry["input_shape"].values()
    try:
        module = convert(entry["path"], input_shape=shape).eval()
    except UserError as exc:
        if name in CONVERTER_REFUSALS:
            assert CONVERTER_REFUSALS[name] in str(exc), exc
            return
        if not entry["quantized"]:
            raise
        assert "not supported by the trainer's converter" in str(exc) and "ConvInteger" in str(exc)
        return
    with torch.no_grad():
        got = module(*[torch.from_numpy(x) for x in inputs.values()])
    got = list(got) if isinstance(got, (list, tuple)) else [got]
    assert len(got) == len(expected)
    for actual, reference in zip(got, expected):
        assert actual.shape == reference.shape
        actual = actual.numpy()
        assert converter_agrees(actual, reference), max_relative_error(actual, reference)


def _skip_heavy(entry: dict) -> None:
    """VGG-19 (575 MB, ~40 s and ~5.6 GB to shrink and verify) runs in benchmarks/corpus.py; here
    only with ONNXPRUNE_CORPUS_HEAVY=1."""
    if entry.get("heavy") and not os.environ.get("ONNXPRUNE_CORPUS_HEAVY"):
        pytest.skip(f"{entry['name']} is heavy: set ONNXPRUNE_CORPUS_HEAVY=1 (benchmarks/corpus.py runs it)")


def _refusals(deps) -> list[str]:
    return [reason for group in deps.groups if not group.prunable for reason in group.reasons]


@pytest.mark.parametrize("name", _params("shrink", FLOAT_MODELS))
def test_shrink_prunes_with_zero_mask_oracle_or_refuses_only_listed_couplings(name, tmp_path):
    entry = BY_NAME[name]
    _skip_heavy(entry)
    deps = channel_groups(entry["path"], entry["input_shape"])
    allowed = {**ALWAYS_REFUSED, **EXPECTED_REFUSALS.get(name, {})}
    unexpected = [r for r in _refusals(deps) if not any(re.search(p, r) for p in allowed)]
    assert not unexpected, unexpected[:5]
    result = shrink_and_verify(entry, deps, tmp_path)
    if not deps.prunable:
        assert result["rc"] == 2 and "target unreachable" in result["err"], result["err"]
        return
    assert result["rc"] == 0, result["err"]
    assert result["keep"], "nothing was pruned"
    assert result["flops_after"] <= 0.5 * result["flops_before"]
    assert result["check"] is None, result["check"]
    assert result["shapes_equal"]
    assert max(result["max_errors"]) < 1e-5, result["max_errors"]


@pytest.mark.parametrize("name", [entry["name"] for entry in CORPUS if entry["quantized"]])
def test_shrink_on_quantized_graph_prunes_correctly(name, tmp_path):
    """Issue 25.6: a quantized graph is pruned like a float one (integer weights with their scales and
    zero points): the target is met, the result checks, runs and equals the zero-mask model."""
    entry = BY_NAME[name]
    deps = channel_groups(entry["path"], entry["input_shape"])
    assert deps.prunable, [g.reasons[:1] for g in deps.groups]
    result = shrink_and_verify(entry, deps, tmp_path)
    assert result["rc"] == 0, result["err"]
    assert result["flops_after"] <= 0.5 * result["flops_before"]
    assert result["check"] is None, result["check"]
    assert result["shapes_equal"]
    assert max(result["max_errors"]) < 1e-5, result["max_errors"]


@pytest.mark.parametrize("name", list(BY_NAME))
def test_bookkeeping_starts_at_profile_totals(name):
    """Issue 25 item 3: the shrink loop's totals, every layer recounted from the channel layouts (as
    the refusal and the uniform strategy do), are `profile`'s totals."""
    from onnxprune.analysis.complexity import FIGURES, build_layers, profile
    from onnxprune.analysis.groups import Tracer
    from onnxprune.prune.shrink import Bookkeeper
    from onnxprune.read.graph import load_graph

    entry = BY_NAME[name]
    _skip_heavy(entry)
    mg = load_graph(entry["path"], entry["input_shape"])
    book = Bookkeeper(Tracer(mg).run(), build_layers(mg))
    book.reset()
    assert {figure: book.total(i) for i, figure in enumerate(FIGURES)} == profile(mg).totals
