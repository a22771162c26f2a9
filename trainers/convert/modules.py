"""The nn.Modules a converted graph is made of: stateless ops, trainable linear layers, and
`OnnxModule`, which runs them in topological order passing tensors by their ONNX names."""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

INT64_MAX = 2**63 - 1


def _safe(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "node"
    return s if not s[0].isdigit() else f"n{s}"


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
        # intermediate tensors kept by name on each forward (feature distillation reads them)
        self.taps: frozenset[str] = frozenset()
        self.tapped: dict[str, torch.Tensor] = {}

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
            if self.taps:
                self.tapped.update((name, env[name]) for name in outs if name in self.taps)
            for name in free:
                env.pop(name, None)
        results = []
        for name in self.output_names:
            results.append(env[name] if name in env else getattr(self.consts, _safe(name)))
        return results[0] if len(results) == 1 else tuple(results)

    def sample_input(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros([batch, *self.input_shape[1:]], dtype=self.input_dtype)
