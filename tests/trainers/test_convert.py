"""ONNX -> torch -> ONNX: the trainer's converter reproduces onnxruntime, trains in any batch size."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from onnxprune.errors import UserError  # noqa: E402
from trainers.convert import convert, export_onnx  # noqa: E402
from trainers.testing import assert_close, calibrate, export_torch, only_bn_buffers, round_trip, run_ort  # noqa: E402


class SmallNet(nn.Module):
    """conv/BN/ReLU/maxpool, a residual add, a depthwise conv, a concat, a MatMul+Add head, a Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.pw = nn.Conv2d(16, 12, 1)
        self.head_w = nn.Parameter(torch.randn(12 * 8 * 8, 20) * 0.05)
        self.head_b = nn.Parameter(torch.randn(20) * 0.1)
        self.fc = nn.Linear(20, 10)

    def forward(self, x):
        x = self.stem(x)
        x = F.max_pool2d(x + self.dw(x), 2)  # residual add, depthwise conv
        x = self.pw(torch.cat([x, torch.sigmoid(x)], dim=1))  # concat
        x = F.max_pool2d(F.relu(x), 2)
        x = torch.relu(torch.flatten(x, 1) @ self.head_w + self.head_b)  # MatMul + Add
        return self.fc(x)


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_round_trip_small_cnn(exporter, tmp_path):
    torch.manual_seed(0)
    model = export_torch(calibrate(SmallNet()), exporter, keep_bn=(exporter == "legacy"))
    module = round_trip(model, tmp_path)
    only_bn_buffers(module)
    # the MatMul + Add head became one linear layer with a bias Parameter, (out, in) = (20, 768)
    shapes = {tuple(p.shape) for p in module.parameters()}
    assert (20, 768) in shapes and (20,) in shapes
    n_params = sum(p.numel() for p in module.parameters())
    initializer_floats = sum(
        int(np.prod(i.dims))
        for i in model.graph.initializer
        if i.data_type == TensorProto.FLOAT and "running" not in i.name
    )
    assert n_params >= initializer_floats - 64  # all weights (BN stats aside) are parameters
    # trains with batch > 1 and BatchNorm in train mode, gradients reach every parameter
    module.train()
    out = module(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in module.parameters())


class KitchenSink(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(8)
        self.prelu = nn.PReLU(8)
        self.ct = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.c2 = nn.Conv2d(4, 8, 3, dilation=2, padding=2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.prelu(self.b1(self.c1(x)))
        a, b = torch.chunk(x, 2, dim=1)  # Split
        x = torch.cat([F.hardswish(a), torch.sigmoid(b) * F.hardsigmoid(b)], 1)
        x = F.pad(x, (1, 0, 1, 0))[:, :, 1:, 1:]  # Pad, Slice
        x = self.ct(x)  # ConvTranspose
        x = F.elu(self.c2(torch.tanh(x))) - 0.5
        x = F.leaky_relu(F.gelu(x) / 2.0, 0.1)
        x = F.relu6(F.avg_pool2d(F.max_pool2d(x, 3, 2, 1), 2, ceil_mode=True))
        g = F.adaptive_max_pool2d(x, 1) + F.adaptive_avg_pool2d(x, 1)  # GlobalMax/AveragePool
        y = x.mean((2, 3)) + g.squeeze(-1).squeeze(-1)  # ReduceMean, Squeeze
        y = self.fc(y.unsqueeze(1)).squeeze(1)  # MatMul on 3-d, Unsqueeze
        return F.softmax(y.transpose(0, 1), dim=0).transpose(0, 1)  # Transpose, Softmax


@pytest.mark.parametrize("opset", [11, 17])
def test_round_trip_many_ops_legacy(opset, tmp_path):
    torch.manual_seed(0)
    model = export_torch(calibrate(KitchenSink()), "legacy", opset=opset, dynamic_batch=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"Slice", "Pad", "ConvTranspose", "PRelu", "Softmax", "GlobalMaxPool", "ReduceMean"} <= ops
    module = round_trip(model, tmp_path)
    only_bn_buffers(module)


def test_round_trip_many_ops_dynamo(tmp_path):
    torch.manual_seed(0)
    model = export_torch(calibrate(KitchenSink()), "dynamo", keep_bn=False)
    round_trip(model, tmp_path)


def test_legacy_dynamic_shape_subgraph_is_folded(tmp_path):
    """x.view(x.size(0), -1) under dynamic axes: Shape/Gather/Unsqueeze/Concat -> Reshape(-1, ...)."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 16 * 16, 10)

        def forward(self, x):
            x = F.max_pool2d(self.conv(x), 2)
            return self.fc(x.view(x.size(0), -1))

    model = export_torch(Net(), "legacy", dynamic_batch=True)
    assert {"Shape", "Gather", "Unsqueeze", "Concat"} <= {n.op_type for n in model.graph.node}
    module = round_trip(model, tmp_path)
    assert not any(getattr(m, "op_type", "") == "Shape" for m in module.ops.values())
    assert module(torch.randn(5, 3, 32, 32)).shape == (5, 10)


def _graph(nodes, inputs, outputs, inits, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _arr(name, *shape, seed=0, scale=0.5):
    return numpy_helper.from_array(
        (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32), name
    )


def test_static_batch_one_reshape_trains_with_larger_batches(tmp_path):
    """The dynamo exporter's Reshape(x, [1, 256]) is read as [-1, 256]: batch 8 runs, per sample."""
    shape = numpy_helper.from_array(np.array([1, 256], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["flat"], name="reshape"),
        helper.make_node("Gemm", ["flat", "fc"], ["logits"], name="fc", transB=1),
    ]
    model = _graph(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [_arr("w", 4, 4, 3, 3), shape, _arr("fc", 10, 256, seed=1, scale=0.05)],
    )
    module = round_trip(model, tmp_path, shape=(1, 4, 8, 8))
    x = torch.randn(8, 4, 8, 8)
    with torch.no_grad():
        batched = module(x)
        single = torch.cat([module(x[i : i + 1]) for i in range(8)])
    assert batched.shape == (8, 10)
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


def test_gemm_attributes_become_parameters():
    """Gemm transA/transB/alpha/beta: the weight and the bias are Parameters, results match."""
    nodes = [
        helper.make_node("Transpose", ["input"], ["t"], name="t", perm=[1, 0]),
        helper.make_node("Gemm", ["t", "B", "C"], ["logits"], name="gemm", transA=1, transB=0, alpha=0.5, beta=2.0),
    ]
    model = _graph(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 5])],
        [_arr("B", 6, 5), _arr("C", 1, 5, seed=2)],
        opset=13,
    )
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    module = convert(model).eval()
    with torch.no_grad():
        assert_close(module(torch.from_numpy(x)).numpy(), run_ort(model, x))
    assert sum(p.numel() for p in module.parameters()) == 6 * 5 + 5
    only_bn_buffers(module)


def test_opset6_clip_attributes():
    nodes = [
        helper.make_node("Clip", ["input"], ["c"], name="clip", min=-0.5, max=0.7),
        helper.make_node("LeakyRelu", ["c"], ["l"], name="lrelu", alpha=0.2),
        helper.make_node("HardSigmoid", ["l"], ["logits"], name="hs", alpha=0.3, beta=0.4),
    ]
    model = _graph(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 6])],
        [],
        opset=6,
    )
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    with torch.no_grad():
        assert_close(convert(model).eval()(torch.from_numpy(x)).numpy(), run_ort(model, x))


def test_padding_pooling_variants_match_onnxruntime():
    """auto_pad SAME_UPPER, asymmetric pads, AveragePool without counting pads, ConvTranspose."""
    nodes = [
        helper.make_node(
            "Conv",
            ["input", "w1", "b1"],
            ["a"],
            name="same",
            auto_pad="SAME_UPPER",
            strides=[2, 2],
            kernel_shape=[3, 3],
        ),
        helper.make_node("Conv", ["a", "w2"], ["b"], name="asym", pads=[0, 1, 2, 1], kernel_shape=[3, 3]),
        helper.make_node("MaxPool", ["b"], ["c"], name="mp", kernel_shape=[2, 2], pads=[1, 1, 0, 0], strides=[2, 2]),
        helper.make_node(
            "AveragePool", ["c"], ["d"], name="ap", kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0
        ),
        helper.make_node(
            "ConvTranspose",
            ["d", "wt", "bt"],
            ["e"],
            name="ct",
            strides=[2, 2],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            output_padding=[1, 1],
        ),
        helper.make_node("Sigmoid", ["e"], ["logits"], name="sig"),
    ]
    model = _graph(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 17, 17])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, 10, 10])],
        [
            _arr("w1", 6, 3, 3, 3),
            _arr("b1", 6, seed=1),
            _arr("w2", 5, 6, 3, 3, seed=2),
            _arr("wt", 5, 4, 3, 3, seed=3),
            _arr("bt", 4, seed=4),
        ],
    )
    x = np.random.default_rng(0).standard_normal((1, 3, 17, 17)).astype(np.float32)
    module = convert(model).eval()
    with torch.no_grad():
        assert_close(module(torch.from_numpy(x)).numpy(), run_ort(model, x))


def test_batchnorm_becomes_trainable_batchnorm():
    from trainers.testing import dropout_model

    model = dropout_model()
    module = convert(model)
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 1 and bns[0].momentum == pytest.approx(0.1) and bns[0].eps == pytest.approx(1e-5)
    drops = [m for m in module.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 1 and drops[0].p == 0.25
    module.train()
    module(torch.randn(4, 3, 8, 8))
    assert float(bns[0].running_mean.abs().sum()) > 0  # statistics move in train mode


def test_unsupported_op_names_node_and_op():
    nodes = [
        helper.make_node("Relu", ["input"], ["r"], name="relu"),
        helper.make_node("Shrink", ["r"], ["logits"], name="weird_norm"),
    ]
    model = _graph(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])],
        [],
    )
    with pytest.raises(UserError, match=r"node 'weird_norm' \(op Shrink\) is not supported by the trainer's converter"):
        convert(model)


def test_export_refuses_to_overwrite_input_and_writes_atomically(tmp_path):
    from trainers.testing import dropout_model

    source = tmp_path / "m.onnx"
    onnx.save(dropout_model(), source)
    module = convert(source)
    with pytest.raises(UserError, match="is the input model"):
        export_onnx(module, None, source, refuse=(source,))
    out = export_onnx(module, None, tmp_path / "out.onnx", metadata={"k": "v"})
    assert [p.key for p in out.metadata_props] == ["k"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
