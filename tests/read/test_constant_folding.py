"""Constants reached through Reshape/Unsqueeze/Cast/Transpose (onnxprune/read/constant_folding.py).

paddle2onnx feeds every conv bias to its Add as Reshape(Constant, Constant shape) (ppocr_cls in the
corpus); the old group builder saw 'opaque data' there and refused the group. Here a hand-built
graph with legacy-style names carries each variant: a conv bias through Reshape, a per-channel
scale through Unsqueeze, a float16 shift through Cast then Reshape, a second bias sharing the
first's shape constant, and a Gemm weight through Transpose.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnxprune.analysis.groups import channel_groups
from onnxprune.measure.verify import max_relative_error, run, zero_mask
from onnxprune.prune.surgery import prune_channels
from onnxprune.read.graph import load_graph

C, SIZE, CLASSES = 6, 8, 5


def _constant(name: str, value: np.ndarray, node_name: str) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=node_name, value=numpy_helper.from_array(value, name))


def reshaped_constants_cnn(opset: int = 17, seed: int = 0) -> onnx.ModelProto:
    """x -> Conv_0 (+ Reshape(b0)) * Unsqueeze(scale) + Reshape(Cast(shift16)) -> Relu -> Conv_9
    (+ Reshape(b1), the same shape constant) -> GAP -> Flatten -> Gemm(Transpose(w3)) -> y."""
    rng = np.random.default_rng(seed)
    w = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    shape_c = np.array([1, C, 1, 1], dtype=np.int64)
    axes = np.array([1, 2], dtype=np.int64)
    unsqueeze = (
        helper.make_node(
            "Unsqueeze", ["onnx::Unsqueeze_21", "onnx::Unsqueeze_22"], ["onnx::Mul_23"], name="Unsqueeze_5"
        )
        if opset >= 13
        else helper.make_node("Unsqueeze", ["onnx::Unsqueeze_21"], ["onnx::Mul_23"], name="Unsqueeze_5", axes=[1, 2])
    )
    nodes = [
        _constant("onnx::Reshape_11", w(C), "Constant_1"),
        _constant("onnx::Reshape_12", shape_c, "Constant_2"),
        _constant("onnx::Unsqueeze_21", 1 + 0.1 * w(C), "Constant_3"),
        _constant("onnx::Cast_31", w(C).astype(np.float16), "Constant_6"),
        _constant("onnx::Reshape_41", w(C), "Constant_10"),
        _constant("onnx::Transpose_51", w(C, CLASSES), "Constant_14"),
        helper.make_node("Conv", ["x", "conv0.weight"], ["onnx::Add_10"], name="Conv_0", pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["onnx::Reshape_11", "onnx::Reshape_12"], ["onnx::Add_13"], name="Reshape_3"),
        helper.make_node("Add", ["onnx::Add_10", "onnx::Add_13"], ["onnx::Mul_14"], name="Add_4"),
        *([_constant("onnx::Unsqueeze_22", axes, "Constant_4")] if opset >= 13 else []),
        unsqueeze,
        helper.make_node("Mul", ["onnx::Mul_14", "onnx::Mul_23"], ["onnx::Add_24"], name="Mul_6"),
        helper.make_node("Cast", ["onnx::Cast_31"], ["onnx::Reshape_32"], name="Cast_7", to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["onnx::Reshape_32", "onnx::Reshape_12"], ["onnx::Add_33"], name="Reshape_8"),
        helper.make_node("Add", ["onnx::Add_24", "onnx::Add_33"], ["onnx::Relu_34"], name="Add_8"),
        helper.make_node("Relu", ["onnx::Relu_34"], ["onnx::Conv_35"], name="Relu_9"),
        helper.make_node("Conv", ["onnx::Conv_35", "conv9.weight"], ["onnx::Add_40"], name="Conv_9"),
        helper.make_node("Reshape", ["onnx::Reshape_41", "onnx::Reshape_12"], ["onnx::Add_42"], name="Reshape_11"),
        helper.make_node("Add", ["onnx::Add_40", "onnx::Add_42"], ["onnx::GlobalAveragePool_43"], name="Add_12"),
        helper.make_node("GlobalAveragePool", ["onnx::GlobalAveragePool_43"], ["onnx::Flatten_44"], name="GAP_13"),
        helper.make_node("Flatten", ["onnx::Flatten_44"], ["onnx::Gemm_45"], name="Flatten_14"),
        helper.make_node("Transpose", ["onnx::Transpose_51"], ["onnx::Gemm_52"], name="Transpose_15", perm=[1, 0]),
        helper.make_node("Gemm", ["onnx::Gemm_45", "onnx::Gemm_52", "fc.bias"], ["y"], name="Gemm_16", transB=1),
    ]
    inits = [
        numpy_helper.from_array(w(C, 3, 3, 3), "conv0.weight"),
        numpy_helper.from_array(w(C, C, 1, 1), "conv9.weight"),
        numpy_helper.from_array(w(CLASSES), "fc.bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "torch_jit",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, CLASSES])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)


FEEDS = {"x": np.random.default_rng(1).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)}
OPSETS = [11, 17]  # Unsqueeze's axes: an attribute before opset 13, an input after


@pytest.mark.parametrize("opset", OPSETS)
def test_reshaped_constants_are_constants_with_their_folded_value(opset):
    model = reshaped_constants_cnn(opset)
    mg = load_graph(model)
    tensors = {t.name: t for t in mg.graph.tensors().values()}
    values = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node if n.op_type == "Constant"}
    assert mg.is_const(tensors["onnx::Add_13"])
    np.testing.assert_array_equal(
        mg.const_value(tensors["onnx::Add_13"]), values["onnx::Reshape_11"].reshape(1, C, 1, 1)
    )
    np.testing.assert_array_equal(
        mg.const_value(tensors["onnx::Mul_23"]), values["onnx::Unsqueeze_21"].reshape(C, 1, 1)
    )
    shift = mg.const_value(tensors["onnx::Add_33"])
    assert shift.dtype == np.float32 and shift.shape == (1, C, 1, 1)
    np.testing.assert_array_equal(mg.const_value(tensors["onnx::Gemm_52"]), values["onnx::Transpose_51"].T)
    # profile and the uncounted-weights check count the bytes where they are stored
    assert mg.const_source(tensors["onnx::Add_33"]) == ("constant_node", "onnx::Cast_31")
    # computed tensors stay computed, through the same ops
    assert not mg.is_const(tensors["onnx::Gemm_45"]) and mg.const_value(tensors["onnx::Gemm_45"]) is None


def test_profile_counts_a_weight_reached_through_transpose():
    from onnxprune import profile

    rows = {row["node"]: row for row in profile(reshaped_constants_cnn()).rows()}
    assert rows["Gemm_16"]["params"] == CLASSES * C + CLASSES  # old code: the bias only


@pytest.mark.parametrize("opset", OPSETS)
def test_groups_see_constants_where_the_old_code_saw_opaque_data(opset):
    deps = channel_groups(reshaped_constants_cnn(opset))
    reasons = [r for g in deps.groups for r in g.reasons]
    assert not any("opaque" in r for r in reasons), reasons  # old code: 'Add_4 (Add): combined with opaque data'
    assert sorted(g.size for g in deps.prunable) == [C, C]  # both convs; the Gemm's is the graph output


def _half(deps) -> dict:
    return {g.id: np.arange(0, g.size, 2) for g in deps.prunable}


@pytest.mark.parametrize("opset", OPSETS)
def test_pruning_cuts_the_folded_constants_and_holds_the_zero_mask_oracle(opset):
    model = reshaped_constants_cnn(opset)
    deps = channel_groups(model)
    keep = _half(deps)
    pruned = prune_channels(deps, keep)
    onnx.checker.check_model(pruned, full_check=True)
    got, want = run(pruned, FEEDS)[0], run(zero_mask(deps, keep), FEEDS)[0]
    assert max_relative_error(got, want) < 1e-5
    assert not np.allclose(want, run(model, FEEDS)[0])  # the oracle zeroed something that matters
    names = {n.name for n in pruned.graph.node}
    assert names <= {n.name for n in model.graph.node}  # surviving nodes keep their names
    # the cut chains fed nothing else: gone; readers read cut initializers of their own
    assert not names & {"Reshape_3", "Unsqueeze_5", "Cast_7", "Reshape_8", "Reshape_11", "Transpose_15"}
    inits = {i.name: numpy_helper.to_array(i) for i in pruned.graph.initializer}
    add_4 = next(n for n in pruned.graph.node if n.name == "Add_4")
    assert inits[add_4.input[1]].shape == (1, C // 2, 1, 1)
    gemm = next(n for n in pruned.graph.node if n.name == "Gemm_16")
    assert inits[gemm.input[1]].shape == (CLASSES, C // 2)


def test_a_chain_no_cut_reaches_is_left_as_the_user_wrote_it():
    model = reshaped_constants_cnn()
    deps = channel_groups(model)
    second = next(g for g in deps.prunable if any("Conv_9" in p for p in g.producers))
    pruned = prune_channels(deps, {second.id: np.arange(0, C, 2)})
    nodes = {n.name: n for n in pruned.graph.node}
    # Conv_0's group keeps every channel: its bias, scale and shift chains are untouched
    for name in ("Reshape_3", "Unsqueeze_5", "Cast_7", "Reshape_8", "Constant_2"):
        assert list(nodes[name].input) == list(next(n for n in model.graph.node if n.name == name).input)
    assert "Reshape_11" not in nodes and "Transpose_15" not in nodes  # Conv_9's bias and the Gemm's weight
    assert (
        max_relative_error(run(pruned, FEEDS)[0], run(zero_mask(deps, {second.id: np.arange(0, C, 2)}), FEEDS)[0])
        < 1e-5
    )


def test_a_folded_constant_read_twice_is_cut_per_reader():
    """One Reshape output added to two convs' outputs: each Add gets its own cut, the graph stays valid."""
    model = reshaped_constants_cnn()
    add_12 = next(n for n in model.graph.node if n.name == "Add_12")
    add_12.input[1] = "onnx::Add_13"  # Conv_9's bias is now Conv_0's reshaped one
    deps = channel_groups(model)
    keep = {
        g.id: (np.arange(0, g.size, 2) if any("Conv_0" in p for p in g.producers) else np.arange(1, g.size, 2))
        for g in deps.prunable
    }
    assert len(keep) == 2  # old code: both refused ('combined with opaque data')
    pruned = prune_channels(deps, keep)
    onnx.checker.check_model(pruned, full_check=True)
    adds = {n.name: n.input[1] for n in pruned.graph.node if n.name in ("Add_4", "Add_12")}
    assert adds["Add_4"] != adds["Add_12"]  # each its own cut copy
    assert max_relative_error(run(pruned, FEEDS)[0], run(zero_mask(deps, keep), FEEDS)[0]) < 1e-5


def test_shrink_cli_prunes_it_at_init_keep(tmp_path):
    from models.corpus_oracles import shrink_and_verify

    path = tmp_path / "reshaped.onnx"
    onnx.save(reshaped_constants_cnn(), path)
    entry = {"path": str(path), "input_shape": {"x": [1, 3, SIZE, SIZE]}}
    result = shrink_and_verify(entry, channel_groups(str(path)), tmp_path)
    assert result["rc"] == 0, result["err"]
    assert result["keep"] and result["check"] is None and result["shapes_equal"]
    assert max(result["max_errors"]) < 1e-5


def paddle_style(model: onnx.ModelProto) -> onnx.ModelProto:
    """What paddle2onnx writes: every weight in a Constant node, every conv bias added after the conv
    as Add(conv, Reshape(Constant bias, Constant [1, C, 1, 1])). Same function, other graph."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    constants = [
        helper.make_node("Constant", [], [init.name], name=f"Constant_{init.name}", value=init)
        for init in graph.initializer
    ]
    del graph.initializer[:]
    nodes = []
    for node in graph.node:
        nodes.append(node)
        if node.op_type != "Conv" or len(node.input) < 3 or not node.input[2]:
            continue
        bias, result = node.input[2], node.output[0]  # names from the output: a bias may be shared
        del node.input[2]
        node.output[0] = f"{result}__conv"
        shape = f"{result}__bias_shape"
        channels = next(len(onnx.numpy_helper.to_array(c.attribute[0].t)) for c in constants if c.output[0] == bias)
        nodes += [
            _constant(shape, np.array([1, channels, 1, 1], dtype=np.int64), f"Constant_{shape}"),
            helper.make_node("Reshape", [bias, shape], [f"{result}__bias"], name=f"Reshape_{result}"),
            helper.make_node("Add", [node.output[0], f"{result}__bias"], [result], name=f"Add_{result}"),
        ]
    del graph.node[:]
    graph.node.extend(constants + nodes)
    return out


@pytest.mark.parametrize("keep_seed", [0, 1])
def test_a_torch_net_rewritten_paddle_style_prunes_like_the_original(keep_seed):
    """Every block kind of the property test (residuals, depthwise, grouped, SE, splits, concat...),
    its biases moved behind Reshape(Constant): as many prunable groups, and the zero-mask oracle."""
    pytest.importorskip("torch")
    from tests.analysis.test_property_graphs import Spec, build, check_pruning, export

    spec = Spec(
        blocks=[
            ("conv", 4, 3, True),
            ("res", 4, 3),
            ("dense", 2, 2),
            ("dw", 2),
            ("group", 2, 4),
            ("se", 2, True, False),
            ("split", 2, "swap"),
            ("conv", 4, 1, False),
            ("c2f",),
        ],
        head=dict(gap=True, flatten="flatten", hidden=4, matmul=False, classes=3),
        exporter="legacy-fold",
        seed=1,
        expect_prunable=True,
    )
    original = export(build(spec), spec.exporter)
    rewritten = paddle_style(original)
    assert sum(n.op_type == "Reshape" for n in rewritten.graph.node) >= 8
    np.testing.assert_allclose(run(rewritten)[0], run(original)[0], rtol=1e-5, atol=1e-6)
    before, after = channel_groups(original), channel_groups(rewritten)
    assert len(after.prunable) == len(before.prunable) >= 4  # old code: the reshaped biases blocked them
    figures = check_pruning(rewritten, keep_seed, after)
    assert figures["strict"]


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_random_architectures_rewritten_paddle_style_prune_like_the_original(data):
    """The property test's random nets (tests/analysis/test_property_graphs.py), biases behind Reshape(Constant)."""
    from tests.analysis.test_property_graphs import HypothesisDraw, build, check_pruning, draw_spec, export

    spec = draw_spec(HypothesisDraw(data))
    note(str(spec))
    original = export(build(spec), spec.exporter)
    rewritten = paddle_style(original)
    before, after = channel_groups(original), channel_groups(rewritten)
    assert len(after.prunable) == len(before.prunable), [g.reasons[:1] for g in after.groups if not g.prunable]
    check_pruning(rewritten, spec.seed, after)
