"""The zero-mask oracle on every zoo model, exporter and BatchNorm variant."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxprune.analysis.groups import channel_groups
from onnxprune.errors import UserError
from onnxprune.measure.verify import max_relative_error, run, zero_mask
from onnxprune.prune.surgery import prune_channels
from tests.conftest import BN_VARIANTS, CIFAR_MODELS, EXPORTERS


def random_keep(deps, seed):
    rng = np.random.default_rng(seed)
    return {g.id: np.sort(rng.choice(g.size, int(rng.integers(1, g.size + 1)), replace=False)) for g in deps.prunable}


@pytest.mark.parametrize("name", CIFAR_MODELS)
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("bn", BN_VARIANTS)
def test_zero_mask_oracle(zoo_model, name, exporter, bn):
    path = zoo_model(name, exporter, bn)
    deps = channel_groups(path)
    # every conv/linear layer but the classifier is prunable in these networks
    assert len(deps.prunable) == len(deps.groups) - 1
    assert [g for g in deps.groups if not g.prunable][0].reasons == ["graph output: its shape is the model's contract"]
    keep = random_keep(deps, seed=len(name))
    pruned = prune_channels(deps, keep)
    onnx.checker.check_model(pruned, full_check=True)
    original = deps.mg.model
    got, want, unpruned = run(pruned)[0], run(zero_mask(deps, keep))[0], run(original)[0]
    assert got.shape == unpruned.shape
    assert max_relative_error(got, want) < 1e-5
    assert max_relative_error(got, unpruned) > 1e-3  # the oracle is not vacuous: outputs did change
    names_before = {n.name for n in original.graph.node}
    assert {n.name for n in pruned.graph.node} <= names_before  # surviving nodes keep their names
    assert sum(i.ByteSize() for i in pruned.graph.initializer) < sum(i.ByteSize() for i in original.graph.initializer)


def test_input_model_is_not_modified(zoo_model):
    deps = channel_groups(zoo_model("mobilenetv2_cifar", "dynamo", "kept"))
    before = deps.mg.model.SerializeToString()
    prune_channels(deps, random_keep(deps, 1))
    assert deps.mg.model.SerializeToString() == before


def test_keep_sets_are_validated(zoo_model):
    deps = channel_groups(zoo_model("vgg16_cifar", "legacy", "folded"))
    fixed = next(g for g in deps.groups if not g.prunable)
    with pytest.raises(UserError, match="not prunable"):
        prune_channels(deps, {fixed.id: [0]})
    with pytest.raises(UserError, match="no such group"):
        prune_channels(deps, {10_000: [0]})
    with pytest.raises(UserError, match="non-empty subset"):
        prune_channels(deps, {deps.prunable[0].id: [deps.prunable[0].size + 3]})


def test_keeping_everything_is_identity(zoo_model):
    deps = channel_groups(zoo_model("resnet50_cifar", "legacy", "kept"))
    pruned = prune_channels(deps, {g.id: np.arange(g.size) for g in deps.groups})
    assert max_relative_error(run(pruned)[0], run(deps.mg.model)[0]) == 0.0


def test_constant_node_weights_are_sliced_in_place_like_initializers():
    """Weights held in unnamed Constant nodes: pruned, oracle holds, Constant nodes and names stay."""
    from tests.synthetic_graphs import constant_weight_cnn

    original = constant_weight_cnn()
    deps = channel_groups(original)
    keep = {g.id: np.array([0, 2, 3]) for g in deps.prunable}
    pruned = prune_channels(deps, keep)
    onnx.checker.check_model(pruned, full_check=True)
    assert [(n.op_type, n.name) for n in pruned.graph.node] == [(n.op_type, n.name) for n in original.graph.node]
    assert not pruned.graph.initializer  # no weight moved out of its Constant node
    conv_weights = [onnx.numpy_helper.to_array(n.attribute[0].t) for n in pruned.graph.node if n.op_type == "Constant"]
    assert [w.shape for w in conv_weights][:4] == [(3, 3, 3, 3), (3,), (3, 3, 1, 1), (3,)]
    got, want = run(pruned)[0], run(zero_mask(deps, keep))[0]
    assert max_relative_error(got, want) < 1e-5 and max_relative_error(got, run(original)[0]) > 1e-3


@pytest.mark.parametrize("build", ["qdq_cnn", "conv_integer_cnn", "qlinear_cnn"])
def test_quantized_layers_prune_with_their_scales_and_zero_points(build):
    """Issue 25.6: an integer weight is cut with its per-channel scales and zero points (a per-tensor
    one stays); the pruned graph equals the zero-masked original, where a weight's zero is its zero point."""
    from tests import synthetic_graphs

    original = getattr(synthetic_graphs, build)()
    deps = channel_groups(original)
    assert [g.producers for g in deps.prunable] == [["qconv"], ["conv2"]]
    keep = {deps.group_of("qconv").id: np.array([0, 3, 6]), deps.group_of("conv2").id: np.array([1, 4])}
    pruned = prune_channels(deps, keep)
    onnx.checker.check_model(pruned, full_check=True)
    integers = {
        i.name: i for i in pruned.graph.initializer if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    }
    assert [tuple(integers[n].dims) for n in integers if n.startswith("w_q")] == [(3, 3, 3, 3)]
    per_channel = [tuple(i.dims) for i in pruned.graph.initializer if i.name.startswith(("w_scale", "w_zp"))]
    assert all(dims in ((3,), ()) for dims in per_channel)
    assert (3,) in per_channel or build == "conv_integer_cnn"  # its weight scale is one scalar
    got, want = run(pruned)[0], run(zero_mask(deps, keep))[0]
    assert max_relative_error(got, want) == 0.0 and max_relative_error(got, run(original)[0]) > 1e-3


def test_shared_constant_is_copied_for_readers_pruned_differently():
    """Issue 16.4: layers reading one de-duplicated bias are cut independently; each differing reader gets a copy."""
    from tests.analysis.test_groups import Untrained, export_folded

    original = export_folded(Untrained(), trained=False)
    deps = channel_groups(original)
    a, b = deps.group_of("/a/a.0/Conv"), deps.group_of("/b/b.0/Conv")
    keep = {a.id: np.array([0, 1, 2, 5]), b.id: np.arange(3, 16)}
    notes = []
    pruned = prune_channels(deps, keep, notes=notes)
    onnx.checker.check_model(pruned, full_check=True)
    assert len(notes) == 1 and notes[0]["versions"] == 2 and notes[0]["readers"] == 2
    read = {name for n in pruned.graph.node for name in n.input}
    assert all(
        any(o in read for o in n.output) or o_is_output(pruned, n) for n in pruned.graph.node
    )  # no dead Identity
    noise = {
        g.id: np.arange(1, g.size) for g in deps.prunable if g.id not in keep
    }  # zeroed biases stay zero: add the rest
    keep.update(noise)
    pruned = prune_channels(deps, keep)
    got, want = run(pruned)[0], run(zero_mask(deps, keep))[0]
    assert max_relative_error(got, want) < 1e-5 and max_relative_error(got, run(original)[0]) > 1e-3


def o_is_output(model, node) -> bool:
    return any(o.name in node.output for o in model.graph.output)


def test_shared_constant_read_by_an_unpruned_node_keeps_its_original():
    """A reader that is not cut (here the head's input side) keeps the full constant; the cut reader gets a copy."""
    from tests.synthetic_graphs import GraphBuilder

    b = GraphBuilder()
    shared = b.const(np.linspace(-1, 1, 8).astype(np.float32), "bias")
    h = b.relu(b.conv("x", 3, 8, "conv1", k=3, bias_name=shared))
    h = b.relu(b.conv(h, 8, 8, "conv2", bias_name=shared))
    original = b.model(b.conv(h, 8, 8, "head", bias_name=shared))
    deps = channel_groups(original)
    keep = {deps.group_of("conv1").id: np.array([1, 6])}
    pruned = prune_channels(deps, keep)
    onnx.checker.check_model(pruned, full_check=True)
    sizes = {i.name: tuple(i.dims) for i in pruned.graph.initializer}
    assert sizes[shared] == (8,) and sorted(sizes[n.input[2]] for n in pruned.graph.node if n.op_type == "Conv") == [
        (2,),
        (8,),
        (8,),
    ]
    assert max_relative_error(run(pruned)[0], run(zero_mask(deps, keep))[0]) < 1e-5


def test_scalar_added_to_every_channel_is_expanded_so_pruning_stays_exact():
    """PP-LCNetV3's learnable affine x*a + b with scalar a, b (one b shared by two layers, in Constant nodes):
    a removed channel would carry b, not 0; the scalar becomes one value per channel and is cut."""
    from tests.synthetic_graphs import GraphBuilder

    b = GraphBuilder(constant_nodes=True)
    scale, shift = b.const(np.float32(1.5), "a"), b.const(np.float32(0.25), "b")
    h = b.conv("x", 3, 8, "conv1", k=3)
    h = b.relu(b.node("Add", [b.node("Mul", [h, scale])[0], shift])[0])
    h = b.conv(h, 8, 6, "conv2")
    h = b.relu(b.node("Add", [b.node("Mul", [h, scale])[0], shift])[0])
    original = b.model(b.conv(h, 6, 4, "head"))
    deps = channel_groups(original)
    assert len(deps.prunable) == 2
    keep = {deps.group_of("conv1").id: np.array([0, 3, 4]), deps.group_of("conv2").id: np.array([1, 2, 5])}
    pruned = prune_channels(deps, keep)
    onnx.checker.check_model(pruned, full_check=True)
    got, want = run(pruned)[0], run(zero_mask(deps, keep))[0]
    assert max_relative_error(got, want) < 1e-5 and max_relative_error(got, run(original)[0]) > 1e-3


def test_computed_value_added_to_every_channel_freezes_them():
    from tests.synthetic_graphs import GraphBuilder

    b = GraphBuilder()
    h = b.conv("x", 3, 8, "conv1", k=3)
    shift = b.node("ReduceMean", ["x"], keepdims=1)[0]  # [1, 1, 1, 1], computed at run time
    h = b.relu(b.node("Add", [h, shift])[0])
    original = b.model(b.conv(h, 8, 4, "head"))
    conv1 = channel_groups(original).group_of("conv1")
    assert not conv1.prunable and any("computed, to every channel" in r for r in conv1.reasons)


def paddle_flatten_head(batch_from_shape: bool = True) -> onnx.ModelProto:
    """paddle2onnx's classifier head: Reshape(pool, Concat(Shape(pool)[0:1], Cast(Constant [C]))), MatMul."""
    from tests.synthetic_graphs import GraphBuilder

    builder = GraphBuilder(constant_nodes=True)
    features = builder.relu(builder.conv("x", 3, 8, name="features"))
    pooled = builder.node("GlobalAveragePool", [features], name="pool")[0]
    if batch_from_shape:
        shape = builder.node("Shape", [pooled], name="shape")[0]
        batch = builder.node(
            "Slice",
            [shape, builder.const(np.array([0])), builder.const(np.array([1])), builder.const(np.array([0]))],
            name="batch",
        )[0]
    else:
        batch = builder.const(np.array([1]))
    channels = builder.node("Cast", [builder.const(np.array([8], np.int32))], name="channels", to=7)[0]
    target = builder.node("Concat", [batch, channels], name="target", axis=0)[0]
    flat = builder.node("Reshape", [pooled, target], name="flatten")[0]
    weight = builder.const(builder.rng.standard_normal((8, 2)).astype(np.float32))
    return builder.model(builder.node("MatMul", [flat, weight], name="fc")[0])


@pytest.mark.parametrize("batch_from_shape", [True, False])
def test_computed_reshape_target_constant_channel_count_is_rewritten(batch_from_shape):
    """ppocr_cls: the constant piece of a computed target kept 200 after pruning, and onnxruntime failed."""
    deps = channel_groups(paddle_flatten_head(batch_from_shape))
    group = deps.group_of("features")
    assert group.prunable, group.reasons
    keep = {group.id: np.array([0, 2, 3, 7])}
    pruned = prune_channels(deps, keep)
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    assert max_relative_error(run(pruned, feeds)[0], run(zero_mask(deps, keep), feeds)[0]) < 1e-5
