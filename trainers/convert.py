"""ONNX -> PyTorch, written here, and PyTorch -> ONNX through torch.onnx.export.

Why our own converter and not onnx2torch: onnx2torch is unmaintained (no release for current
opsets, no dynamo-exporter graphs) and depends on torchvision, which drags a CUDA build of torch
onto a CPU machine. The graphs we train are small CNNs, so a node-by-node interpreter covers them.

How the converter works
-----------------------
`convert(model)` walks the graph in topological order and turns every node into a small
`nn.Module`, kept in an `nn.ModuleDict` in that order; `OnnxModule.forward` runs them one by one,
passing tensors by their ONNX names. Weights become `nn.Parameter`s (Conv/ConvTranspose ->
`nn.ConvNd`, Gemm and MatMul-by-a-constant (+ a following bias Add) -> `nn.Linear`-style
parameters, BatchNormalization -> `nn.BatchNormNd` so it trains, PRelu slopes); other constants
become buffers.

While building, every node is also run once on a *probe* input (the graph input's shape, batch 1
for a static graph, 2 for a dynamic one). Nodes that do not depend on the input's values -- constants,
`Shape` and the Gather/Unsqueeze/Concat/... arithmetic on shapes that the legacy exporter emits --
are folded into constants. A `Reshape` whose folded target keeps the leading (batch) dimension, such
as the dynamo exporter's `[1, 25088]` or the legacy `[N, -1]` subgraph, is rewritten to
`[-1, ...]`, so the module trains with any batch size even when the source graph was exported with
a static batch of 1.

An op outside the supported set raises `UserError("node 'X' (op Foo) is not supported by the
trainer's converter")`.

`export_onnx` uses the legacy TorchScript exporter (`dynamo=False`): on these graphs it takes
~0.05 s against ~4 s for the dynamo exporter, gives a dynamic batch axis through `dynamic_axes`
without `torch.export` constraints, and folds BatchNorm into the convolutions in eval mode.
"""
from __future__ import annotations

import io
import math
import re
import warnings
from collections import defaultdict
from typing import Any, Callable, Sequence

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn
from torch.nn.utils import skip_init

from onnxprune.errors import UserError
from onnxprune.io import ModelLike, load_model, save_model

__all__ = ["OnnxModule", "convert", "export_onnx"]

INT64_MAX = 2**63 - 1


# --------------------------------------------------------------------------------------- modules

class _Op(nn.Module):
    """A stateless op: `fn` over the node's inputs, runtime tensors or constants kept as buffers.

    `slots[i]` is "rt" (passed in at run time), "const" (buffer `c{i}`) or "none" (absent input).
    """

    def __init__(self, op_type: str, fn: Callable, slots: Sequence[str], consts: dict[int, torch.Tensor] | None = None):
        super().__init__()
        self.op_type = op_type
        self.fn = fn
        self.slots = list(slots)
        for i, value in (consts or {}).items():
            self.register_buffer(f"c{i}", value)

    def forward(self, *xs):
        args = []
        k = 0
        for i, slot in enumerate(self.slots):
            if slot == "rt":
                args.append(xs[k])
                k += 1
            elif slot == "const":
                args.append(getattr(self, f"c{i}"))
            else:
                args.append(None)
        return self.fn(*args)

    def extra_repr(self) -> str:
        return self.op_type


class _Linear(nn.Module):
    """Gemm / MatMul with a constant weight: y = x' @ W^T + b, W an (out, in) Parameter."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, trans_a: bool = False):
        super().__init__()
        self.weight = nn.Parameter(weight.contiguous())
        self.bias = None if bias is None else nn.Parameter(bias.contiguous())
        self.trans_a = trans_a
        # F.linear takes a bias of shape (out,); any other broadcast shape is added afterwards.
        self._bias_in_linear = bias is not None and bias.dim() == 1 and bias.shape[0] == weight.shape[0]

    def forward(self, x):
        if self.trans_a:
            x = x.transpose(0, 1)
        if self._bias_in_linear:
            return F.linear(x, self.weight, self.bias)
        y = F.linear(x, self.weight)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, bias={self.bias is not None}"


class _PadThen(nn.Module):
    """Asymmetric or oversized padding (ONNX allows it, torch layers do not): pad, then the layer."""

    def __init__(self, pads: list[int], value: float, inner: nn.Module):
        super().__init__()
        self.pads = pads
        self.value = value
        self.inner = inner

    def forward(self, x):
        return self.inner(F.pad(x, self.pads, value=self.value))


class _PRelu(nn.Module):
    def __init__(self, slope: torch.Tensor, channelwise: bool):
        super().__init__()
        self.channelwise = channelwise
        self.weight = nn.Parameter(slope.reshape(-1).contiguous() if channelwise else slope.contiguous())

    def forward(self, x):
        if self.channelwise:
            return F.prelu(x, self.weight)
        return torch.where(x >= 0, x, x * self.weight)


class OnnxModule(nn.Module):
    """An ONNX graph as a torch module: `ops` run in topological order, tensors passed by name."""

    def __init__(self):
        super().__init__()
        self.ops = nn.ModuleDict()
        self.consts = nn.Module()  # graph outputs that are constants (rare)
        self.wiring: list[tuple[list[str], list[str], list[str]]] = []  # (inputs, outputs, free after)
        self.input_names: list[str] = []
        self.output_names: list[str] = []
        self.input_shape: list[int] = []
        self.input_dtype = torch.float32
        self.opset = 13
        self.source_name = ""

    def forward(self, *inputs):
        env: dict[str, Any] = dict(zip(self.input_names, inputs))
        for (ins, outs, free), module in zip(self.wiring, self.ops.values()):
            result = module(*[env[name] for name in ins])
            if len(outs) == 1:
                env[outs[0]] = result
            else:
                for name, value in zip(outs, result):
                    if name:
                        env[name] = value
            for name in free:
                env.pop(name, None)
        results = []
        for name in self.output_names:
            results.append(env[name] if name in env else getattr(self.consts, _safe(name)))
        return results[0] if len(results) == 1 else tuple(results)

    def sample_input(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros([batch, *self.input_shape[1:]], dtype=self.input_dtype)


# ---------------------------------------------------------------------------------------- helpers

def _safe(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "node"
    return s if not s[0].isdigit() else f"n{s}"


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
        self.module.output_names = list(self.graph_outputs)
        nodes = self._toposort()
        for node in nodes:
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        return nodes

    def _toposort(self) -> list[onnx.NodeProto]:
        nodes = list(self.graph.node)
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

    def generic(self, node: onnx.NodeProto, fn: Callable, use: Sequence[int] | None = None) -> tuple[nn.Module, list[str]]:
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
        wiring = []
        for node in nodes:
            if id(node) in self.fused:
                continue
            if node.domain not in ("", "ai.onnx"):
                raise UserError(f"node {node.name!r} (op {node.domain}.{node.op_type}) is not supported by the trainer's converter")
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
                raise UserError(f"node {node.name!r} (op {node.op_type}): {exc}; this form is not supported by the trainer's converter") from None
            module, ins = made[0], made[1]
            outs = list(made[2]) if len(made) > 2 else list(node.output)
            module.eval()
            try:
                with torch.no_grad():
                    result = module(*[self.probe[n] if n in self.probe else self.static[n] for n in ins])
            except _Unsupported as exc:
                raise UserError(f"node {node.name!r} (op {node.op_type}): {exc}; this form is not supported by the trainer's converter") from None
            except (RuntimeError, ValueError, IndexError, TypeError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UserError(f"node {node.name!r} (op {node.op_type}): cannot run it on the input shape {self.module.input_shape} ({first})") from None
            results = list(result) if isinstance(result, (tuple, list)) and len(outs) > 1 else [result]
            if len(outs) > 1 and len(results) < len(outs):
                extra = [o for o in outs[len(results):] if o and (self.consumers.get(o) or o in self.graph_outputs)]
                if extra:
                    raise UserError(f"node {node.name!r} (op {node.op_type}): its output {extra[0]!r} is not supported by the trainer's converter")
                outs = outs[: len(results)]
            target = self.static if foldable else self.probe
            for name, value in zip(outs, results):
                if name:
                    target[name] = value.detach() if isinstance(value, torch.Tensor) else value
            if not foldable:
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

    def _fold_shape(self, node: onnx.NodeProto) -> None:
        shape = self.shape_of(node.input[0])
        if node.op_type == "Size":
            self.static[node.output[0]] = torch.tensor(int(np.prod(shape)), dtype=torch.int64)
            return
        attrs = _attrs(node)
        start, end = attrs.get("start", 0), attrs.get("end", None)
        sliced = shape[start:end] if end is not None else shape[start:]
        self.static[node.output[0]] = torch.tensor(sliced, dtype=torch.int64)


# --------------------------------------------------------------------------------------- handlers

HANDLERS: dict[str, Callable[[_Builder, onnx.NodeProto], tuple]] = {}


def handles(*ops: str):
    def register(fn):
        for op in ops:
            HANDLERS[op] = fn
        return fn
    return register


def _conv_padding(b: _Builder, node: onnx.NodeProto, attrs: dict, spatial: list[int], kernel: list[int],
                  strides: list[int], dilations: list[int]) -> list[int]:
    """ONNX pads [b1, b2, ..., e1, e2, ...], with auto_pad resolved from the probe shape."""
    n = len(kernel)
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", "") or auto is None:
        pads = list(attrs.get("pads", [0] * (2 * n)))
    elif auto == "VALID":
        pads = [0] * (2 * n)
    else:
        pads = [0] * (2 * n)
        for i in range(n):
            out = math.ceil(spatial[i] / strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - spatial[i])
            small, big = total // 2, total - total // 2
            pads[i], pads[i + n] = (small, big) if auto == "SAME_UPPER" else (big, small)
    return pads


def _torch_pad_order(pads: list[int]) -> list[int]:
    """ONNX [b1..bn, e1..en] -> F.pad's (bn, en, ..., b1, e1)."""
    n = len(pads) // 2
    out = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out


@handles("Conv")
def _conv(b: _Builder, node):
    attrs = _attrs(node)
    x_shape = b.shape_of(node.input[0])
    weight = b.static.get(node.input[1])
    if weight is None:
        raise _Unsupported("the weight must be a constant")
    bias = b.const(node, 2)
    n = weight.dim() - 2
    if n not in (1, 2, 3):
        raise _Unsupported(f"{n}-d convolution")
    kernel = list(attrs.get("kernel_shape", weight.shape[2:]))
    strides = list(attrs.get("strides", [1] * n))
    dilations = list(attrs.get("dilations", [1] * n))
    groups = int(attrs.get("group", 1))
    pads = _conv_padding(b, node, attrs, x_shape[2:], kernel, strides, dilations)
    symmetric = pads[:n] == pads[n:]
    cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[n]
    conv = skip_init(cls, weight.shape[1] * groups, weight.shape[0], kernel, stride=strides, dilation=dilations,
                     groups=groups, bias=bias is not None, padding=pads[:n] if symmetric else 0)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    module = conv if symmetric else _PadThen(_torch_pad_order(pads), 0.0, conv)
    return module, [node.input[0]]


@handles("ConvTranspose")
def _conv_transpose(b: _Builder, node):
    attrs = _attrs(node)
    x_shape = b.shape_of(node.input[0])
    weight = b.static.get(node.input[1])
    if weight is None:
        raise _Unsupported("the weight must be a constant")
    bias = b.const(node, 2)
    n = weight.dim() - 2
    if n not in (1, 2, 3):
        raise _Unsupported(f"{n}-d transposed convolution")
    groups = int(attrs.get("group", 1))
    kernel = list(attrs.get("kernel_shape", weight.shape[2:]))
    strides = list(attrs.get("strides", [1] * n))
    dilations = list(attrs.get("dilations", [1] * n))
    out_pad = list(attrs.get("output_padding", [0] * n))
    pads = list(attrs.get("pads", [0] * (2 * n)))
    spatial = x_shape[2:]
    auto = attrs.get("auto_pad", "NOTSET")
    if "output_shape" in attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
        want = list(attrs["output_shape"])[-n:] if "output_shape" in attrs else [s * st for s, st in zip(spatial, strides)]
        for i in range(n):
            total = strides[i] * (spatial[i] - 1) + out_pad[i] + ((kernel[i] - 1) * dilations[i] + 1) - want[i]
            total = max(total, 0)
            if auto == "SAME_UPPER" or (auto != "SAME_LOWER"):
                pads[i], pads[i + n] = total // 2, total - total // 2
            else:
                pads[i], pads[i + n] = total - total // 2, total // 2
    if pads[:n] != pads[n:]:
        # torch pads symmetrically: take the smaller, add output_padding for the rest
        extra = [pads[i + n] - pads[i] for i in range(n)]
        if any(e < 0 for e in extra):
            raise _Unsupported("asymmetric pads larger at the start")
        # cropping the end less = output_padding cannot exceed stride; fall back to cropping
        sym = pads[:n]
    else:
        sym, extra = pads[:n], [0] * n
    cls = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[n]
    conv = skip_init(cls, weight.shape[0], weight.shape[1] * groups, kernel, stride=strides, padding=sym,
                     output_padding=out_pad, groups=groups, bias=bias is not None, dilation=dilations)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    if any(extra):
        class _Crop(nn.Module):
            def __init__(self, inner, extra):
                super().__init__()
                self.inner, self.extra = inner, extra

            def forward(self, x):
                y = self.inner(x)
                index = [slice(None), slice(None)] + [slice(0, y.shape[2 + i] - e) for i, e in enumerate(self.extra)]
                return y[tuple(index)]
        return _Crop(conv, extra), [node.input[0]]
    return conv, [node.input[0]]


@handles("BatchNormalization")
def _batchnorm(b: _Builder, node):
    attrs = _attrs(node)
    params = [b.const(node, i) for i in range(1, 5)]
    if any(p is None for p in params):
        raise _Unsupported("scale, bias, mean and variance must be constants")
    scale, bias, mean, var = params
    rank = len(b.shape_of(node.input[0]))
    cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(rank)
    if cls is None:
        raise _Unsupported(f"rank-{rank} input")
    momentum = 1.0 - float(attrs.get("momentum", 0.9))  # ONNX: running = m*running + (1-m)*batch
    bn = cls(scale.shape[0], eps=float(attrs.get("epsilon", 1e-5)), momentum=momentum)
    with torch.no_grad():
        bn.weight.copy_(scale)
        bn.bias.copy_(bias)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
    return bn, [node.input[0]]


def _fuse_bias_add(b: _Builder, node, out_features: int) -> tuple[torch.Tensor | None, str | None]:
    """MatMul's single consumer is Add(y, constant bias): fold the bias into the linear layer."""
    y = node.output[0]
    users = b.consumers.get(y, [])
    if len(users) != 1 or y in b.graph_outputs:
        return None, None
    add = users[0]
    if add.op_type != "Add" or len(add.input) != 2:
        return None, None
    other = add.input[1] if add.input[0] == y else add.input[0]
    if other == y or other not in b.static:
        return None, None
    bias = b.static[other]
    if not bias.is_floating_point() or bias.numel() != out_features or bias.shape[-1:] != (out_features,):
        return None, None
    b.fused.add(id(add))
    return bias.reshape(-1).clone(), add.output[0]


@handles("Gemm")
def _gemm(b: _Builder, node):
    attrs = _attrs(node)
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    trans_a, trans_b = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
    weight = b.static.get(node.input[1])
    if weight is None or node.input[0] in b.static:
        def gemm(a, w, c):
            a = a.transpose(0, 1) if trans_a else a
            w = w.transpose(0, 1) if trans_b else w
            y = torch.matmul(a, w)
            y = y * alpha if alpha != 1.0 else y
            return y if c is None else y + (c * beta if beta != 1.0 else c)
        return b.generic(node, gemm, use=[0, 1, 2])
    w = (weight if trans_b else weight.transpose(0, 1)) * alpha  # (out, in)
    c = b.const(node, 2) if len(node.input) > 2 and node.input[2] in b.static else None
    if len(node.input) > 2 and node.input[2] and c is None:
        raise _Unsupported("a run-time C input")
    bias = None if c is None else c * beta
    if bias is not None and bias.numel() == w.shape[0] and bias.dim() <= 2 and bias.shape[-1] == w.shape[0]:
        bias = bias.reshape(-1)
    return _Linear(w.clone(), None if bias is None else bias.clone(), bool(trans_a)), [node.input[0]]


@handles("MatMul")
def _matmul(b: _Builder, node):
    weight = b.static.get(node.input[1])
    if weight is None or weight.dim() != 2 or node.input[0] in b.static or not weight.is_floating_point():
        return b.generic(node, torch.matmul)
    bias, out_name = _fuse_bias_add(b, node, weight.shape[1])
    module = _Linear(weight.transpose(0, 1).clone(), bias)
    return module, [node.input[0]], [out_name or node.output[0]]


@handles("PRelu")
def _prelu(b: _Builder, node):
    slope = b.static.get(node.input[1])
    if slope is None:
        return b.generic(node, lambda x, s: torch.where(x >= 0, x, x * s))
    x_shape = b.shape_of(node.input[0])
    rank = len(x_shape)
    channels = x_shape[1] if rank > 1 else 1
    aligned = [1] * (rank - slope.dim()) + list(slope.shape)  # numpy broadcasting, right-aligned
    channelwise = slope.numel() == 1 or (
        rank > 1 and len(aligned) == rank and aligned[1] == channels
        and all(d == 1 for i, d in enumerate(aligned) if i != 1))
    return _PRelu(slope.clone(), channelwise), [node.input[0]]


def _unary(fn):
    def handler(b: _Builder, node):
        return b.generic(node, fn, use=[0])
    return handler


for _op, _fn in {
    "Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Exp": torch.exp, "Log": torch.log,
    "Sqrt": torch.sqrt, "Neg": torch.neg, "Abs": torch.abs, "Reciprocal": torch.reciprocal, "Erf": torch.erf,
    "Floor": torch.floor, "Ceil": torch.ceil, "Softplus": F.softplus, "Softsign": F.softsign,
    "Sin": torch.sin, "Cos": torch.cos, "Not": torch.logical_not, "Sign": torch.sign, "Round": torch.round,
    "Mish": F.mish, "HardSwish": F.hardswish,
}.items():
    HANDLERS[_op] = _unary(_fn)


@handles("Identity")
def _identity(b: _Builder, node):
    return b.generic(node, lambda x: x, use=[0])


@handles("LeakyRelu")
def _leaky(b, node):
    alpha = float(_attrs(node).get("alpha", 0.01))
    return b.generic(node, lambda x: F.leaky_relu(x, alpha), use=[0])


@handles("Elu")
def _elu(b, node):
    alpha = float(_attrs(node).get("alpha", 1.0))
    return b.generic(node, lambda x: F.elu(x, alpha), use=[0])


@handles("Selu")
def _selu(b, node):
    attrs = _attrs(node)
    alpha, gamma = float(attrs.get("alpha", 1.6732632423543772)), float(attrs.get("gamma", 1.0507009873554805))
    if abs(alpha - 1.6732632423543772) < 1e-6 and abs(gamma - 1.0507009873554805) < 1e-6:
        return b.generic(node, F.selu, use=[0])
    return b.generic(node, lambda x: gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1)), use=[0])


@handles("Gelu")
def _gelu(b, node):
    approximate = _attrs(node).get("approximate", "none")
    return b.generic(node, lambda x: F.gelu(x, approximate=approximate), use=[0])


@handles("HardSigmoid")
def _hardsigmoid(b, node):
    attrs = _attrs(node)
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    if abs(alpha - 1 / 6) < 1e-7 and abs(beta - 0.5) < 1e-7:
        return b.generic(node, F.hardsigmoid, use=[0])
    return b.generic(node, lambda x: torch.clamp(x * alpha + beta, 0.0, 1.0), use=[0])


@handles("Clip")
def _clip(b, node):
    attrs = _attrs(node)
    if b.opset < 11 or "min" in attrs or "max" in attrs:
        lo, hi = attrs.get("min"), attrs.get("max")
    else:
        lo_t, hi_t = b.const(node, 1), b.const(node, 2)
        lo = None if lo_t is None else float(lo_t.reshape(-1)[0])
        hi = None if hi_t is None else float(hi_t.reshape(-1)[0])
    if lo is None and hi is None:
        return b.generic(node, lambda x: x, use=[0])
    if lo == 0.0 and hi == 6.0:
        return b.generic(node, F.relu6, use=[0])
    return b.generic(node, lambda x: torch.clamp(x, lo, hi), use=[0])


@handles("Dropout")
def _dropout(b, node):
    attrs = _attrs(node)
    ratio = attrs.get("ratio", 0.5)
    if b.opset >= 12:
        r = b.const(node, 1)
        ratio = 0.5 if r is None else float(r.reshape(-1)[0])
    if len(node.output) > 1 and node.output[1] and (b.consumers.get(node.output[1]) or node.output[1] in b.graph_outputs):
        raise _Unsupported("its mask output")
    return nn.Dropout(float(ratio)), [node.input[0]], [node.output[0]]


@handles("Cast")
def _cast(b, node):
    dtype = _torch_dtype(int(_attrs(node)["to"]))
    return b.generic(node, lambda x: x.to(dtype), use=[0])


@handles("CastLike")
def _cast_like(b, node):
    return b.generic(node, lambda x, like: x.to(like.dtype))


def _binary(fn_float, fn_int=None):
    def handler(b, node):
        def run(x, y):
            if fn_int is not None and not x.is_floating_point() and not y.is_floating_point():
                return fn_int(x, y)
            return fn_float(x, y)
        return b.generic(node, run)
    return handler


HANDLERS["Add"] = _binary(torch.add)
HANDLERS["Sub"] = _binary(torch.sub)
HANDLERS["Mul"] = _binary(torch.mul)
HANDLERS["Div"] = _binary(torch.div, lambda x, y: torch.div(x, y, rounding_mode="trunc"))
HANDLERS["Pow"] = _binary(torch.pow)
HANDLERS["Equal"] = _binary(torch.eq)
HANDLERS["Less"] = _binary(torch.lt)
HANDLERS["LessOrEqual"] = _binary(torch.le)
HANDLERS["Greater"] = _binary(torch.gt)
HANDLERS["GreaterOrEqual"] = _binary(torch.ge)
HANDLERS["And"] = _binary(torch.logical_and)
HANDLERS["Or"] = _binary(torch.logical_or)
HANDLERS["Mod"] = _binary(torch.fmod)


def _variadic(fn):
    def handler(b, node):
        def run(*xs):
            out = xs[0]
            for x in xs[1:]:
                out = fn(out, x)
            return out
        return b.generic(node, run)
    return handler


HANDLERS["Sum"] = _variadic(torch.add)
HANDLERS["Max"] = _variadic(torch.maximum)
HANDLERS["Min"] = _variadic(torch.minimum)


@handles("Mean")
def _mean(b, node):
    count = len(node.input)
    def run(*xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out / count
    return b.generic(node, run)


@handles("SplitToSequence")
def _split_to_sequence(b, node):
    attrs = _attrs(node)
    shape = b.shape_of(node.input[0])
    axis = _broadcast_dims(len(shape), int(attrs.get("axis", 0)))
    keep = bool(attrs.get("keepdims", 1))
    split = b.const(node, 1)
    if split is None:
        sizes = [1] * shape[axis]
    elif split.dim() == 0:
        chunk = int(split)
        sizes = [min(chunk, shape[axis] - chunk * i) for i in range(-(-shape[axis] // chunk))]
        keep = True
    else:
        sizes, keep = [int(v) for v in split.tolist()], True

    def run(x):
        parts = torch.split(x, sizes, dim=axis)
        return [p if keep else p.squeeze(axis) for p in parts]
    return b.generic(node, run, use=[0])


@handles("SequenceAt")
def _sequence_at(b, node):
    position = b.const_list(node, 1)[0]
    return b.generic(node, lambda seq: seq[position], use=[0])


@handles("Where")
def _where(b, node):
    return b.generic(node, torch.where)


def _pool_common(b, node, kind: str):
    attrs = _attrs(node)
    x_shape = b.shape_of(node.input[0])
    kernel = list(attrs["kernel_shape"])
    n = len(kernel)
    if n not in (1, 2, 3):
        raise _Unsupported(f"{n}-d pooling")
    strides = list(attrs.get("strides", [1] * n))
    dilations = list(attrs.get("dilations", [1] * n))
    pads = _conv_padding(b, node, attrs, x_shape[2:], kernel, strides, dilations)
    ceil = bool(attrs.get("ceil_mode", 0))
    return attrs, kernel, strides, dilations, pads, ceil, n


@handles("MaxPool")
def _maxpool(b, node):
    attrs, kernel, strides, dilations, pads, ceil, n = _pool_common(b, node, "max")
    if len(node.output) > 1 and node.output[1] and (b.consumers.get(node.output[1]) or node.output[1] in b.graph_outputs):
        raise _Unsupported("its Indices output")
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
    symmetric = pads[:n] == pads[n:] and all(p <= k // 2 for p, k in zip(pads[:n], kernel))
    if symmetric:
        return b.generic(node, lambda x: fn(x, kernel, strides, pads[:n], dilations, ceil), use=[0])
    torch_pads = _torch_pad_order(pads)
    return b.generic(node, lambda x: fn(F.pad(x, torch_pads, value=float("-inf")), kernel, strides, 0, dilations, ceil), use=[0])


@handles("AveragePool")
def _avgpool(b, node):
    attrs, kernel, strides, dilations, pads, ceil, n = _pool_common(b, node, "avg")
    if any(d != 1 for d in dilations):
        raise _Unsupported("dilated average pooling")
    include = bool(attrs.get("count_include_pad", 0))
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
    if pads[:n] == pads[n:] and all(p <= k // 2 for p, k in zip(pads[:n], kernel)):
        return b.generic(node, lambda x: fn(x, kernel, strides, pads[:n], ceil, include), use=[0])
    torch_pads = _torch_pad_order(pads)
    if include:
        return b.generic(node, lambda x: fn(F.pad(x, torch_pads), kernel, strides, 0, ceil, True), use=[0])

    def avg_exclude(x):  # sum over the window / number of real pixels in it
        ones = torch.ones_like(x[:1, :1])
        total = fn(F.pad(x, torch_pads), kernel, strides, 0, ceil, True)
        count = fn(F.pad(ones, torch_pads), kernel, strides, 0, ceil, True)
        return total / count
    return b.generic(node, avg_exclude, use=[0])


@handles("GlobalAveragePool")
def _gap(b, node):
    rank = len(b.shape_of(node.input[0]))
    if rank == 4:
        return b.generic(node, lambda x: F.adaptive_avg_pool2d(x, 1), use=[0])
    dims = tuple(range(2, rank))
    return b.generic(node, lambda x: x.mean(dim=dims, keepdim=True), use=[0])


@handles("GlobalMaxPool")
def _gmp(b, node):
    rank = len(b.shape_of(node.input[0]))
    if rank == 4:
        return b.generic(node, lambda x: F.adaptive_max_pool2d(x, 1), use=[0])
    dims = tuple(range(2, rank))
    return b.generic(node, lambda x: x.amax(dim=dims, keepdim=True), use=[0])


@handles("Flatten")
def _flatten(b, node):
    rank = len(b.shape_of(node.input[0]))
    axis = _broadcast_dims(rank, int(_attrs(node).get("axis", 1)))
    if axis == 1:
        return b.generic(node, lambda x: torch.flatten(x, 1), use=[0])
    if axis == 0:
        return b.generic(node, lambda x: x.reshape(1, -1), use=[0])
    return b.generic(node, lambda x: torch.flatten(torch.flatten(x, axis), 0, axis - 1), use=[0])


@handles("Reshape")
def _reshape(b, node):
    shape = b.const_list(node, 1)
    allowzero = int(_attrs(node).get("allowzero", 0))
    x_shape = b.shape_of(node.input[0])
    if node.input[0] in b.static:
        target = [x_shape[i] if (d == 0 and not allowzero and i < len(x_shape)) else d for i, d in enumerate(shape)]
        return b.generic(node, lambda x: x.reshape(target), use=[0])
    resolved = [x_shape[i] if (d == 0 and not allowzero) else d for i, d in enumerate(shape)]
    if -1 in resolved:
        known = int(np.prod([d for d in resolved if d != -1])) or 1
        resolved[resolved.index(-1)] = int(np.prod(x_shape)) // known
    target = resolved
    # the leading dimension stays the batch: let any batch size through (see the module docstring)
    batch = b.probe_batch
    if (len(x_shape) >= 1 and len(resolved) >= 1 and x_shape[0] == batch and resolved[0] == batch
            and int(np.prod(x_shape[1:])) == int(np.prod(resolved[1:]))):
        target = [-1] + resolved[1:]
    return b.generic(node, lambda x: x.reshape(target), use=[0])


@handles("Transpose")
def _transpose(b, node):
    rank = len(b.shape_of(node.input[0]))
    perm = list(_attrs(node).get("perm", list(reversed(range(rank)))))
    return b.generic(node, lambda x: x.permute(perm), use=[0])


def _axes(b, node, input_index: int) -> list[int] | None:
    attrs = _attrs(node)
    if "axes" in attrs:
        return list(attrs["axes"])
    if input_index < len(node.input) and node.input[input_index]:
        return b.const_list(node, input_index)
    return None


@handles("Unsqueeze")
def _unsqueeze(b, node):
    axes = _axes(b, node, 1)
    rank = len(b.shape_of(node.input[0])) + len(axes)
    axes = sorted(a + rank if a < 0 else a for a in axes)

    def run(x):
        for a in axes:
            x = x.unsqueeze(a)
        return x
    return b.generic(node, run, use=[0])


@handles("Squeeze")
def _squeeze(b, node):
    shape = b.shape_of(node.input[0])
    axes = _axes(b, node, 1)
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    axes = tuple(sorted(a + len(shape) if a < 0 else a for a in axes))
    return b.generic(node, lambda x: x.squeeze(axes) if axes else x, use=[0])


@handles("Concat")
def _concat(b, node):
    axis = int(_attrs(node)["axis"])
    return b.generic(node, lambda *xs: torch.cat([x for x in xs if x is not None], dim=axis))


@handles("Split")
def _split(b, node):
    attrs = _attrs(node)
    shape = b.shape_of(node.input[0])
    axis = _broadcast_dims(len(shape), int(attrs.get("axis", 0)))
    sizes = attrs.get("split")
    if sizes is None and len(node.input) > 1 and node.input[1]:
        sizes = b.const_list(node, 1)
    if sizes is None:
        parts = int(attrs.get("num_outputs", len(node.output)))
        chunk = -(-shape[axis] // parts)
        sizes = [min(chunk, shape[axis] - chunk * i) for i in range(parts)]
    sizes = [int(s) for s in sizes]
    return b.generic(node, lambda x: tuple(torch.split(x, sizes, dim=axis)), use=[0])


@handles("Slice")
def _slice(b, node):
    shape = b.shape_of(node.input[0])
    attrs = _attrs(node)
    if b.opset < 10:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes, steps = list(attrs.get("axes", range(len(starts)))), [1] * len(starts)
    else:
        starts, ends = b.const_list(node, 1), b.const_list(node, 2)
        axes = b.const_list(node, 3) or list(range(len(starts)))
        steps = b.const_list(node, 4) or [1] * len(starts)
    rank = len(shape)
    index: list[Any] = [slice(None)] * rank
    flips = []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = _broadcast_dims(rank, axis)
        size = shape[axis]
        if step > 0:
            start = max(-size, min(start, size))
            end = max(-size, min(end, size))
            index[axis] = slice(start, end if end != size else None, step)
        elif step < 0:
            # torch has no negative steps: gather the indices ONNX would visit
            s = start + size if start < 0 else start
            s = max(-1, min(s, size - 1))
            e = end + size if end < 0 else end
            e = max(-1, min(e, size - 1))
            flips.append((axis, torch.arange(s, e, step, dtype=torch.int64)))
        else:
            raise _Unsupported("a zero step")
    index_t = tuple(index)

    def run(x):
        y = x[index_t]
        for axis, idx in flips:
            y = torch.index_select(y, axis, idx.to(y.device))
        return y
    return b.generic(node, run, use=[0])


@handles("Gather")
def _gather(b, node):
    shape = b.shape_of(node.input[0])
    axis = _broadcast_dims(len(shape), int(_attrs(node).get("axis", 0)))
    size = shape[axis]

    def gather(x, idx):
        idx = idx.to(torch.int64)
        idx = torch.where(idx < 0, idx + size, idx)
        if idx.dim() == 0:
            return x.select(axis, int(idx))
        flat = torch.index_select(x, axis, idx.reshape(-1))
        return flat.reshape(list(x.shape[:axis]) + list(idx.shape) + list(x.shape[axis + 1:]))
    return b.generic(node, gather)


@handles("Constant")
def _constant(b, node):
    attr = node.attribute[0]
    name = attr.name
    if name == "value":
        value = _to_tensor(numpy_helper.to_array(attr.t))
    elif name == "value_float":
        value = torch.tensor(attr.f, dtype=torch.float32)
    elif name == "value_floats":
        value = torch.tensor(list(attr.floats), dtype=torch.float32)
    elif name == "value_int":
        value = torch.tensor(attr.i, dtype=torch.int64)
    elif name == "value_ints":
        value = torch.tensor(list(attr.ints), dtype=torch.int64)
    else:
        raise _Unsupported(f"a {name} constant")
    return _Op("Constant", lambda: value, []), []


@handles("ConstantOfShape")
def _constant_of_shape(b, node):
    shape = b.const_list(node, 0)
    attrs = _attrs(node)
    value = attrs.get("value")
    fill = _to_tensor(numpy_helper.to_array(value)).reshape(-1) if value is not None else torch.zeros(1)
    out = fill.expand(shape).clone() if shape else fill.reshape([]).clone()
    return _Op("ConstantOfShape", lambda: out, []), []


@handles("Range")
def _range(b, node):
    start, limit, delta = (b.const(node, i) for i in range(3))
    out = torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)
    return _Op("Range", lambda: out, []), []


@handles("Expand")
def _expand(b, node):
    shape = b.const_list(node, 1)

    def expand(x):
        target = torch.broadcast_shapes(tuple(x.shape), tuple(shape))
        return x.expand(target)
    return b.generic(node, expand, use=[0])


@handles("Tile")
def _tile(b, node):
    reps = b.const_list(node, 1)
    return b.generic(node, lambda x: x.repeat(reps), use=[0])


def _reduce(fn_name: str):
    def handler(b, node):
        attrs = _attrs(node)
        rank = len(b.shape_of(node.input[0]))
        axes = _axes(b, node, 1)
        keep = bool(attrs.get("keepdims", 1))
        if not axes:
            if attrs.get("noop_with_empty_axes", 0):
                return b.generic(node, lambda x: x, use=[0])
            axes = list(range(rank))
        dims = tuple(sorted(_broadcast_dims(rank, a) for a in axes))

        def reduce(x):
            if fn_name == "mean":
                return x.mean(dim=dims, keepdim=keep)
            if fn_name == "sum":
                return x.sum(dim=dims, keepdim=keep)
            if fn_name == "max":
                return x.amax(dim=dims, keepdim=keep)
            if fn_name == "min":
                return x.amin(dim=dims, keepdim=keep)
            if fn_name == "prod":
                out = x
                for d in sorted(dims, reverse=True):
                    out = out.prod(dim=d, keepdim=keep)
                return out
            return x.pow(2).sum(dim=dims, keepdim=keep)
        return b.generic(node, reduce, use=[0])
    return handler


HANDLERS["ReduceMean"] = _reduce("mean")
HANDLERS["ReduceSum"] = _reduce("sum")
HANDLERS["ReduceMax"] = _reduce("max")
HANDLERS["ReduceMin"] = _reduce("min")
HANDLERS["ReduceProd"] = _reduce("prod")
HANDLERS["ReduceSumSquare"] = _reduce("sumsquare")


@handles("Pad")
def _pad(b, node):
    attrs = _attrs(node)
    rank = len(b.shape_of(node.input[0]))
    mode = attrs.get("mode", "constant")
    if b.opset < 11:
        pads, value, axes = list(attrs["pads"]), float(attrs.get("value", 0.0)), None
    else:
        pads = b.const_list(node, 1)
        v = b.const(node, 2)
        value = 0.0 if v is None else float(v.reshape(-1)[0]) if v.numel() else 0.0
        axes = b.const_list(node, 3)
    if axes is not None:
        full = [0] * (2 * rank)
        n = len(axes)
        for i, a in enumerate(axes):
            a = _broadcast_dims(rank, a)
            full[a], full[a + rank] = pads[i], pads[i + n]
        pads = full
    torch_pads = _torch_pad_order(pads)
    while len(torch_pads) >= 2 and torch_pads[-1] == 0 and torch_pads[-2] == 0:
        torch_pads = torch_pads[:-2]  # F.pad: only the trailing dims that are padded
    torch_mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    if torch_mode is None:
        raise _Unsupported(f"mode {mode!r}")
    if not torch_pads:
        return b.generic(node, lambda x: x, use=[0])
    if torch_mode == "constant":
        return b.generic(node, lambda x: F.pad(x, torch_pads, value=value), use=[0])
    return b.generic(node, lambda x: F.pad(x, torch_pads, mode=torch_mode), use=[0])


def _softmax(fn):
    def handler(b, node):
        rank = len(b.shape_of(node.input[0]))
        default = -1 if b.opset >= 13 else 1
        axis = _broadcast_dims(rank, int(_attrs(node).get("axis", default)))
        if b.opset >= 13 or axis == rank - 1:
            return b.generic(node, lambda x: fn(x, dim=axis), use=[0])

        def coerced(x):  # opset < 13: softmax over the flattened trailing dims
            shape = x.shape
            return fn(x.reshape(int(np.prod(shape[:axis])) if axis else 1, -1), dim=1).reshape(shape)
        return b.generic(node, coerced, use=[0])
    return handler


HANDLERS["Softmax"] = _softmax(F.softmax)
HANDLERS["LogSoftmax"] = _softmax(F.log_softmax)


@handles("ArgMax")
def _argmax(b, node):
    attrs = _attrs(node)
    axis, keep = int(attrs.get("axis", 0)), bool(attrs.get("keepdims", 1))
    return b.generic(node, lambda x: torch.argmax(x, dim=axis, keepdim=keep), use=[0])


# ---------------------------------------------------------------------------------------- public

def _prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    if model.functions:
        try:
            from onnx import inliner
            model = inliner.inline_local_functions(model)
        except Exception as exc:  # pragma: no cover - depends on the model
            raise UserError(f"cannot inline the model's local functions ({type(exc).__name__})") from None
    return model


def convert(model: ModelLike, *, input_shape: Sequence[int] | None = None) -> OnnxModule:
    """ONNX model (path or ModelProto) -> an `OnnxModule` whose weights are Parameters.

    The module runs in any batch size; call `.train()` / `.eval()` as usual (BatchNorm and
    Dropout follow the mode). `input_shape` fills symbolic non-batch input dimensions.
    """
    proto = _prepare(load_model(model, check=False))
    module = _Builder(proto, input_shape).build()
    module.train()
    return module


def _drop_dead_nodes(model: onnx.ModelProto) -> None:
    """The legacy exporter in PRESERVE mode leaves Identity nodes nothing reads: drop them."""
    graph = model.graph
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output if o)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for init in list(graph.initializer):
        if init.name not in used:
            graph.initializer.remove(init)


def export_onnx(module: nn.Module, sample_input: torch.Tensor | None, path, *, opset: int | None = None,
                input_names: list[str] | None = None, output_names: list[str] | None = None,
                dynamic_batch: bool = True, keep_bn: bool = False, refuse: Sequence[ModelLike] = (),
                metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """Export `module` (eval mode) with torch.onnx.export(dynamo=False) and save it atomically.

    Names default to the source graph's (an OnnxModule remembers them); the batch axis is dynamic
    unless `dynamic_batch=False`. `keep_bn=True` keeps BatchNormalization nodes (for a later
    fine-tune); by default BN is folded into the convolutions, the smaller graph to deploy.
    `refuse` lists input paths the output must not overwrite. Returns the saved ModelProto.
    """
    if sample_input is None:
        if not isinstance(module, OnnxModule):
            raise ValueError("sample_input is required for a module that is not an OnnxModule")
        sample_input = module.sample_input(1)
    input_names = input_names or list(getattr(module, "input_names", []) or ["input"])
    output_names = output_names or list(getattr(module, "output_names", []) or ["output"])
    if opset is None:
        opset = getattr(module, "opset", 17)
    opset = max(11, min(int(opset), 20))  # the legacy exporter's range
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    sample = sample_input.to(device)
    was_training = module.training
    module.eval()
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {name: {0: "batch"} for name in input_names[:1] + output_names}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, (sample,), buffer, dynamo=False, opset_version=opset,
                input_names=input_names[:1], output_names=output_names, dynamic_axes=dynamic_axes,
                do_constant_folding=True,
                training=torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL,
            )
    finally:
        module.train(was_training)
    proto = onnx.load_from_string(buffer.getvalue())
    _drop_dead_nodes(proto)
    proto.producer_name = "onnxprune-train"
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    save_model(proto, path, *refuse)
    return proto
