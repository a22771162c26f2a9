"""The fuzzer's mutations (benchmarks/fuzz.py): MUTATIONS corrupt a seed model of
benchmarks/fuzz_models.py (byte flips, deleted nodes, wrong shapes, dangling inputs, renamed
outputs, truncated initializers, wrong attribute types, dtypes, op types, opsets, duplicate
outputs), and `mutant(case, seed)` gives each fuzz case's file bytes, deterministically."""

from __future__ import annotations

import random

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from benchmarks.fuzz_models import SEEDS

CLEAN_CASE_EVERY = 8  # one case in 8 runs the seed model unmutated: then every verb must succeed

# ---------------------------------------------------------------- mutations


def _serialize(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def m_byte_flips(model, rng):
    data = bytearray(_serialize(model))
    for _ in range(rng.randint(1, 20)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def m_truncate_file(model, rng):
    data = _serialize(model)
    return data[: rng.randrange(1, len(data))]


def m_delete_node(model, rng):
    if model.graph.node:
        del model.graph.node[rng.randrange(len(model.graph.node))]
    return model


def m_wrong_shape(model, rng):
    targets = list(model.graph.input) + list(model.graph.output)
    vi = helper.make_tensor_value_info("r0", TensorProto.FLOAT, [1, rng.randint(1, 64), 3])
    model.graph.value_info.append(vi)
    value = rng.choice(targets)
    dims = value.type.tensor_type.shape.dim
    if dims:
        choice = rng.random()
        if choice < 0.3:
            dims[rng.randrange(len(dims))].dim_value = rng.choice([0, 1, 2, 5, 999])
        elif choice < 0.6:
            del dims[rng.randrange(len(dims))]
        else:
            dims.add().dim_value = rng.randint(1, 4)
    return model


def m_dangling_input(model, rng):
    node = rng.choice(list(model.graph.node))
    if node.input:
        node.input[rng.randrange(len(node.input))] = f"ghost_{rng.randrange(1000)}"
    else:
        node.input.append("ghost")
    return model


def m_rename_output(model, rng):
    if rng.random() < 0.5:
        model.graph.output[0].name = "renamed_output"
    else:
        node = rng.choice(list(model.graph.node))
        node.output[0] = f"renamed_{rng.randrange(1000)}"
    return model


def _weights(model) -> list:
    """The weight tensors to corrupt: initializers, or Constant nodes' values where there are none."""
    inits = list(model.graph.initializer)
    return inits or [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]


def m_truncate_initializer(model, rng):
    init = rng.choice(_weights(model))
    try:
        raw = numpy_helper.to_array(init).tobytes()
    except ValueError:  # already corrupted by an earlier step of this case
        raw = init.raw_data
    init.ClearField("float_data")
    init.ClearField("int32_data")
    init.raw_data = raw[: rng.randrange(0, max(1, len(raw)))]
    if rng.random() < 0.3:
        init.dims[0] = init.dims[0] + rng.randint(1, 5) if init.dims else 1
    return model


def m_wrong_attribute(model, rng):
    convs = [n for n in model.graph.node if n.attribute] or list(model.graph.node)
    node = rng.choice(convs)
    choice = rng.random()
    if node.attribute and choice < 0.5:
        attr = rng.choice(list(node.attribute))
        name = attr.name
        node.attribute.remove(attr)
        bad = rng.choice(
            [
                helper.make_attribute(name, "oops"),
                helper.make_attribute(name, 3.5),
                helper.make_attribute(name, [0, -1]),
                helper.make_attribute(name, [7, 7, 7, 7, 7, 7]),
            ]
        )
        node.attribute.append(bad)
    elif choice < 0.75:
        node.attribute.append(helper.make_attribute("group", rng.choice([0, 2, 3, 16, -1])))
    else:
        node.attribute.append(helper.make_attribute("strides", [rng.randint(0, 9)] * rng.randint(1, 3)))
    return model


def m_wrong_dtype(model, rng):
    init = rng.choice(_weights(model))
    try:
        arr = numpy_helper.to_array(init)
    except ValueError:  # already corrupted by an earlier step of this case
        return model
    kind = rng.choice([np.int8, np.int64, np.float16, np.float64, np.uint8])
    init.CopyFrom(numpy_helper.from_array(arr.astype(kind), init.name))
    return model


def m_op_type(model, rng):
    node = rng.choice(list(model.graph.node))
    node.op_type = rng.choice(["Conv", "Relu", "Add", "MatMul", "Reshape", "Bogus", "Concat", "Transpose"])
    return model


def m_opset(model, rng):
    model.opset_import[0].version = rng.choice([1, 6, 9, 30, 99])
    return model


def m_duplicate_output(model, rng):
    nodes = list(model.graph.node)
    if len(nodes) > 1:
        a, b = rng.sample(nodes, 2)
        b.output[0] = a.output[0]
    return model


MUTATIONS = [
    m_byte_flips,
    m_truncate_file,
    m_delete_node,
    m_wrong_shape,
    m_dangling_input,
    m_rename_output,
    m_truncate_initializer,
    m_wrong_attribute,
    m_wrong_dtype,
    m_op_type,
    m_opset,
    m_duplicate_output,
]


def mutant(case: int, seed: int = 0) -> tuple[str, bytes]:
    """(description, file bytes) of fuzz case `case`: deterministic in (case, seed)."""
    rng = random.Random(seed * 1_000_003 + case)
    base_name = rng.choice(sorted(SEEDS))
    model = SEEDS[base_name]()
    steps = []
    result = model
    if case % CLEAN_CASE_EVERY == CLEAN_CASE_EVERY - 1:
        return f"{base_name}:clean", model.SerializeToString()
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        mutation = rng.choice(MUTATIONS)
        steps.append(mutation.__name__[2:])
        if isinstance(result, bytes):  # a byte-level mutation already happened: flip more bytes
            data = bytearray(result)
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            result = bytes(data)
            continue
        result = mutation(result, rng)
    if isinstance(result, onnx.ModelProto):
        result = result.SerializeToString()
    return f"{base_name}:{'+'.join(steps)}", result
