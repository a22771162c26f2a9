"""Weights inside If/Loop/Scan subgraphs, or fed into a Loop/Scan as inputs, are reported as uncounted
(profile does not follow control flow): profile warns, check refuses, shrink does not claim a budget
met on a figure of 0 (probe finding 2/3: silero-vad's If, openwakeword's verifier, SLANet's Loop)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune import profile
from onnxprune.cli import main
from onnxprune.errors import UserError

IF_REASON = "inside its If branches: onnxprune does not follow control flow"
RNG = np.random.default_rng(0)


def _w(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name)


def _value(name: str, shape, elem=TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _model(nodes, inputs, outputs, initializers, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "control_flow", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def _zeros_branch(name: str, out: str, shape: list[int]) -> onnx.GraphProto:
    """A branch that reads no weight: zeros of `shape`."""
    size = numpy_helper.from_array(np.array(shape, np.int64), f"{name}_shape")
    zeros = numpy_helper.from_array(np.zeros(1, np.float32))
    node = helper.make_node("ConstantOfShape", [size.name], [out], value=zeros)
    return helper.make_graph([node], name, [], [_value(out, shape)], [size])


def if_model(where: str = "outer", with_layers: bool = True) -> onnx.ModelProto:
    """conv1 -> relu -> conv2 (counted), then an If whose then-branch is a 256x32 Gemm on conv2's
    output; the Gemm's weight is a main-graph initializer (`outer`), the branch's own initializer
    (`own`) or a Constant node in the branch (`constant`). Without layers the If reads x directly."""
    weight = _w("W_gate", 256, 32)
    inits, own, then_nodes = [], [], []
    if where == "outer":
        inits.append(weight)
    elif where == "own":
        own.append(weight)
    else:
        then_nodes.append(helper.make_node("Constant", [], ["W_gate"], value=weight))
    if with_layers:
        inits += [_w("w1", 8, 3, 3, 3), _w("w2", 16, 8, 1, 1)]
        main = [
            helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"),
        ]
        x = _value("x", [1, 3, 6, 6])
        then_nodes.append(helper.make_node("Flatten", ["c2"], ["flat"]))
        gemm_input = "flat"
    else:
        main, x, gemm_input = [], _value("x", [1, 256]), "x"
    then_nodes.append(helper.make_node("Gemm", [gemm_input, "W_gate"], ["t_out"]))
    then_branch = helper.make_graph(then_nodes, "then", [], [_value("t_out", [1, 32])], own)
    gate = helper.make_node(
        "If", ["cond"], ["z"], name="gate", then_branch=then_branch, else_branch=_zeros_branch("else", "e_out", [1, 32])
    )
    return _model(main + [gate], [x, _value("cond", [], TensorProto.BOOL)], [_value("z", [1, 32])], inits)


def loop_model(fed: bool) -> onnx.ModelProto:
    """A Loop over a [1, 32] state. `fed`: the 32x32 weight is a loop-carried input (paddle2onnx's
    SLANet); else the body holds an If whose branch reads it from the main graph (two levels deep)."""
    inits = [
        numpy_helper.from_array(np.array(2, np.int64), "trips"),
        numpy_helper.from_array(np.array(True), "go"),
        _w("W_loop", 32, 32),
    ]
    body_inputs = [_value("i", [], TensorProto.INT64), _value("c_in", [], TensorProto.BOOL), _value("acc", [1, 32])]
    body_outputs = [_value("c_out", [], TensorProto.BOOL), _value("acc_out", [1, 32])]
    body = [helper.make_node("Identity", ["c_in"], ["c_out"])]
    if fed:
        body_inputs.append(_value("w_in", [32, 32]))
        body_outputs.append(_value("w_out", [32, 32]))
        body += [
            helper.make_node("MatMul", ["acc", "w_in"], ["acc_out"]),
            helper.make_node("Identity", ["w_in"], ["w_out"]),
        ]
        loop_inputs, loop_outputs = ["trips", "go", "x", "W_loop"], ["y", "w_final"]
    else:
        inner_then = helper.make_graph(
            [helper.make_node("MatMul", ["acc", "W_loop"], ["m"])], "inner_then", [], [_value("m", [1, 32])]
        )
        inner_else = helper.make_graph(
            [helper.make_node("Identity", ["acc"], ["k"])], "inner_else", [], [_value("k", [1, 32])]
        )
        body.append(helper.make_node("If", ["c_in"], ["acc_out"], then_branch=inner_then, else_branch=inner_else))
        loop_inputs, loop_outputs = ["trips", "go", "x"], ["y"]
    loop_body = helper.make_graph(body, "body", body_inputs, body_outputs)
    loop = helper.make_node("Loop", loop_inputs, loop_outputs, name="steps", body=loop_body)
    return _model([loop], [_value("x", [1, 32])], [_value("y", [1, 32])], inits)


def scan_model() -> onnx.ModelProto:
    """A Scan adding the rows of a 4x32 weight (a scan input) to a [32] state."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "row"], ["s_out"])],
        "scan_body",
        [_value("s_in", [32]), _value("row", [32])],
        [_value("s_out", [32])],
    )
    scan = helper.make_node("Scan", ["x", "rows"], ["y"], name="rows_scan", body=body, num_scan_inputs=1)
    return _model([scan], [_value("x", [32])], [_value("y", [32])], [_w("rows", 4, 32)])


@pytest.mark.parametrize("where", ["outer", "own", "constant"])
def test_weights_inside_an_if_branch_are_uncounted(where):
    result = profile(if_model(where))
    assert result.totals["params"] == 8 * 3 * 9 + 16 * 8  # conv1 + conv2, counted
    assert result.uncounted == [{"node": "gate", "op": "If", "elements": 256 * 32, "reason": IF_REASON}]
    summary = result.uncounted_summary()
    assert "gate (If, 8192 weights inside its If branches" in summary and "does not follow control flow" in summary


def test_weights_read_two_levels_deep_are_found():
    assert profile(loop_model(fed=False)).uncounted == [
        {
            "node": "steps",
            "op": "Loop",
            "elements": 1024,
            "reason": "inside its Loop body: onnxprune does not follow control flow",
        }
    ]


def test_weights_fed_into_a_loop_or_scan_as_inputs_are_uncounted():
    reason = "fed into the {} as inputs: onnxprune does not follow control flow"
    assert profile(loop_model(fed=True)).uncounted == [
        {"node": "steps", "op": "Loop", "elements": 1024, "reason": reason.format("Loop")}
    ]
    assert profile(scan_model()).uncounted == [
        {"node": "rows_scan", "op": "Scan", "elements": 128, "reason": reason.format("Scan")}
    ]


def test_each_constant_counts_once_and_counted_weights_are_not_repeated():
    """W_gate read in both branches counts once; w_main, counted by the main MatMul, not at all."""
    model = if_model("outer", with_layers=False)
    model.graph.initializer.append(_w("w_main", 256, 32))
    model.graph.node.insert(0, helper.make_node("MatMul", ["x", "w_main"], ["counted"], name="main_matmul"))
    model.graph.output.append(_value("counted", [1, 32]))
    gate = model.graph.node[1]
    else_branch = next(a.g for a in gate.attribute if a.name == "else_branch")
    else_branch.ClearField("node")
    else_branch.ClearField("initializer")
    else_branch.node.extend(
        [
            helper.make_node("MatMul", ["x", "W_gate"], ["g"]),
            helper.make_node("MatMul", ["x", "w_main"], ["h"]),
            helper.make_node("Add", ["g", "h"], ["e_out"]),
        ]
    )
    onnx.checker.check_model(model, full_check=True)
    result = profile(model)
    assert result.totals["params"] == 256 * 32
    assert result.uncounted == [{"node": "gate", "op": "If", "elements": 256 * 32, "reason": IF_REASON}]


def test_small_and_integer_constants_in_a_branch_are_not_weights():
    """A 4-element bias and an int64 shape inside an If are not layer weights (WEIGHT_ELEMENTS/TYPES)."""
    bias = numpy_helper.from_array(np.ones(4, np.float32), "bias")
    shape = numpy_helper.from_array(np.array([1, 4], np.int64), "shape")
    then_branch = helper.make_graph(
        [helper.make_node("Add", ["x", "bias"], ["a"]), helper.make_node("Reshape", ["a", "shape"], ["t"])],
        "then",
        [],
        [_value("t", [1, 4])],
        [shape],
    )
    else_branch = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [], [_value("e", [1, 4])])
    gate = helper.make_node("If", ["cond"], ["z"], then_branch=then_branch, else_branch=else_branch)
    model = _model([gate], [_value("x", [1, 4]), _value("cond", [], TensorProto.BOOL)], [_value("z", [1, 4])], [bias])
    assert profile(model).uncounted == []


# ---- what each verb does with them ------------------------------------------------------------------
def _save(tmp_path, model: onnx.ModelProto, name: str = "cf.onnx") -> str:
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


def test_profile_json_and_warning_name_the_node_and_why(tmp_path, capsys):
    path = _save(tmp_path, if_model())
    assert main(["profile", path, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["uncounted"] == [
        {"node": "gate", "op": "If", "elements": 8192, "reason": IF_REASON}
    ]
    assert "warning" in captured.err and "gate (If, 8192 weights inside its If branches" in captured.err
    assert main(["profile", path]) == 0
    assert "gate (If" in capsys.readouterr().err
    other = _save(tmp_path, if_model("own"), "other.onnx")
    assert main(["profile", path, other, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["uncounted"]["b"][0]["elements"] == 8192
    assert captured.err.count("onnxprune: warning:") == 2 and "other.onnx" in captured.err


def test_check_refuses_in_one_line_unless_allowed(tmp_path, capsys):
    path = _save(tmp_path, if_model())
    assert main(["check", path, "--max-params", "1k"]) == 2  # 560 counted: it passed before
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gate (If, 8192 weights" in err and "--allow-uncounted" in err
    assert main(["check", path, "--max-params", "1k", "--allow-uncounted"]) == 0
    assert "gate (If" in capsys.readouterr().err


def test_shrink_refuses_when_nothing_is_counted(tmp_path, capsys):
    model = if_model(with_layers=False)  # every weight inside the If: params 0
    for mode in ("PA", "FA", "MA"):
        with pytest.raises(UserError, match=r"counts 0 .*gate \(If, 8192 weights inside its If branches"):
            onnxprune.shrink(model, mode=mode, target=0.5)
    with pytest.raises(UserError, match="counts 0 params"):
        onnxprune.shrink(model, mode="PA", budget=1e9)  # not "already within the budget"
    path = _save(tmp_path, model)
    assert main(["shrink", path, "--mode", "PA", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and path in err and "gate (If" in err


def test_shrink_prunes_what_it_counts_and_reports_the_rest():
    pruned, report = onnxprune.shrink(if_model(), mode="PA", target=0.8, init="keep")
    assert report["pruned"]
    assert report["uncounted"] == [{"node": "gate", "op": "If", "elements": 8192, "reason": IF_REASON}]
    assert "gate (If, 8192 weights inside its If branches" in report["uncounted_summary"]
    assert "\n" not in report["uncounted_summary"]
    assert profile(pruned).uncounted == report["uncounted"]


def test_shrink_cli_warns_about_the_weights_it_did_not_count(tmp_path, capsys):
    path, out = _save(tmp_path, if_model()), str(tmp_path / "o.onnx")
    assert main(["shrink", path, "--mode", "PA", "--target", "0.8", "--init", "keep", "-o", out]) == 0
    err = capsys.readouterr().err
    assert err.startswith("onnxprune: warning: ") and "gate (If, 8192 weights inside its If branches" in err
