"""Issue 25 item 3: the shrink loop's analytic bookkeeping agrees with `profile`, also on graphs whose
traced channels sit off a layer's channel axis (tf2onnx's Keras Conv1D: NHWC maps, Pad and Concat on
the channel axis), and a refusal quotes only a measured figure, never one above the model's own."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.analysis.complexity import FIGURES, build_layers, profile
from onnxprune.analysis.groups import Tracer
from onnxprune.cli import main
from onnxprune.prune.shrink import Bookkeeper
from onnxprune.prune.surgery import prune_channels
from onnxprune.read.graph import load_graph

T, F = 120, 8  # time steps, input features (Keras Conv1D: [N, T, C])


def conv1d_nhwc(variant: str, seed: int = 0) -> onnx.ModelProto:
    """x [1, T, F] -> Unsqueeze -> Transpose to NCHW -> conv_a -> Relu -> conv_b -> Transpose to NHWC
    [1, 1, T, 32] (channels on axis 3), then `variant`:
    - "nhwc_conv": a Conv reads the NHWC map as it is (its ONNX channel axis holds the 1);
    - "pad_concat": harmonic stacking: the map, and the map padded on the channel axis, concatenated;
    - "matmul": a MatMul contracts the time axis of [1, 32, T] (channels not on the contracted axis).
    conv_a's channels are prunable; the 32 of conv_b meet the variant."""
    rng = np.random.default_rng(seed)

    def w(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    ints = lambda name, values: numpy_helper.from_array(np.asarray(values, np.int64), name)  # noqa: E731
    inits = [w("wa", (16, F, 1, 3)), w("wb", (32, 16, 1, 3)), ints("ax1", [1])]
    nodes = [
        helper.make_node("Unsqueeze", ["x", "ax1"], ["u"]),
        helper.make_node("Transpose", ["u"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "wa"], ["a"], pads=[0, 1, 0, 1], name="conv_a"),
        helper.make_node("Relu", ["a"], ["ra"]),
        helper.make_node("Conv", ["ra", "wb"], ["b"], pads=[0, 1, 0, 1], name="conv_b"),
        helper.make_node("Transpose", ["b"], ["nhwc"], perm=[0, 2, 3, 1]),
    ]
    if variant == "nhwc_conv":
        inits.append(w("wn", (8, 1, 1, 3)))
        nodes += [
            helper.make_node("Conv", ["nhwc", "wn"], ["n"], pads=[0, 1, 0, 1], name="conv_nhwc"),
            helper.make_node("ReduceMean", ["n"], ["y"], axes=[2, 3], keepdims=0),
        ]
        out_shape = [1, 8]
    elif variant == "pad_concat":
        inits += [ints("pads", [0, 0, 0, 0, 0, 0, 0, 12]), w("wh", (44 + 32, 6))]
        nodes += [
            helper.make_node("Pad", ["nhwc", "pads"], ["padded"]),
            helper.make_node("Concat", ["nhwc", "padded"], ["stacked"], axis=3),
            helper.make_node("ReduceMean", ["stacked"], ["pooled"], axes=[1, 2], keepdims=0),
            helper.make_node("MatMul", ["pooled", "wh"], ["y"], name="head"),
        ]
        out_shape = [1, 6]
    else:
        inits += [ints("shape", [1, 32, T]), w("wt", (T, 5))]
        nodes += [
            helper.make_node("Reshape", ["b", "shape"], ["seq"]),
            helper.make_node("MatMul", ["seq", "wt"], ["y"], name="over_time"),
        ]
        out_shape = [1, 32, 5]
    graph = helper.make_graph(
        nodes,
        variant,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, T, F])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


VARIANTS = ["nhwc_conv", "pad_concat", "matmul"]


def _bookkeeper(model):
    mg = load_graph(model)
    deps = Tracer(mg).run()
    return deps, Bookkeeper(deps, build_layers(mg))


def _totals(book: Bookkeeper) -> dict:
    return {name: book.total(i) for i, name in enumerate(FIGURES)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_bookkeeping_starts_at_profile_totals_after_a_full_recount(variant):
    model = conv1d_nhwc(variant)
    _, book = _bookkeeper(model)
    book.reset()  # every layer recounted from the layouts, as the refusal and the uniform strategy do
    assert _totals(book) == profile(model).totals


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("variant", VARIANTS)
def test_bookkeeping_after_removals_equals_profile_of_the_pruned_graph(variant, seed):
    model = conv1d_nhwc(variant, seed)
    deps, book = _bookkeeper(model)
    rng = np.random.default_rng(seed)
    keep = {}
    for group in deps.prunable:
        keep[group.id] = np.sort(rng.choice(group.size, max(1, group.size // 3), replace=False))
        book.remove(group.id, np.setdiff1d(np.arange(group.size), keep[group.id]))
    assert keep, "the variant has no prunable group"
    assert _totals(book) == profile(prune_channels(deps, keep)).totals


@pytest.mark.parametrize("variant", VARIANTS)
def test_unreachable_target_quotes_a_measured_figure_below_the_models_own(variant, tmp_path, capsys):
    path = tmp_path / f"{variant}.onnx"
    onnx.save(conv1d_nhwc(variant), path)
    assert main(["shrink", str(path), "--mode", "FA", "--target", "0.01", "-o", str(tmp_path / "o.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "target unreachable" in err
    percent = float(re.search(r"\(([\d.]+)% of ", err).group(1))
    assert "measured on the graph pruned that far" in err and percent <= 100.0
    assert not (tmp_path / "o.onnx").exists()
