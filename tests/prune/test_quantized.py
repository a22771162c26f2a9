"""Quantized graphs prune (issue 25, item 6b): onnxruntime's own quantizers' output -- QDQ and
QOperator, per channel and per tensor, and dynamic (ConvInteger/MatMulInteger) -- on a small CNN
with a residual add, a depthwise conv and a flatten into two dense layers. Each pruned graph equals
the zero-masked quantized original exactly, with onnxruntime's graph optimizations off (the oracle)
and on (QDQ fused into integer kernels), and shrink's `after` figures are the written model's."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import onnxprune  # noqa: E402
from onnxprune.analysis.complexity import profile  # noqa: E402
from onnxprune.analysis.groups import channel_groups  # noqa: E402
from onnxprune.measure.verify import max_relative_error, run, zero_mask  # noqa: E402
from onnxprune.prune.surgery import prune_channels  # noqa: E402

VARIANTS = ["qdq-per-channel", "qdq-per-tensor", "qoperator-per-channel", "qoperator-per-tensor", "dynamic-int8"]
VARIANTS += ["dynamic-uint8-per-channel"]


class ResidualNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 1))
        self.expand = nn.Sequential(nn.Conv2d(16, 32, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1, groups=32))
        self.fc1, self.fc2 = nn.Linear(32 * 4 * 4, 24), nn.Linear(24, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(self.block(x) + x)
        x = nn.functional.max_pool2d(torch.relu(self.expand(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def _feeds(seed: int) -> dict:
    return {"x": np.random.default_rng(seed).standard_normal((1, 3, 8, 8)).astype(np.float32)}


@pytest.fixture(scope="module")
def quantized(tmp_path_factory) -> dict[str, onnx.ModelProto]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([_feeds(i) for i in range(8)])

        def get_next(self):
            return next(self.items, None)

    folder = tmp_path_factory.mktemp("quantized")
    torch.manual_seed(0)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ResidualNet().eval(), (torch.randn(1, 3, 8, 8),), buffer, dynamo=False, input_names=["x"])
    source = folder / "float.onnx"
    source.write_bytes(buffer.getvalue())
    out = {}
    for name in VARIANTS:
        path = folder / f"{name}.onnx"
        if name.startswith("dynamic"):
            weight = QuantType.QUInt8 if "uint8" in name else QuantType.QInt8
            quantize_dynamic(source, path, weight_type=weight, per_channel="per-channel" in name)
        else:
            fmt = QuantFormat.QDQ if name.startswith("qdq") else QuantFormat.QOperator
            quantize_static(
                source,
                path,
                Reader(),
                quant_format=fmt,
                per_channel=name.endswith("per-channel"),
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QInt8 if fmt == QuantFormat.QDQ else QuantType.QUInt8,
            )
        out[name] = onnx.load(path)
    return out


def _run_optimized(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize("name", VARIANTS)
def test_quantized_graph_prunes_exactly(quantized, name):
    model = quantized[name]
    deps = channel_groups(model)
    assert len(deps.prunable) == len(deps.groups) - 1, [g.reasons[:1] for g in deps.groups if not g.prunable]
    for seed in range(3):
        rng = np.random.default_rng(seed)
        keep = {g.id: np.sort(rng.choice(g.size, g.size // 2, replace=False)) for g in deps.prunable}
        pruned = prune_channels(deps, keep)
        onnx.checker.check_model(pruned, full_check=True)
        masked = zero_mask(deps, keep)
        feeds = _feeds(100 + seed)
        assert max_relative_error(run(pruned, feeds)[0], run(masked, feeds)[0]) == 0.0
        assert max_relative_error(_run_optimized(pruned, feeds), _run_optimized(masked, feeds)) == 0.0
        assert max_relative_error(run(pruned, feeds)[0], run(model, feeds)[0]) > 1e-3  # something was cut


@pytest.mark.parametrize("name", ["qdq-per-channel", "qoperator-per-tensor", "dynamic-int8"])
def test_shrink_prunes_a_quantized_graph_and_reports_what_it_wrote(quantized, name):
    model = quantized[name]
    pruned, report = onnxprune.shrink(model, mode="FA", target=0.5, init="keep", seed=0, round_to=1)
    assert report["after"]["flops"] <= 0.5 * report["before"]["flops"]
    assert report["after"] == profile(pruned).totals
    integer = [i for i in pruned.graph.initializer if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)]
    assert integer  # still a quantized graph
    deps = channel_groups(model)
    kept = deps.keep_from_layers({row["node"]: row["kept"] for row in report["layers"]})
    assert max_relative_error(run(pruned, _feeds(7))[0], run(zero_mask(deps, kept), _feeds(7))[0]) == 0.0


def test_dequantized_takes_out_activation_pairs_and_keeps_weights(quantized):
    """The QDQ oracle's comparison (verify.dequantized): per-tensor activation Quantize->Dequantize
    pairs go, the weights' DequantizeLinear stay; the outputs are the float model's up to weight rounding."""
    from onnxprune.measure.verify import dequantized

    model = quantized["qdq-per-channel"]
    plain = dequantized(model)
    ops = [n.op_type for n in plain.graph.node]
    stored = {i.name for i in model.graph.initializer}
    weights = sum(1 for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in stored)
    assert "QuantizeLinear" not in ops and ops.count("DequantizeLinear") == weights > 0
    onnx.checker.check_model(plain, full_check=True)
    assert dequantized(quantized["dynamic-int8"]) is None  # no activation pairs: compared as it is
    deps = channel_groups(model)
    keep = {g.id: np.arange(0, g.size, 3) for g in deps.prunable}
    pruned, masked = prune_channels(deps, keep), zero_mask(deps, keep)
    assert max_relative_error(run(dequantized(pruned))[0], run(dequantized(masked))[0]) < 1e-5


def test_l1_importance_of_an_integer_weight_is_measured_from_its_zero_point():
    from onnxprune.prune.sampler import l1_importance
    from tests.synthetic_graphs import qlinear_cnn

    model = qlinear_cnn()  # uint8 weights, zero point 128
    deps = channel_groups(model)
    group = deps.group_of("qconv")
    weights = next(onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name.startswith("w_q"))
    expected = np.abs(weights.astype(np.float64) - 128).sum(axis=(1, 2, 3))
    assert np.allclose(l1_importance(deps, group), expected)


def test_dequantized_keeps_a_pair_whose_output_a_branch_reads():
    """An If branch reading the DequantizeLinear's output by name cannot be rewired with the main
    graph's readers: the pair stays (taking it out left the branch reading a tensor that was gone)."""
    from onnx import TensorProto, helper

    from onnxprune.measure.verify import dequantized

    def branch(name):
        out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [1, 4])
        return helper.make_graph([helper.make_node("Identity", ["xd"], [f"{name}_out"])], name, [], [out])

    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"]),
        helper.make_node("Relu", ["xd"], ["r"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=branch("then"), else_branch=branch("else")),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]),
        ],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("zp", TensorProto.INT8, [], [0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    plain = dequantized(model)
    assert plain is None or onnx.checker.check_model(plain, full_check=True) is None
