"""The teacher (the original graph) and how both networks are run on a batch.

The teacher runs in torch -- converted by trainers.convert, frozen (no gradients), in eval mode, on
the student's device -- or, where the converter cannot take it (an op it lacks, e.g. a quantized
graph), in onnxruntime on the CPU; `runtime="onnxruntime"` asks for it. The choice and its reason
are logged and recorded (`Teacher.runtime`, `Teacher.why`).

`Runner` runs a network on a batch and returns its graph outputs and the tapped intermediate
tensors (feature hints). A graph that runs only at batch 1 (a Reshape to a constant batch, as some
exporters write) is run image by image and the results are joined along each tensor's batch axis,
found by `probe`: the axis that grows from 2 to 3 when the batch does (sequence-first heads have
it at 1), or, for a batch-1 graph, its only axis of size 1.

`check_pair` refuses, in one line and before any image is decoded, a teacher whose inputs or
outputs differ from the student's in names, count or rank; `check_shapes` refuses one whose
outputs differ in shape on the probe (pruning never changes an output's shape).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx
import torch

from onnxprune.errors import UserError

from .preprocess import runtime_inputs

RUNTIMES = ("auto", "torch", "onnxruntime")
Outputs = tuple[list[torch.Tensor], dict[str, torch.Tensor]]


def _declared(values) -> list[tuple[str, int | None]]:
    out = []
    for v in values:
        shape = v.type.tensor_type.shape if v.type.HasField("tensor_type") else None
        out.append((v.name, len(shape.dim) if shape is not None and shape.dim else None))
    return out


def check_pair(student: onnx.ModelProto, teacher: onnx.ModelProto, where: str) -> None:
    """Inputs and outputs match in count, names and (declared) ranks: else one line, exit 2."""
    for what, mine, theirs in (
        ("inputs", _declared(runtime_inputs(student)), _declared(runtime_inputs(teacher))),
        ("outputs", _declared(student.graph.output), _declared(teacher.graph.output)),
    ):
        if len(mine) != len(theirs):
            raise UserError(
                f"--teacher {where}: it has {len(theirs)} {what}, the student {len(mine)}; give the original model "
                f"the student was pruned from"
            )
        for (name, rank), (t_name, t_rank) in zip(mine, theirs):
            if name != t_name:
                raise UserError(
                    f"--teacher {where}: its {what} are {[n for n, _ in theirs]}, the student's {[n for n, _ in mine]}; "
                    f"give the original model the student was pruned from"
                )
            if rank is not None and t_rank is not None and rank != t_rank:
                raise UserError(
                    f"--teacher {where}: {what[:-1]} {name!r} has rank {t_rank} in the teacher, {rank} in the student"
                )


def check_shapes(student: list[torch.Tensor], teacher: list[torch.Tensor], names: list[str], where: str) -> None:
    for name, s, t in zip(names, student, teacher):
        if tuple(s.shape) != tuple(t.shape):
            raise UserError(
                f"--teacher {where}: output {name!r} is {'x'.join(map(str, t.shape))} in the teacher, "
                f"{'x'.join(map(str, s.shape))} in the student; give the original model the student was pruned from"
            )


# ------------------------------------------------------------------------------------------ runners


@dataclass
class Runner:
    """`fn(x) -> (outputs, taps)` at any batch (chunk None) or `chunk` images at a time."""

    fn: Callable[[torch.Tensor], Outputs]
    chunk: int | None = None
    axes: dict[str, int] = field(default_factory=dict)  # batch axis per output / tap name
    names: list[str] = field(default_factory=list)  # output names, in order
    sample: Outputs | None = None  # the probe's run (batch 2, or 1 for a batch-1 graph)

    def __call__(self, x: torch.Tensor) -> Outputs:
        if self.chunk is None or x.shape[0] <= self.chunk:
            return self.fn(x)
        parts = [self.fn(x[i : i + self.chunk]) for i in range(0, x.shape[0], self.chunk)]
        outs = [torch.cat([p[0][k] for p in parts], dim=self.axes.get(name, 0)) for k, name in enumerate(self.names)]
        taps = {name: torch.cat([p[1][name] for p in parts], dim=self.axes.get(name, 0)) for name in parts[0][1]}
        return outs, taps


def _batch_axis(small: torch.Tensor, large: torch.Tensor, b_small: int, b_large: int) -> int | None:
    grown = [
        a
        for a in range(small.dim())
        if small.shape[a] * b_large == large.shape[a] * b_small and small.shape[a] != large.shape[a]
    ]
    return grown[0] if len(grown) == 1 else None


def probe(fn: Callable[[torch.Tensor], Outputs], make: Callable[[int], torch.Tensor], names: list[str]) -> Runner:
    """A Runner for `fn`: batch axes from runs at batch 2 and 3, or image by image if only batch 1 runs."""
    try:
        with torch.no_grad():
            two, three = fn(make(2)), fn(make(3))
    except (RuntimeError, ValueError, IndexError) as exc:  # a graph fixed at batch 1 (or ORT refusing)
        try:
            with torch.no_grad():
                one = fn(make(1))
        except (RuntimeError, ValueError, IndexError):
            raise exc from None
        axes = {}
        for name, value in [*zip(names, one[0]), *one[1].items()]:
            ones = [a for a in range(value.dim()) if value.shape[a] == 1]
            axes[name] = ones[0] if len(ones) == 1 else 0
        return Runner(fn, 1, axes, names, one)
    axes = {}
    for name, a, b in [*zip(names, two[0], three[0]), *((n, two[1][n], three[1][n]) for n in two[1])]:
        axis = _batch_axis(a, b, 2, 3)
        if axis is None:
            raise UserError(
                f"tensor {name!r}: no axis follows the batch (shapes {list(a.shape)} at 2, {list(b.shape)} at 3)"
            )
        axes[name] = axis
    return Runner(fn, None, axes, names, two)


def module_fn(module, grad: bool) -> Callable[[torch.Tensor], Outputs]:
    """Run an OnnxModule: (outputs as a list, its tapped tensors)."""

    def run(x: torch.Tensor) -> Outputs:
        module.tapped = {}
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            out = module(x.to(module.input_dtype))
        taps, module.tapped = module.tapped, {}
        return (list(out) if isinstance(out, tuple) else [out]), taps

    return run


# ------------------------------------------------------------------------------------------ teacher


class Teacher:
    """The original graph, frozen: `fn(x) -> (outputs, taps)` in torch or onnxruntime."""

    def __init__(
        self,
        proto: onnx.ModelProto,
        input_shape: list[int] | None,
        device: torch.device,
        taps: set[str],
        runtime: str = "auto",
    ):
        if runtime not in RUNTIMES:
            raise UserError(f"--teacher-runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
        self.proto, self.device, self.taps = proto, device, set(taps)
        self.available: set[str] | None = None  # tensors it can tap (None: any, in onnxruntime)
        self.output_names = [o.name for o in proto.graph.output]
        self.module = None
        self.why = "asked for (--teacher-runtime onnxruntime)"
        if runtime != "onnxruntime":
            from .convert import convert

            try:
                module = convert(proto, input_shape=input_shape)
            except UserError as exc:
                if runtime == "torch":
                    raise UserError(f"--teacher: {exc}") from None
                self.why = f"the converter cannot take it: {exc}"
            else:
                module.eval().requires_grad_(False)
                self.module = module.to(device)
                self.available = {name for _ins, outs, _free in module.wiring for name in outs}
                self.why = "converted, frozen, eval mode, on the student's device"
        self.runtime = "torch" if self.module is not None else "onnxruntime"
        self.set_taps(self.taps)

    def set_taps(self, taps: set[str]) -> None:
        self.taps = set(taps)
        if self.module is not None:
            self.module.taps = frozenset(self.taps)
        else:
            self._session()

    def _session(self) -> None:
        import onnxruntime as ort

        graph = onnx.ModelProto()
        graph.CopyFrom(self.proto)
        present = {o.name for o in graph.graph.output}
        for name in sorted(self.taps - present):
            graph.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.fetch = self.output_names + sorted(self.taps - present)

    def fn(self, x: torch.Tensor) -> Outputs:
        if self.module is not None:
            with torch.no_grad():
                outs, taps = module_fn(self.module, grad=False)(x)
            return outs, taps
        values = self.session.run(self.fetch, {self.input_name: x.detach().cpu().numpy().astype(np.float32)})
        tensors = [torch.from_numpy(np.asarray(v)).to(self.device) for v in values]
        n = len(self.output_names)
        return tensors[:n], {name: t for name, t in zip(self.fetch[n:], tensors[n:]) if name in self.taps}

    def describe(self) -> str:
        return f"teacher in {self.runtime} ({self.why})"
