"""A constant that broadcasts along the channel axis (size 1 there, or of lower rank) is not
channel-coupled when its op leaves a zero channel zero: it stays one shared constant, as it is.

The probe's tf2onnx openwakeword embedding model reads one [1,1,1,1] ReLU floor (-0.4) from 19 Max
nodes; shrink had expanded it into one [1,C,1,1] copy per channel count.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.analysis.groups import channel_groups
from onnxprune.measure.verify import max_relative_error, run, zero_mask
from onnxprune.prune.surgery import prune_channels


def two_layers_sharing(op: str, value: np.ndarray) -> onnx.ModelProto:
    """Conv -> op(., c) -> Conv -> op(., c) -> Conv, one constant `c` read by both `op` nodes."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((16, 16, 3, 3)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.standard_normal((4, 16, 3, 3)).astype(np.float32), "w3"),
        numpy_helper.from_array(np.asarray(value, dtype=np.float32), "c"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4, name="conv1"),
        helper.make_node(op, ["c1", "c"], ["m1"]),
        helper.make_node("Conv", ["m1", "w2"], ["c2"], pads=[1] * 4, name="conv2"),
        helper.make_node(op, ["c2", "c"], ["m2"]),
        helper.make_node("Conv", ["m2", "w3"], ["y"], pads=[1] * 4, name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "shared_broadcast_constant",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _prune_differently(model: onnx.ModelProto):
    """conv1 keeps 12 channels, conv2 keeps 9: the two readers of `c` see different channel counts."""
    deps = channel_groups(model)
    keep = {deps.group_of("conv1").id: list(range(12))}
    keep[deps.group_of("conv2").id] = [0, 2, 3, 5, 7, 8, 11, 13, 15]
    notes: list = []
    pruned = prune_channels(deps, keep, notes=notes)
    onnx.checker.check_model(pruned, full_check=True)
    error = max_relative_error(run(pruned)[0], run(zero_mask(deps, keep))[0])
    return deps, pruned, notes, error


@pytest.mark.parametrize(
    "op, value",
    [
        ("Max", np.full((1, 1, 1, 1), -0.4)),  # the probe's ReLU floor
        ("Max", np.float32(-0.4)),  # a scalar: the channel axis is broadcast by rank
        ("Max", np.full((1, 1, 1), -0.4)),
        ("Max", -np.abs(np.random.default_rng(3).standard_normal((1, 1, 8, 8)))),  # varies, not per channel
        ("Min", np.full((1, 1, 1, 1), 6.0)),  # a ReLU6-style ceiling
        ("Add", np.zeros((1, 1, 1, 1))),
    ],
)
def test_constant_broadcast_along_channels_stays_one_untouched_constant(op, value):
    model = two_layers_sharing(op, value)
    deps, pruned, notes, error = _prune_differently(model)
    assert not [m for m in deps.members if m.tensor is not None and m.tensor.name == "c"]  # not channel-coupled
    constants = [i for i in pruned.graph.initializer if i.name.startswith("c")]
    assert [c.name for c in constants] == ["c"]  # single: no per-reader copy
    assert constants[0].SerializeToString() == model.graph.initializer[3].SerializeToString()  # unchanged
    assert {n.input[1] for n in pruned.graph.node if n.op_type == op} == {"c"}
    assert notes == []  # no "readers pruned differently"
    assert error < 1e-5  # the zero-mask oracle holds


def test_a_constant_that_shifts_a_zero_channel_is_still_made_per_channel():
    """Max(0, 0.4) is 0.4: a removed channel would carry it into the next layer, so (as for an added
    non-zero scalar) each reader gets a per-channel cut and the zero-mask oracle stays exact."""
    model = two_layers_sharing("Max", np.full((1, 1, 1, 1), 0.4))
    _, pruned, notes, error = _prune_differently(model)
    shapes = sorted(tuple(i.dims) for i in pruned.graph.initializer if i.name.startswith("c"))
    assert shapes == [(1, 9, 1, 1), (1, 12, 1, 1)] and len(notes) == 1
    assert error < 1e-5


def test_an_epsilon_under_a_square_root_stays_a_scalar():
    """A written-out instance norm, (x - mean) / sqrt(var + eps): a removed channel is 0 / sqrt(eps) = 0
    with eps as it is, so eps is neither expanded nor cut."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((4, 8, 3, 3)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.float32(1e-5), "eps"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4, name="conv1"),
        helper.make_node("ReduceMean", ["c1"], ["mean"], axes=[2, 3]),
        helper.make_node("Sub", ["c1", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "centred"], ["squared"]),
        helper.make_node("ReduceMean", ["squared"], ["var"], axes=[2, 3]),
        helper.make_node("Add", ["var", "eps"], ["var_eps"]),
        helper.make_node("Sqrt", ["var_eps"], ["std"]),
        helper.make_node("Div", ["centred", "std"], ["normed"]),
        helper.make_node("Conv", ["normed", "w2"], ["y"], pads=[1] * 4, name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "instance_norm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    deps = channel_groups(model)
    keep = {deps.group_of("conv1").id: [1, 2, 6]}
    pruned = prune_channels(deps, keep)
    onnx.checker.check_model(pruned, full_check=True)
    assert [(i.name, tuple(i.dims)) for i in pruned.graph.initializer if i.name.startswith("eps")] == [("eps", ())]
    assert max_relative_error(run(pruned)[0], run(zero_mask(deps, keep))[0]) < 1e-5
