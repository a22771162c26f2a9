"""Apply keep-sets to a model: slice weights, fix consumers, rewrite shape constants.

The analysis runs on an onnx-graphsurgeon graph; the edits are written straight into a copy of
the ModelProto, touching only the tensors that change. (gs.export_onnx re-serialises every
weight: 0.7 s for a 100 MB model, more than the whole analysis.)
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.analysis.groups import Dependencies, Member, node_label
from onnxprune.analysis.shared_constants import apply_storage_edits, cut, group_by_storage
from onnxprune.errors import InternalError, UserError
from onnxprune.read import lazy_weights
from onnxprune.read.constant_folding import REMOVABLE_WHEN_UNREAD
from onnxprune.read.graph import ModelGraph, constant_nodes, node_reads, set_constant_node_value
from onnxprune.read.initializer_inputs import initializer_inputs, sync_initializer_inputs
from onnxprune.read.shapes import infer_shapes, skeleton


class _Editor:
    """Edits on a ModelProto, addressed by gs objects of the analysed graph."""

    def __init__(self, deps: Dependencies, model: onnx.ModelProto):
        self.mg: ModelGraph = deps.mg
        self.model = model
        self.graph = model.graph
        self.initializers = {init.name: i for i, init in enumerate(self.graph.initializer)}
        # gs nodes by identity -> their proto (the analysed graph keeps the proto's node order)
        self.node_index = {id(n): i for i, n in enumerate(self.mg.nodes)}
        self.new_values: dict[tuple, np.ndarray] = {}  # storage_key -> the constant's new value
        self.fresh = 0
        self.unhooked: list[str] = []  # tensor names that rewire stopped some input from reading

    def proto_node(self, node) -> onnx.NodeProto:
        return self.graph.node[self.node_index[id(node)]]

    def hint(self, node) -> str:
        """A readable stem for new tensor names: the node's name, or Op_index when it has none."""
        return node.name or f"{node.op}_{self.node_index[id(node)]}"

    def rewire(self, node, input_index: int, value: np.ndarray, hint: str) -> None:
        """Give one node its own new constant (shared shape constants must not change for others)."""
        self.point(node, input_index, self.add_initializer(value, hint))

    def add_initializer(self, value: np.ndarray, hint: str) -> str:
        self.fresh += 1
        name = f"{hint}__pruned_{self.fresh}"
        while name in self.initializers:
            name += "_"
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        self.initializers[name] = len(self.graph.initializer) - 1
        return name

    def point(self, node, input_index: int, name: str) -> None:
        """Make input `input_index` of `node` read tensor `name`."""
        proto = self.proto_node(node)
        while len(proto.input) <= input_index:
            proto.input.append("")
        self.unhooked.append(proto.input[input_index])
        proto.input[input_index] = name

    def set_attr(self, node, attr: str, value) -> None:
        proto = self.proto_node(node)
        for a in proto.attribute:
            if a.name == attr:
                proto.attribute.remove(a)
                break
        proto.attribute.append(helper.make_attribute(attr, value))

    def flush(self) -> None:
        if any(kind == "constant_node" for kind, _ in self.new_values):
            self.constant_nodes = constant_nodes(self.model)
        while self.new_values:  # each array freed once in the proto: one model's worth of weights alive, not two
            (kind, name), value = self.new_values.popitem()
            if kind == "initializer" and value.dtype.byteorder in "=|" and value.dtype != object:
                # one copy of the bytes, straight into the proto (from_array + CopyFrom makes two)
                init = self.graph.initializer[self.initializers[name]]
                for field in (
                    "float_data",
                    "int64_data",
                    "int32_data",
                    "double_data",
                    "external_data",
                    "data_location",
                ):
                    init.ClearField(field)  # external: a weight left in the input file (lazy_weights)
                del init.dims[:]
                init.dims.extend(value.shape)
                data = np.ascontiguousarray(value).tobytes()
                del value  # the array goes before protobuf copies the bytes in: two copies alive, not three
                init.raw_data = data
                del data
                continue
            if kind == "initializer":
                tensor = numpy_helper.from_array(np.ascontiguousarray(value), name)
                self.graph.initializer[self.initializers[name]].CopyFrom(tensor)
            else:  # name: the Constant node's output tensor (node names may be empty)
                set_constant_node_value(self.constant_nodes[name], value)


def _apply(editor: _Editor, member: Member, mask: np.ndarray, deps: Dependencies, flags: np.ndarray) -> None:
    kept = int(mask.sum())
    if member.kind == "group_attr":
        editor.set_attr(member.node, "group", kept)
    elif member.kind == "dim":
        value = np.array(editor.mg.const_value(member.tensor), copy=True)
        value[member.axis] = kept // (member.extra or 1)  # extra: rows the channels are split into
        editor.rewire(member.node, member.node.inputs.index(member.tensor), value, member.tensor.name)
    elif member.kind == "split":
        sizes = np.array([int(deps.mask(part, flags).sum()) for part in member.extra], dtype=np.int64)
        node = member.node
        if editor.mg.opset >= 13:
            if "num_outputs" in node.attrs:
                editor.set_attr(member.node, "num_outputs", len(sizes))
                proto = editor.proto_node(member.node)
                proto.attribute.remove(next(a for a in proto.attribute if a.name == "num_outputs"))
            editor.rewire(member.node, 1, sizes, f"{editor.hint(node)}_split")
        else:
            editor.set_attr(member.node, "split", [int(s) for s in sizes])
    elif member.kind == "slice_bounds":
        start, stop = member.extra
        new_start = int(mask[:start].sum())
        new_stop = new_start + int(mask[start:stop].sum())
        node = member.node
        for position, attr, value in ((1, "starts", new_start), (2, "ends", new_stop)):
            if attr in node.attrs:
                values = list(node.attrs[attr])
                values[member.axis] = value
                editor.set_attr(member.node, attr, values)
            else:
                values = np.array(editor.mg.const_value(node.inputs[position]), copy=True)
                values[member.axis] = value
                editor.rewire(member.node, position, values, f"{editor.hint(node)}_{attr}")


def validate_keep(deps: Dependencies, keep: Mapping[int, object]) -> dict[int, np.ndarray]:
    """Check a {group id: kept channel indices} map against the analysis."""
    clean: dict[int, np.ndarray] = {}
    for gid, kept in keep.items():
        if not 0 <= int(gid) < len(deps.groups):
            raise UserError(f"group {gid}: no such group (the model has {len(deps.groups)})")
        group = deps.groups[int(gid)]
        kept = np.unique(np.asarray(kept, dtype=np.int64))
        if len(kept) == group.size:
            continue
        if not group.prunable:
            raise UserError(f"group {gid} ({', '.join(group.producers)}) is not prunable: {group.reasons[0]}")
        if len(kept) == 0 or kept[0] < 0 or kept[-1] >= group.size:
            raise UserError(f"group {gid}: kept indices must be a non-empty subset of 0..{group.size - 1}")
        clean[int(gid)] = kept
    return clean


def _cuts(deps: Dependencies):
    """(node, layout) for every channel range cut out of a wider layout (Split outputs, Slice)."""
    for member in deps.members:
        if member.kind == "split":
            yield from ((member.label, part) for part in member.extra)
        elif member.kind == "slice_bounds":
            yield member.label, member.layout.cut(*member.extra)


def empty_cuts(deps: Dependencies, keep: Mapping[int, object]) -> list[tuple[str, object]]:
    """Cuts (Split outputs, Slice results) that `keep` would leave with no channel at all.

    Every group keeps at least one channel, but a Split/Slice output is a part of a layout: a keep
    set can remove all of its channels, and a zero-channel tensor cannot feed a Conv or Gemm.
    """
    flags = deps.keep_flags({int(g): np.asarray(k) for g, k in keep.items()})
    return [(node, layout) for node, layout in _cuts(deps) if len(layout) and not deps.mask(layout, flags).any()]


def fill_empty_cuts(deps: Dependencies, keep: Mapping[int, object]) -> dict[int, np.ndarray]:
    """`keep` plus, for each cut it would empty, the cut's first channel."""
    keep = {int(g): np.unique(np.asarray(k, dtype=np.int64)) for g, k in keep.items()}
    for _ in range(len(deps.members) + 1):
        empty = empty_cuts(deps, keep)
        if not empty:
            break
        first = deps.ids(empty[0][1])[0]
        gid = int(deps.group_of_channel[first])
        if gid in keep:
            keep[gid] = np.union1d(keep[gid], [int(deps.slot_of_channel[first])])
    return keep


def prune_channels(
    deps: Dependencies,
    keep: Mapping[int, object],
    *,
    check: bool = True,
    inplace: bool = False,
    notes: list | None = None,
    materialize: bool = True,
) -> onnx.ModelProto:
    """A new model in which each group keeps only the given channel indices.

    `inplace=True` edits the analysed model itself (no 100 MB copy): for callers that loaded it.
    `notes`, if given, receives one entry per shared constant that readers now each hold a copy of.
    `materialize=False` leaves the weights surgery did not cut in the input file (a model loaded
    from a path keeps them there, lazy_weights): for callers that replace them (re-initialisation)
    or materialize the model themselves.
    """
    keep = validate_keep(deps, keep)
    empty = empty_cuts(deps, keep)
    if empty:
        node, layout = empty[0]
        raise UserError(
            f"node {node!r}: the keep set removes every channel of one of its outputs (group "
            f"{int(deps.group_of_channel[deps.ids(layout)[0]])}); keep at least one of them "
            f"(surgery.fill_empty_cuts does)"
        )
    if inplace:
        model = deps.mg.proto
    else:
        model = onnx.ModelProto()
        model.CopyFrom(deps.mg.proto)  # weights left in the file are references: a small copy
    if not keep:
        return lazy_weights.materialize(model) if materialize else model
    mirrored = initializer_inputs(model)  # IR < 4 lists every initializer as an input too
    flags = deps.keep_flags(keep)
    editor = _Editor(deps, model)
    slices = []
    for member in deps.members:
        mask = deps.mask(member.layout, flags)
        if member.kind == "slice":
            slices.append((member, mask))  # constants are cut per storage, below: readers may differ
            continue
        if mask.all() and member.kind != "split":
            continue
        _apply(editor, member, mask, deps, flags)
    copies = apply_storage_edits(
        editor, group_by_storage(slices), cut, lambda node: node_label(node, editor.node_index[id(node)])
    )
    if notes is not None:
        notes.extend(copies)
    editor.flush()
    if editor.unhooked:
        drop_dead_constants(model, editor.unhooked)
    _drop_unused_initializers(model)
    sync_initializer_inputs(model, mirrored)
    refresh_value_info(model)
    if check:
        check_structure(model)
    return lazy_weights.materialize(model) if materialize else model


def drop_dead_constants(model: onnx.ModelProto, unhooked: list[str]) -> None:
    """Remove the Constant, Identity and folded reshape/cast nodes that fed only the inputs we
    re-pointed (`unhooked`)."""
    graph = model.graph
    producers = {o: i for i, n in enumerate(graph.node) for o in n.output}
    readers = Counter(name for n in graph.node for name in node_reads(n))  # subgraph bodies' reads too
    protected = {o.name for o in graph.output}
    dead, pending = set(), list(unhooked)
    while pending:
        index = producers.get(pending.pop())
        if index is None or index in dead:
            continue
        node = graph.node[index]
        if node.op_type not in REMOVABLE_WHEN_UNREAD or any(readers[o] or o in protected for o in node.output):
            continue
        dead.add(index)
        for name in node_reads(node):
            readers[name] -= 1
            pending.append(name)
    for index in sorted(dead, reverse=True):
        del graph.node[index]


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    """Drop the initializers nothing reads any more (an If/Loop/Scan body reading one by name reads it)."""
    used = {name for node in model.graph.node for name in node_reads(node)}
    used |= {o.name for o in model.graph.output}
    unused = [i for i, init in enumerate(model.graph.initializer) if init.name not in used]
    for index in reversed(unused):  # in place: re-adding the kept ones would copy every weight
        del model.graph.initializer[index]


def refresh_value_info(model: onnx.ModelProto) -> None:
    """Drop stale intermediate shapes and record freshly inferred ones."""
    del model.graph.value_info[:]
    stored = {i.name for i in model.graph.initializer}
    if any(
        not d.HasField("dim_value")
        for i in model.graph.input
        if i.name not in stored
        for d in i.type.tensor_type.shape.dim
    ):  # a symbolic batch: shapes inferred at batch 1 would bake it in (onnxruntime folds Shape on them)
        return _symbolic_value_info(model)
    try:
        infos = infer_shapes(model)
    except UserError:  # symbolic H/W (measured at a given --input-shape): value_info is optional
        return
    outputs = {o.name for o in model.graph.output}
    inputs = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        for name in node.output:
            info = infos.get(name)
            if (
                name
                and info is not None
                and name not in outputs
                and name not in inputs
                and info.shape is not None
                and name not in getattr(infos, "probed", ())
            ):  # a probe's shapes hold for its input only
                model.graph.value_info.append(helper.make_tensor_value_info(name, info.elem_type, list(info.shape)))


def _symbolic_value_info(model: onnx.ModelProto) -> None:
    """Intermediate shapes as ONNX infers them on the model as it is: symbolic dims stay symbolic."""
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton(model), data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
        return
    produced = {name for node in model.graph.node for name in node.output if name}
    declared = {o.name for o in model.graph.output} | {i.name for i in model.graph.input}
    for value in inferred.graph.value_info:
        if value.name in produced and value.name not in declared and value.type.HasField("tensor_type"):
            model.graph.value_info.append(value)


def check_structure(model: onnx.ModelProto) -> None:
    """Checker and strict shape inference on the weightless skeleton (fast on big models)."""
    light = skeleton(model, keep_output_shapes=True)
    light.graph.value_info.extend(model.graph.value_info)
    try:
        onnx.checker.check_model(light, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = " ".join(str(exc).strip().splitlines()[0].split()) if str(exc).strip() else type(exc).__name__
        check = "shape inference" if isinstance(exc, onnx.shape_inference.InferenceError) else "the ONNX checker"
        raise InternalError(f"surgery produced a graph that {check} rejects: {first}") from exc
