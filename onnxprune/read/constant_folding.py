"""Constants that reach their reader through ops that only reshape or retype them.

paddle2onnx feeds a conv's bias to its Add as `Reshape(Constant bias, Constant shape)`; other
exporters wrap weights in Unsqueeze, Cast or Transpose. Such a tensor is as constant as an
initializer, so the analysis treats it as one (`ModelGraph.is_const`/`const_value`), and surgery,
when it must cut it, gives its readers a cut initializer and drops the chain that no longer feeds
anything (`surgery.drop_dead_constants`). Chains that are not cut stay as the user wrote them.

The values come from onnx's reference evaluator, one node at a time at the model's opset, so
every opset's form of these ops (attribute or input axes, Reshape's 0 and -1) is read as ONNX
defines it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import helper


class ConstantSource(Protocol):
    """What folding reads from the graph (graph.ModelGraph is one; this module does not import it,
    since ModelGraph asks this module what is foldable)."""

    proto: onnx.ModelProto
    opset: int

    def const_value(self, tensor: gs.Tensor) -> np.ndarray | None: ...

    def fold_small(self, tensor: gs.Tensor) -> np.ndarray | None: ...

    def node_index(self, node: gs.Node) -> int: ...


# ops whose output is a constant when their inputs are: they move or retype values, never mix them
# (Identity is followed by ModelGraph itself: it keeps the storage, so edits go to its source)
FOLDABLE_OPS = frozenset({"Reshape", "Unsqueeze", "Squeeze", "Flatten", "Transpose", "Cast"})
# what surgery may remove once a cut leaves it unread (side-effect free, constant-only)
REMOVABLE_WHEN_UNREAD = FOLDABLE_OPS | {"Constant", "Identity"}


def is_foldable(node: gs.Node | None) -> bool:
    return node is not None and node.op in FOLDABLE_OPS and (node.domain or "") in ("", "ai.onnx")


def folded_value(mg: ConstantSource, tensor: gs.Tensor) -> np.ndarray | None:
    """The value of `tensor` when a foldable op computes it from constants only; else None."""
    node = tensor.inputs[0] if tensor.inputs else None
    if not is_foldable(node) or not node.inputs or len(node.outputs) != 1:
        return None
    data = mg.const_value(node.inputs[0])
    if data is None:
        return None
    # shapes and axes may themselves be computed from constants (Shape/Gather/Concat arithmetic)
    operands = [data] + [mg.fold_small(t) if t.name else None for t in node.inputs[1:]]
    if any(value is None for value, t in zip(operands, node.inputs) if t.name):
        return None
    return _evaluate(mg, node, operands)


def _evaluate(mg: ConstantSource, node: gs.Node, operands: list) -> np.ndarray | None:
    from onnx.reference import ReferenceEvaluator

    original = mg.proto.graph.node[mg.node_index(node)]  # its attributes as the file holds them
    if original.op_type != node.op:  # the proto was edited since the analysis: not a value to trust
        return None
    names = [f"in{i}" if t.name else "" for i, t in enumerate(node.inputs)]
    single = helper.make_node(original.op_type, names, ["out"])
    single.attribute.extend(original.attribute)
    feeds = {name: np.asarray(value) for name, value in zip(names, operands) if name}
    graph = helper.make_graph(
        [single],
        "fold",
        [helper.make_empty_tensor_value_info(n) for n in feeds],
        [helper.make_empty_tensor_value_info("out")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", mg.opset)])
    try:
        (value,) = ReferenceEvaluator(model).run(None, feeds)
    except Exception:  # a malformed node (bad shape, unknown Cast type): not a constant we can use
        return None
    return np.asarray(value)
