"""How messages and reports name a node: its name, or "op#index" when it has none.

paddle2onnx and others leave nodes unnamed; their names are kept as given (empty) in every
written graph, and the index (the node's position in the graph) tells them apart in reports.
"""

from __future__ import annotations


def display_name(node, index: int) -> str:
    """A node's name when it has one, else "op#index" (e.g. "Conv#12"); works for gs and proto nodes."""
    name = getattr(node, "name", "")
    if name:
        return name
    return f"{getattr(node, 'op', None) or getattr(node, 'op_type', '?')}#{index}"
