"""Correctness oracles: the zero-mask model and output comparison with onnxruntime.

Pruning channels must give exactly the output of the original model with those channels
zeroed: producer weights and biases, BatchNorm scale and shift, and constant operands added to
or multiplied with them. Consumers' weights stay (they multiply zeros), and so do divisors.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .groups import Dependencies, storage_key

ZEROED_ROLES = ("producer", "operand")


def zero_mask(deps: Dependencies, keep: dict) -> onnx.ModelProto:
    """A copy of the original model with the removed channels zeroed instead of removed."""
    flags = deps.keep_flags({int(g): np.asarray(k) for g, k in keep.items()})
    model = onnx.ModelProto()
    model.CopyFrom(deps.mg.model)
    index = {init.name: i for i, init in enumerate(model.graph.initializer)}
    constant_nodes = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant" and n.output}
    values: dict[tuple, np.ndarray] = {}
    for member in deps.members:
        if member.kind != "slice":
            continue
        role_zeroed = member.role in ZEROED_ROLES or (member.role == "norm" and _is_scale_or_shift(deps, member))
        if not role_zeroed:
            continue
        mask = deps.mask(member.layout, flags)
        if mask.all():
            continue
        source = storage_key(member.tensor)
        value = values.get(source)
        if value is None:
            value = np.array(deps.mg.const_value(member.tensor), copy=True)
        shape = [1] * value.ndim
        shape[member.axis] = -1
        values[source] = value * mask.reshape(shape).astype(value.dtype)
    for (kind, name), value in values.items():
        tensor = numpy_helper.from_array(value, name)
        if kind == "initializer":
            model.graph.initializer[index[name]].CopyFrom(tensor)
        else:  # a Constant node, keyed by its output tensor (its name may be empty)
            attr = next(a for a in constant_nodes[name].attribute if a.name == "value")
            tensor.name = attr.t.name
            attr.t.CopyFrom(tensor)
    return model


def _is_scale_or_shift(deps: Dependencies, member) -> bool:
    return member.node.inputs.index(member.tensor) in (1, 2)


def run(model: onnx.ModelProto, feeds: dict | None = None, seed: int = 0) -> list[np.ndarray]:
    """onnxruntime outputs on random inputs (seeded, never zeros)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    if feeds is None:
        feeds = random_feeds(session, seed)
    return session.run(None, feeds)


def random_feeds(session, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in value.shape]
        dtype = np.float16 if "float16" in value.type else np.float32
        feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def max_relative_error(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(float(np.abs(a).max()), float(np.abs(b).max()), 1e-12)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() / scale)
