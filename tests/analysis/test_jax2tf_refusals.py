"""Refusals lifted on a jax2tf classifier (issue 25, item 6a): a written-out LayerNorm over the
channels with computed broadcasts is a structural coupling (pruned at --init reinit), and a Reshape
that merges an inner axis into the channel axis is an index mapping, not a barrier."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxprune
from onnxprune.analysis.groups import channel_groups
from onnxprune.measure.verify import max_relative_error, run, zero_mask
from onnxprune.prune.surgery import prune_channels
from tests.jax2tf_pattern import jax2tf_classifier
from tests.synthetic_graphs import GraphBuilder

FEEDS = {"x": np.random.default_rng(1).standard_normal((1, 32, 4)).astype(np.float32)}


def _half(deps, group) -> np.ndarray:
    return np.sort(np.random.default_rng(group.id).choice(group.size, group.size // 2, replace=False))


def test_every_hidden_group_is_prunable_at_reinit_and_the_layer_norm_is_structural():
    model = jax2tf_classifier()
    exact = channel_groups(model)
    by_producer = {g.producers[0]: g for g in exact.groups}
    assert by_producer["conv2"].prunable and by_producer["dense1"].prunable  # the merged-axis reshapes
    norm = by_producer["conv1"]
    assert not norm.prunable and norm.structural_only
    assert not any("opaque" in r or "reorders" in r for g in exact.groups for r in g.reasons)
    reinit = channel_groups(model, exact=False)
    assert len(reinit.prunable) == len(reinit.groups) - 1  # all but the logits


def test_merged_axis_reshapes_hold_the_zero_mask_oracle():
    model = jax2tf_classifier()
    deps = channel_groups(model)
    keep = {g.id: _half(deps, g) for g in deps.prunable}
    assert len(keep) == 2
    pruned = prune_channels(deps, keep)
    onnx.checker.check_model(pruned, full_check=True)
    error = max_relative_error(run(pruned, FEEDS)[0], run(zero_mask(deps, keep), FEEDS)[0])
    assert error <= 1e-5, error


def test_layer_norm_group_prunes_at_reinit_into_a_valid_graph():
    model = jax2tf_classifier()
    deps = channel_groups(model, exact=False)
    keep = {g.id: _half(deps, g) for g in deps.prunable}
    pruned = prune_channels(deps, keep)
    onnx.checker.check_model(pruned, full_check=True)
    shapes = sorted(tuple(i.dims) for i in pruned.graph.initializer)
    assert shapes.count((1, 1, 8)) == 2  # the LayerNorm's scale and bias, cut where their Expands read them
    got, want = run(pruned, FEEDS)[0], run(model, FEEDS)[0]
    assert got.shape == want.shape and np.isfinite(got).all()


def test_shrink_prunes_the_layer_norm_group_at_reinit_only():
    model = jax2tf_classifier()
    deps = channel_groups(model)
    pruned_conv1 = []
    for seed in range(4):
        pruned, report = onnxprune.shrink(model, mode="FA", target=0.5, init="reinit", seed=seed, round_to=1)
        onnx.checker.check_model(pruned, full_check=True)
        assert run(pruned, FEEDS)[0].shape == (1, 10)
        pruned_conv1.append(any(row["node"] == "conv1" for row in report["layers"]))
        pruned, report = onnxprune.shrink(model, mode="FA", target=0.5, init="keep", seed=seed, round_to=1)
        assert not any(row["node"] == "conv1" for row in report["layers"])
        kept = deps.keep_from_layers({row["node"]: row["kept"] for row in report["layers"]})
        error = max_relative_error(run(pruned, FEEDS)[0], run(zero_mask(deps, kept), FEEDS)[0])
        assert error <= 1e-5, error
    assert any(pruned_conv1)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_reshape_merging_an_inner_axis_into_the_channels_prunes(layout):
    """[N, C, H, W] -> [N, C*H, W] (each channel repeated over H) and [N, H, W, C] -> [N, H, W*C]
    (channels last, tiled over W), each into a conv/MatMul that reads the merged axis."""
    b = GraphBuilder()
    h = b.relu(b.conv("x", 3, 8, "conv1", k=3))  # [1, 8, 8, 8]
    if layout == "NCHW":
        h = b.node("Reshape", [h, b.const(np.array([1, 64, 8, 1], np.int64), "shape")])[0]
        y = b.conv(h, 64, 4, "head")
    else:
        h = b.node("Transpose", [h], perm=[0, 2, 3, 1])[0]
        h = b.node("Reshape", [h, b.const(np.array([1, 8, 64], np.int64), "shape")])[0]
        y = b.node("MatMul", [h, b.const(b.rng.standard_normal((64, 5)).astype(np.float32), "m")], "head")[0]
    model = b.model(y)
    deps = channel_groups(model)
    group = deps.group_of("conv1")
    assert group.prunable, group.reasons
    keep = {group.id: np.array([0, 3, 4, 7])}
    pruned = prune_channels(deps, keep)
    onnx.checker.check_model(pruned, full_check=True)
    assert max_relative_error(run(pruned)[0], run(zero_mask(deps, keep))[0]) <= 1e-5


@pytest.mark.parametrize("init", ["keep", "reinit"])
def test_pruned_graph_runs_at_any_batch_under_onnxruntime_optimizations(init):
    """The written value_info keeps the symbolic batch: with batch-1 shapes recorded, onnxruntime's
    optimizer folded Shape(x) and the computed Reshapes failed at batch 3."""
    import onnxruntime as ort

    pruned, _ = onnxprune.shrink(jax2tf_classifier(), mode="FA", target=0.5, init=init, seed=1, round_to=1)
    session = ort.InferenceSession(pruned.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).standard_normal((3, 32, 4)).astype(np.float32)
    assert session.run(None, {"x": x})[0].shape == (3, 10)
