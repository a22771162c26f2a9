"""Constants read by several nodes: edit them in place when every reader wants the same edit, else
give each differing reader its own copy.

Sharing in an inference graph is storage, not meaning: torch's exporter de-duplicates identical
initializers (an untrained network's zero biases become one tensor read through Identity nodes),
and nothing ties those layers together. So readers of one constant are analysed independently, and
here, when they would be cut differently, each reader that changes gets its own cut copy while
unchanged readers (and readers we cannot see into, such as subgraphs) keep the original.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.analysis.channels import Member, storage_key, storage_root
from onnxprune.read import lazy_weights

# transform(original value, {axis: keep mask}, fill) -> the value one reader should see; `fill`: what
# a zeroed position holds (an integer weight's zero point, broadcast to the value), None for 0
Transform = Callable[[np.ndarray, dict, "np.ndarray | None"], np.ndarray]


def reader_sites(root: gs.Tensor, graph_outputs: set[str]) -> list[tuple]:
    """Every (node, input position) that reads `root`, directly or through Identity nodes.

    A graph output on the way is a reader too (("output", name), position -1): it must keep its value.
    """
    sites, stack, seen = [], [root], set()
    while stack:
        tensor = stack.pop()
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        if tensor.name in graph_outputs:
            sites.append((("output", tensor.name), -1))
        for node in tensor.outputs:
            if node.op == "Identity":
                stack.extend(node.outputs)
                continue
            sites.extend((node, i) for i, t in enumerate(node.inputs) if t is tensor)
    return sites


@dataclass
class StorageEdit:
    """The edits that the members reading one constant ask for, reader by reader."""

    root: gs.Tensor
    cuts: dict = field(default_factory=dict)  # site id -> ((node, position), {axis: mask}, {"shape": expanded})

    def add(self, member: Member, mask: np.ndarray) -> None:
        position = member.position
        site = (member.node, position)
        entry = self.cuts.setdefault((id(member.node), position), (site, {}, {}))
        axes = entry[1]
        axes[member.axis] = mask if member.axis not in axes else axes[member.axis] & mask
        if isinstance(member.extra, tuple) and member.extra[0] == "expand":  # one value per channel first
            entry[2]["shape"] = member.extra[1]
        if isinstance(member.extra, tuple) and member.extra[0] == "zero_point":  # quantized: zero is the zp
            entry[2]["fill"] = member.extra[1]

    def value(self, original: np.ndarray, sid, transform: Transform) -> np.ndarray:
        """What reader `sid` should read: the original, expanded if asked, then transformed."""
        _, axes, expand = self.cuts[sid]
        if "shape" in expand:
            original = np.broadcast_to(
                original.reshape([1] * (len(expand["shape"]) - original.ndim) + list(original.shape)), expand["shape"]
            )
        fill = expand.get("fill")
        return transform(original, axes, None if fill is None else np.broadcast_to(fill, original.shape))

    def variants(self, graph_outputs: set[str]) -> dict:
        """Site id -> what that reader wants (empty tuple: the original value)."""
        wanted = {(id(node), position): () for node, position in reader_sites(self.root, graph_outputs)}
        for sid, (_, axes, expand) in self.cuts.items():
            cuts = tuple(sorted((axis, mask.tobytes()) for axis, mask in axes.items() if not mask.all()))
            wanted[sid] = cuts + ((expand.get("shape"),) if cuts and "shape" in expand else ())
        return wanted


def group_by_storage(entries) -> dict[tuple, StorageEdit]:
    """(member, mask) pairs of "slice" members, gathered per constant they read."""
    edits: dict[tuple, StorageEdit] = {}
    for member, mask in entries:
        key = storage_key(member.tensor)
        if key not in edits:
            edits[key] = StorageEdit(storage_root(member.tensor))
        edits[key].add(member, mask)
    return edits


def apply_storage_edits(editor, edits: dict[tuple, StorageEdit], transform: Transform, label) -> list[dict]:
    """Write each constant's edits through `editor` (surgery's _Editor); notes on the copies made.

    Readers that want the same edit share one copy; when no reader needs the original, the edit
    most readers want is made in place.
    """
    outputs = {t.name for t in editor.mg.graph.outputs}
    notes = []
    for key, edit in edits.items():
        by_wish: dict[tuple, list] = {}
        for sid, wanted in edit.variants(outputs).items():
            by_wish.setdefault(wanted, []).append(sid)
        if set(by_wish) <= {()}:
            continue
        original = editor.mg.const_value(edit.root)
        # a folded constant (Reshape(Constant) & co.) has no storage of its own: readers get copies
        in_place = None if () in by_wish or key[0] == "folded" else max(by_wish, key=lambda w: len(by_wish[w]))
        if in_place is not None:
            editor.new_values[key] = edit.value(original, by_wish[in_place][0], transform)
            if len(by_wish) == 1:
                continue
        copied = []
        for wanted, sids in by_wish.items():
            if wanted in ((), in_place):
                continue
            name = editor.add_initializer(edit.value(original, sids[0], transform), edit.root.name)
            for sid in sids:
                node, position = edit.cuts[sid][0]
                editor.point(node, position, name)
                copied.append(label(node))
        if len(by_wish) == 1:  # one reader's cut of a folded constant: not a shared copy
            continue
        notes.append(
            {
                "constant": edit.root.name,
                "readers": sum(map(len, by_wish.values())),
                "versions": len(by_wish),
                "copied_for": copied,
            }
        )
    return notes


def cut(value: np.ndarray, axes: dict, fill: np.ndarray | None = None) -> np.ndarray:
    cuts = {axis: mask for axis, mask in axes.items() if not mask.all()}
    from_file = lazy_weights.cut_from_file(value, cuts) if cuts else None
    if from_file is not None:  # a weight left in its file: read and cut a block at a time
        return from_file
    for axis, mask in axes.items():
        if not mask.all():
            value = np.compress(mask, value, axis=axis)
    return value


def zero(value: np.ndarray, axes: dict, fill: np.ndarray | None = None) -> np.ndarray:
    value = np.array(value, copy=True)
    for axis, mask in axes.items():
        shape = [1] * value.ndim
        shape[axis] = -1
        kept = mask.reshape(shape)
        value = np.where(kept, value, fill if fill is not None else 0).astype(value.dtype)
    return value
