"""`_Builder` turns an ONNX graph into an `OnnxModule`, node by node, folding what does not depend on
the input; `HANDLERS` maps each op type to the function that converts it (`@handles("Op")`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Sequence

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from onnxprune.errors import UserError

from .batch_axis import BatchTrack
from .modules import OnnxModule, _Op, _safe

# ---------------------------------------------------------------------------------------- helpers


def _torch_dtype(onnx_type: int) -> torch.dtype:
    np_type = onnx.helper.tensor_dtype_to_np_dtype(onnx_type)
    if np_type == np.dtype(bool):
        return torch.bool
    return torch.from_numpy(np.zeros(0, dtype=np_type)).dtype


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    array = np.asarray(array)
    if array.dtype == object:
        raise ValueError("string tensors are not supported")
    return torch.from_numpy(np.array(array, copy=True))


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        out[attr.name] = value
    return out


def _broadcast_dims(rank: int, axis: int) -> int:
    return axis + rank if axis < 0 else axis


class _Unsupported(Exception):
    pass


class _Builder:
    def __init__(self, model: onnx.ModelProto, input_shape: Sequence[int] | None):
        self.model = model
        self.graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.static: dict[str, torch.Tensor] = {}
        self.probe: dict[str, torch.Tensor] = {}
        self.module = OnnxModule()
        self.module.opset = self.opset
        self.module.source_name = self.graph.name
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        self.fused: set[int] = set()  # ids of nodes folded into a previous module
        self.graph_outputs = [o.name for o in self.graph.output]
        self.names_used: set[str] = set()
        self.input_shape_override = list(input_shape) if input_shape else None
        self.probe_batch = 1
        self.batch = BatchTrack(self, 1, None)  # where the batch is (batch_axis.py), set up with the inputs
        self.node_index: dict[int, int] = {}  # id(node) -> position in graph.node (same wrappers as _toposort's)

    # ---- graph bookkeeping
    def setup(self) -> list[onnx.NodeProto]:
        for init in self.graph.initializer:
            try:
                self.static[init.name] = _to_tensor(numpy_helper.to_array(init))
            except (ValueError, TypeError) as exc:
                raise UserError(f"initializer {init.name!r}: cannot read it ({exc})") from None
        inputs = [i for i in self.graph.input if i.name not in self.static]
        if not inputs:
            raise UserError("the graph has no runtime input")
        for index, value_info in enumerate(inputs):
            tensor_type = value_info.type.tensor_type
            dims = []
            for axis, dim in enumerate(tensor_type.shape.dim):
                if dim.HasField("dim_value") and dim.dim_value > 0:
                    dims.append(dim.dim_value)
                elif axis == 0:
                    dims.append(0)  # symbolic batch
                elif self.input_shape_override and index == 0 and axis < len(self.input_shape_override):
                    dims.append(int(self.input_shape_override[axis]))
                else:
                    raise UserError(
                        f"graph input {value_info.name!r} has a symbolic dimension {axis} "
                        f"({dim.dim_param or '?'}); only the batch may be symbolic: give input_shape"
                    )
            if not dims:
                raise UserError(f"graph input {value_info.name!r} has no known shape")
            if self.input_shape_override and index == 0:
                dims[1:] = [int(d) for d in self.input_shape_override[1:]]
            if dims[0] == 0:
                dims[0] = 2  # probe a dynamic batch with 2, so batch and singleton dims differ
            self.probe_batch = dims[0]
            dtype = _torch_dtype(tensor_type.elem_type)
            gen = torch.Generator().manual_seed(0)
            if dtype.is_floating_point:
                probe = torch.randn(dims, generator=gen).to(dtype)
            else:
                probe = torch.zeros(dims, dtype=dtype)
            self.probe[value_info.name] = probe
            self.module.input_names.append(value_info.name)
            if index == 0:
                self.module.input_shape = list(dims)
                self.module.input_dtype = dtype
                self.batch = BatchTrack(self, dims[0], value_info.name)
        self.module.output_names = list(self.graph_outputs)
        nodes = self._toposort()
        for node in nodes:
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        return nodes

    def _toposort(self) -> list[onnx.NodeProto]:
        nodes = list(self.graph.node)
        self.node_index = {id(node): i for i, node in enumerate(nodes)}
        available = set(self.static) | set(self.probe) | {""}
        producer = {}
        for node in nodes:
            for out in node.output:
                producer[out] = node
        # liveness: only nodes that feed a graph output
        needed, stack, seen = set(), list(self.graph_outputs), set()
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            node = producer.get(name)
            if node is not None and id(node) not in needed:
                needed.add(id(node))
                stack.extend(i for i in node.input if i)
        for name in self.graph_outputs:
            if name not in producer and name not in available:
                raise UserError(f"graph output {name!r} is produced by no node")
        ordered, pending = [], [n for n in nodes if id(n) in needed]
        while pending:
            progressed, rest = False, []
            for node in pending:
                if all(i in available for i in node.input):
                    ordered.append(node)
                    available.update(node.output)
                    progressed = True
                else:
                    rest.append(node)
            if not progressed:
                missing = sorted({i for n in rest for i in n.input if i not in available and i not in producer})
                what = f"missing tensors {missing[:3]}" if missing else "a cycle"
                raise UserError(f"the graph cannot be ordered: node {rest[0].name!r} waits on {what}")
            pending = rest
        return ordered

    def key(self, node: onnx.NodeProto) -> str:
        base = _safe(node.name or f"{node.op_type}_{node.output[0]}")
        name, k = base, 1
        while name in self.names_used:
            k += 1
            name = f"{base}_{k}"
        self.names_used.add(name)
        return name

    # ---- accessors for handlers
    def is_static(self, name: str) -> bool:
        return name in self.static

    def const(self, node: onnx.NodeProto, index: int) -> torch.Tensor | None:
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.static:
            raise _Unsupported(f"input {index} ({name!r}) must be a constant")
        return self.static[name]

    def const_list(self, node: onnx.NodeProto, index: int) -> list[int] | None:
        value = self.const(node, index)
        return None if value is None else [int(v) for v in value.reshape(-1).tolist()]

    def shape_of(self, name: str) -> list[int]:
        value = self.probe.get(name, self.static.get(name))
        return list(value.shape)

    def generic(
        self, node: onnx.NodeProto, fn: Callable, use: Sequence[int] | None = None
    ) -> tuple[nn.Module, list[str]]:
        """An _Op over the inputs `use` (default: all): constants become buffers, others run time."""
        positions = range(len(node.input)) if use is None else use
        slots, consts, runtime = [], {}, []
        for slot_index, i in enumerate(positions):
            name = node.input[i] if i < len(node.input) else ""
            if not name:
                slots.append("none")
            elif name in self.static:
                slots.append("const")
                consts[slot_index] = self.static[name].clone()
            else:
                slots.append("rt")
                runtime.append(name)
        return _Op(node.op_type, fn, slots, consts), runtime

    # ---- main loop
    def build(self) -> OnnxModule:
        nodes = self.setup()
        self._refuse_unsupported(nodes)
        wiring = []
        for node in nodes:
            if id(node) in self.fused:
                continue
            if node.domain not in ("", "ai.onnx"):
                raise UserError(
                    f"node {node.name!r} (op {node.domain}.{node.op_type}) is not supported by the trainer's converter"
                )
            if node.op_type in ("Shape", "Size"):
                self._fold_shape(node)  # shapes are known from the probe: a constant
                continue
            if node.op_type == "CastLike" and node.input[0] in self.static:
                like = self.probe.get(node.input[1], self.static.get(node.input[1]))
                self.static[node.output[0]] = self.static[node.input[0]].to(like.dtype)  # only the dtype
                continue
            handler = HANDLERS.get(node.op_type)
            if handler is None:
                raise UserError(f"node {node.name!r} (op {node.op_type}) is not supported by the trainer's converter")
            foldable = not [i for i in node.input if i and i not in self.static]
            try:
                made = handler(self, node)
            except _Unsupported as exc:
                raise UserError(
                    f"node {node.name!r} (op {node.op_type}): {exc}; this form is not supported by the trainer's converter"
                ) from None
            module, ins = made[0], made[1]
            outs = list(made[2]) if len(made) > 2 else list(node.output)
            module.eval()
            try:
                with torch.no_grad():
                    result = module(*[self.probe[n] if n in self.probe else self.static[n] for n in ins])
            except _Unsupported as exc:
                raise UserError(
                    f"node {node.name!r} (op {node.op_type}): {exc}; this form is not supported by the trainer's converter"
                ) from None
            except (RuntimeError, ValueError, IndexError, TypeError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UserError(
                    f"node {node.name!r} (op {node.op_type}): cannot run it on the input shape {self.module.input_shape} ({first})"
                ) from None
            results = list(result) if isinstance(result, (tuple, list)) and len(outs) > 1 else [result]
            if len(outs) > 1 and len(results) < len(outs):
                extra = [o for o in outs[len(results) :] if o and (self.consumers.get(o) or o in self.graph_outputs)]
                if extra:
                    raise UserError(
                        f"node {node.name!r} (op {node.op_type}): its output {extra[0]!r} is not supported by the trainer's converter"
                    )
                outs = outs[: len(results)]
            foldable = foldable and all(n in self.static for n in ins)  # unless it reads the run-time batch
            self.batch.after(node, module, list(ins), outs, results, folded=foldable)
            target = self.static if foldable else self.probe
            for name, value in zip(outs, results):
                if name:
                    target[name] = value.detach() if isinstance(value, torch.Tensor) else value
            if not foldable:
                module.onnx_node = self.node_index[id(node)]  # for writing trained weights back (writeback.py)
                self.module.ops[self.key(node)] = module
                wiring.append([list(ins), outs, []])
        # free each runtime tensor after its last use (keeps eval memory flat)
        last_use: dict[str, int] = {}
        for k, (ins, _outs, _free) in enumerate(wiring):
            for name in ins:
                last_use[name] = k
        for name, k in last_use.items():
            if name not in self.graph_outputs:
                wiring[k][2].append(name)
        self.module.wiring = [(a, b, c) for a, b, c in wiring]
        for name in self.graph_outputs:
            if name in self.static and name not in self.probe:
                self.module.consts.register_buffer(_safe(name), self.static[name].clone())
        return self.module

    def _refuse_unsupported(self, nodes: list[onnx.NodeProto]) -> None:
        """Every op is looked up before any node runs: a graph the converter cannot train fails at once."""

        def op_name(node):
            return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"

        missing = [
            n
            for n in nodes
            if (n.domain not in ("", "ai.onnx") or (n.op_type not in HANDLERS and n.op_type not in ("Shape", "Size")))
        ]
        if missing:
            first = missing[0]
            label = first.name or f"{first.op_type}#{self.node_index.get(id(first), '?')}"
            others = sorted({op_name(n) for n in missing} - {op_name(first)})
            more = f" (nor are: {', '.join(others)})" if others else ""
            raise UserError(f"node {label!r} (op {op_name(first)}) is not supported by the trainer's converter{more}")

    def _fold_shape(self, node: onnx.NodeProto) -> None:
        shape = self.shape_of(node.input[0])
        if node.op_type == "Size":
            self.static[node.output[0]] = torch.tensor(int(np.prod(shape)), dtype=torch.int64)
            self.batch.fold_shape(node.output[0], node.input[0], shape, None)
            return
        attrs = _attrs(node)
        axes = list(range(len(shape)))[attrs.get("start", 0) : attrs.get("end", None)]
        self.static[node.output[0]] = torch.tensor([shape[a] for a in axes], dtype=torch.int64)
        self.batch.fold_shape(node.output[0], node.input[0], shape, axes)


# --------------------------------------------------------------------------------------- handlers

HANDLERS: dict[str, Callable[[_Builder, onnx.NodeProto], tuple]] = {}


def handles(*ops: str):
    def register(fn):
        for op in ops:
            HANDLERS[op] = fn
        return fn

    return register


def _axes(b, node, input_index: int) -> list[int] | None:
    attrs = _attrs(node)
    if "axes" in attrs:
        return list(attrs["axes"])
    if input_index < len(node.input) and node.input[input_index]:
        return b.const_list(node, input_index)
    return None
