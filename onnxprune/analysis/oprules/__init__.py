"""THE registry: for each op type, how channels flow through it.

A rule gets the tracer and the node. It reads its inputs' layouts, sets its outputs' layouts,
couples or blocks roots, and registers the constants and attributes that surgery must change.
Adding an op means adding one function, decorated with `@rule("OpType", ...)`, to the module of
its kind: `channelwise.py`, `reshaping.py`, `layers.py`, `quantized.py` or `qoperator.py` (an op of
another domain is registered as "domain.OpType"). This file holds the registry itself.
An op with no rule blocks every channel that reaches it: the graph stays correct.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.analysis.channels import ChannelTracer as Tracer  # noqa: F401
from onnxprune.analysis.channels import Layout
from onnxprune.read.graph import node_reads

Rule = Callable[[Tracer, gs.Node], None]
RULES: dict[str, Rule] = {}


def rule(*op_types: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for op in op_types:
            RULES[op] = fn
        return fn

    return register


def apply_rule(t: Tracer, node: gs.Node) -> None:
    if any(isinstance(v, gs.Graph) for v in node.attrs.values()):
        # If/Loop/Scan bodies read outer tensors implicitly, by name: freeze all of them
        reason = f"{t.where(node)}: read inside a subgraph"
        proto = t.mg.proto.graph.node[t.mg.node_index(node)]  # gs keeps the proto's node order
        for name in dict.fromkeys(node_reads(proto)):
            t.block(t.layouts.get(name), reason)
        return
    if node.op not in ("Transpose", "Reshape") and any(t.span(i) for i in node.inputs):
        return barrier(t, node, f"{t.where(node)}: channels spread over several axes")
    domain = node.domain or ""
    fn = RULES.get(node.op if domain in ("", "ai.onnx") else f"{domain}.{node.op}")
    if fn is None:
        barrier(t, node, f"{t.where(node)}: no channel rule for this op")
        return
    fn(t, node)


def barrier(t: Tracer, node: gs.Node, reason: str) -> None:
    """Channels entering the node stay as they are; its outputs are opaque."""
    for tensor in node.inputs:
        t.block(t.layout(tensor), reason)


def _data(node: gs.Node) -> gs.Tensor:
    return node.inputs[0]


def _pass(t: Tracer, node: gs.Node, layout: Layout, axis: int, outputs: int = 1) -> None:
    for out in node.outputs[:outputs]:
        t.set(out, layout, axis)


def _int_list(t: Tracer, node: gs.Node, attr: str, input_index: int) -> list[int] | None:
    """An int-list parameter given as attribute (old opsets) or constant input (new ones)."""
    if attr in node.attrs:
        return [int(v) for v in np.atleast_1d(node.attrs[attr])]
    if len(node.inputs) > input_index and node.inputs[input_index].name:
        value = t.mg.const_value(node.inputs[input_index])
        return None if value is None else [int(v) for v in np.atleast_1d(value)]
    return []


def _rank(t: Tracer, tensor: gs.Tensor) -> int | None:
    shape = t.mg.shape(tensor)
    return None if shape is None else len(shape)


# Importing the rule modules fills RULES; a new op goes into the module of its kind.
from onnxprune.analysis.oprules import channelwise, layers, qoperator, quantized, reshaping  # noqa: E402,F401
