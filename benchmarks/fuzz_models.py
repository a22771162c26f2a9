"""The small valid models the fuzzer (benchmarks/fuzz.py) mutates, also used by the tests: a
Conv chain, a BN/residual net, the issue-16 shapes of real exports (symbolic N/H/W, rich
markup in node names, unnamed nodes with Constant-node weights, a storage-shared bias) and the
ONNX Model Zoo's IR 3 layout (initializers listed as graph inputs, issue 25)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# ---------------------------------------------------------------- small valid models


def conv_net(
    opset: int = 17,
    channels: tuple[int, ...] = (8, 16),
    *,
    dtype: int = TensorProto.FLOAT,
    batch: int | str = 1,
    size: int = 8,
    seed: int = 0,
    ir_version: int | None = None,
) -> onnx.ModelProto:
    """Conv-BN?-Relu chain, global pool, flatten, Gemm: a minimal prunable CNN."""
    rng = np.random.default_rng(seed)
    npdt = helper.tensor_dtype_to_np_dtype(dtype)
    nodes, inits = [], []
    prev, cin = "input", 3
    for i, cout in enumerate(channels):
        w = numpy_helper.from_array((rng.standard_normal((cout, cin, 3, 3)) * 0.1).astype(npdt), f"conv{i}.w")
        b = numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(npdt), f"conv{i}.b")
        inits += [w, b]
        nodes.append(
            helper.make_node(
                "Conv", [prev, w.name, b.name], [f"c{i}"], name=f"conv{i}", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        prev, cin = f"r{i}", cout
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1))
    fw = numpy_helper.from_array((rng.standard_normal((10, cin)) * 0.1).astype(npdt), "fc.w")
    fb = numpy_helper.from_array(np.zeros(10, npdt), "fc.b")
    inits += [fw, fb]
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["output"], name="fc", transB=1))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", dtype, [batch, 3, size, size])],
        [helper.make_tensor_value_info("output", dtype, [batch, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version or min(model.ir_version, _max_ir(opset))
    onnx.checker.check_model(model)
    return model


def _max_ir(opset: int) -> int:
    # onnxruntime wheels cap the IR version they read; keep to the IR of the opset's release
    table = {11: 6, 12: 7, 13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}
    return table.get(opset, 8)


def bn_net(opset: int = 17) -> onnx.ModelProto:
    """Conv-BN-Relu x2 with a residual Add: a coupled group."""
    rng = np.random.default_rng(1)
    inits = []

    def t(name, arr):
        inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    nodes = [
        helper.make_node(
            "Conv", ["input", t("w0", rng.standard_normal((8, 3, 3, 3)) * 0.1)], ["c0"], name="conv0", pads=[1, 1, 1, 1]
        ),
        helper.make_node(
            "BatchNormalization",
            ["c0", t("g0", np.ones(8)), t("b0", np.zeros(8)), t("m0", np.zeros(8)), t("v0", np.ones(8))],
            ["n0"],
            name="bn0",
        ),
        helper.make_node("Relu", ["n0"], ["r0"], name="relu0"),
        helper.make_node(
            "Conv", ["r0", t("w1", rng.standard_normal((8, 8, 3, 3)) * 0.1)], ["c1"], name="conv1", pads=[1, 1, 1, 1]
        ),
        helper.make_node("Add", ["c1", "r0"], ["a1"], name="add1"),
        helper.make_node("Conv", ["a1", t("w2", rng.standard_normal((4, 8, 1, 1)) * 0.1)], ["output"], name="conv2"),
    ]
    graph = helper.make_graph(
        nodes,
        "bn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def symbolic_net(dims: tuple = ("N", 3, "H", "W")) -> onnx.ModelProto:
    """conv_net with symbolic input dims (batch, height, width): needs --input-shape everywhere."""
    model = conv_net()
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, dims):
        if isinstance(value, str):
            dim.dim_param = value
        else:
            dim.dim_value = value
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = str(dims[0])
    onnx.checker.check_model(model, full_check=True)
    return model


def markup_net() -> onnx.ModelProto:
    """conv_net whose node names hold rich markup: tables must print them as given."""
    model = conv_net()
    for node in model.graph.node:
        node.name = f"block[red]{node.name}[/red]/[bold]x"
    return model


def unnamed_net() -> onnx.ModelProto:
    """conv_net with every node name empty and the weights in unnamed Constant nodes, as
    paddle2onnx writes them: nothing may be keyed by node name."""
    model = conv_net()
    graph = model.graph
    constants = [helper.make_node("Constant", [], [init.name], value=init) for init in graph.initializer]
    del graph.initializer[:]
    nodes = constants + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    for node in graph.node:
        node.name = ""
    onnx.checker.check_model(model, full_check=True)
    return model


def shared_net() -> onnx.ModelProto:
    """Two convs of one width read one bias through Identity nodes (torch de-duplicates equal
    initializers): storage sharing, not a tie."""
    model = conv_net(channels=(8, 8))
    graph = model.graph
    bias = next(i for i in graph.initializer if i.name == "conv0.b")
    bias.CopyFrom(numpy_helper.from_array(np.zeros(8, np.float32), "conv0.b"))
    graph.node.insert(0, helper.make_node("Identity", ["conv0.b"], ["shared.b0"], name="id0"))
    graph.node.insert(1, helper.make_node("Identity", ["conv0.b"], ["shared.b1"], name="id1"))
    for node in graph.node:
        if node.name == "conv0":
            node.input[2] = "shared.b0"
        if node.name == "conv1":
            node.input[2] = "shared.b1"
    kept = [i for i in graph.initializer if i.name != "conv1.b"]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model, full_check=True)
    return model


def ir3_net() -> onnx.ModelProto:
    """The ONNX Model Zoo's classic layout (onnx-caffe2 exports): IR 3, opset 9, every initializer
    also a graph input, and the head's flatten a Reshape by a shape initializer (`OC2_DUMMY_1`),
    which pruning rewires to a new initializer that IR 3 must list as an input (issue 25)."""
    model = conv_net(opset=9)
    graph = model.graph
    shape = numpy_helper.from_array(np.array([1, 16], np.int64), "OC2_DUMMY_1")
    graph.initializer.append(shape)
    for node in graph.node:
        if node.op_type == "Flatten":
            node.op_type, node.input[:] = "Reshape", ["gap", shape.name]
            del node.attribute[:]
    graph.input.extend(helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in graph.initializer)
    model.ir_version = 3
    onnx.checker.check_model(model, full_check=True)
    return model


SEEDS = {
    "conv": lambda: conv_net(),
    "conv37": lambda: conv_net(channels=(37, 21)),
    "bn": bn_net,
    "symbolic": symbolic_net,
    "markup": markup_net,
    "unnamed": unnamed_net,
    "shared": shared_net,
    "ir3": ir3_net,
}
