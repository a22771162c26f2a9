"""One line for a runtime that rejects a graph: the runtime, the node it names, the reason.

Shared by the runtimes of interop.py and interop_ncnn.py (its own module so that neither imports the other
for it)."""

from __future__ import annotations

import re

import onnx

from onnxprune.errors import UserError


def rejection(runtime: str, model: onnx.ModelProto, exc: BaseException, stage: str) -> UserError:
    """`exc` from `runtime` as one line: the runtime, the node it names (matched against the
    graph's node names, then op types), and the first line of its message."""
    message = str(exc).strip()
    nodes = sorted((n for n in model.graph.node if n.name), key=lambda n: -len(n.name))
    node = next((n for n in nodes if n.name in message), None)
    if node is None:
        node = next((n for n in model.graph.node if re.search(rf"\b{re.escape(n.op_type)}\b", message)), None)
    where = f"node {node.name or node.output[0]!r} ({node.op_type})" if node is not None else "the graph"
    # runtimes wrap the reason in source locations ("Exception from src/...", "Check 'x' failed at ...")
    lines = [
        line.strip(" -")
        for line in message.splitlines()
        if line.strip() and not re.match(r"\s*(Exception from|Check '.*' failed at) \S+:\d+:?\s*$", line)
    ]
    keys = [k for k in ((node.name, node.op_type) if node is not None else ()) if k]
    detail = next((line for line in lines if any(k in line for k in keys)), lines[0] if lines else type(exc).__name__)
    return UserError(f"{runtime} rejects {where} while {stage}: {detail[:300]}")
