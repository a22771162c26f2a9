"""Where the batch is, so that a converted graph runs at any batch size.

The builder runs the graph once on a probe (batch 2 for a symbolic batch) and folds every shape
computation into constants. Two things are tracked so that those constants do not bake the
probe's batch in:

- `axis[name]` for a run-time tensor: `(axis, inner)`, the axis that holds the batch, whose size
  is `outer * batch * inner` (a `[T * N, C]` reshape merges the sequence into the batch's axis);
- `marks[name]` for a folded integer tensor: `{flat index: factor}`, the entries whose value is
  `factor * batch` (what `Shape` read off a batch axis, carried through Gather/Concat/Mul...).

A Reshape then writes `-1` where the batch goes (sequence-first `[T, N, C]` as well as `[N, ...]`),
and ConstantOfShape/Expand/Tile with a batch entry are computed at run time from the graph
input's batch instead of being folded.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import onnx
import torch

from .modules import _Op

# folded ops that only move entries around: the marks move with them (data inputs: the first, or all)
_MOVES = {"Identity", "Cast", "Squeeze", "Unsqueeze", "Reshape", "Flatten", "Gather", "Slice", "Transpose", "Expand"}
_RESHAPES = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}


def _prod(values: Sequence[int]) -> int:
    return int(np.prod(values, dtype=np.int64)) if len(values) else 1


def reshape_position(
    x_shape: Sequence[int], position: tuple[int, int], target: Sequence[int], batch: int, only: int | None = None
) -> tuple[int, int] | None:
    """The axis of `target` that holds the batch of `x` (at `position`) after a row-major reshape.

    Axis j holds it when its elements span the batch's: the product of the axes before j divides
    the product of those before the batch, the product after j divides the batch's inner stride.
    With a batch of 1 any unit axis would do, so only an axis that is exactly the batch counts.
    """
    axis, inner = position
    stride_after = inner * _prod(x_shape[axis + 1 :])
    before = _prod(x_shape) // (stride_after * batch)
    candidates = range(len(target)) if only is None else [only]
    exact = None
    for j in candidates:
        pre, post = _prod(target[:j]), _prod(target[j + 1 :])
        if before % pre or stride_after % post:
            continue
        if target[j] % batch or target[j] * pre * post != _prod(x_shape):
            continue
        if pre == before and post == stride_after and target[j] == batch:
            exact = exact if exact is not None else (j, 1)
        elif batch > 1 or only is not None:
            return j, stride_after // post
    return exact


def with_batch(values: Sequence[int], marks: dict[int, int], batch: int) -> list[int]:
    """`values` with each marked entry computed from the batch that comes at run time."""
    return [marks[i] * batch if i in marks else int(v) for i, v in enumerate(values)]


class BatchTrack:
    def __init__(self, builder, batch: int, reference: str | None):
        self.b = builder
        self.batch = batch
        self.reference = reference  # the graph input whose axis 0 is the batch at run time
        self.axis: dict[str, tuple[int, int]] = {}
        self.marks: dict[str, dict[int, int]] = {}
        if reference:
            self.axis[reference] = (0, 1)

    # ---- what handlers ask
    def marked(self, node: onnx.NodeProto, index: int) -> dict[int, int]:
        name = node.input[index] if index < len(node.input) else ""
        return self.marks.get(name, {}) if name and self.reference else {}

    def runtime_op(self, node, fn: Callable, use: Sequence[int], marks: dict[int, int], extra=()):
        """`fn(*inputs, *extra, batch=...)`: an op whose shape depends on the batch that comes at run time
        (read off the graph input), for a node that would otherwise be folded with the probe's batch."""
        module, runtime = self.b.generic(node, lambda *xs: fn(*xs[:-1], batch=xs[-1].shape[0]), use=use)
        for value in extra:  # buffers, so that they follow the module to its device
            module.register_buffer(f"c{len(module.slots)}", value.clone())
            module.slots.append("const")
        module.slots.append("rt")
        module.batch_marks = dict(marks)
        return module, [*runtime, self.reference]

    # ---- bookkeeping after each node
    def fold_shape(self, name: str, x_name: str, shape: Sequence[int], axes: Sequence[int] | None) -> None:
        """`Shape` (the entries of `axes`) or `Size` (axes None) of a tensor: its batch entry is marked."""
        position = self.axis.get(x_name)
        if position is None or not shape or not self.reference:
            return
        axis = position[0]
        if axes is None:
            self.marks[name] = {0: _prod(shape) // self.batch}
        elif axis in axes:
            self.marks[name] = {list(axes).index(axis): shape[axis] // self.batch}

    def after(self, node: onnx.NodeProto, module, ins: list[str], outs: list[str], results: list, folded: bool):
        if folded:
            self._carry_marks(node, module, outs, results)
            return
        if node.op_type in ("LSTM", "GRU"):
            self._recurrent(node, ins, outs)
            return
        sources = [(n, self.axis[n]) for n in ins if n in self.axis]
        for name, value in zip(outs, results):
            if name and isinstance(value, torch.Tensor):
                position = self._output_position(node, module, sources, list(value.shape))
                if position is not None:
                    self.axis[name] = position

    def _output_position(self, node, module, sources, out_shape):
        batch_marks = getattr(module, "batch_marks", None)
        if batch_marks:  # a run-time ConstantOfShape/Expand/Tile: the marked entry is the batch axis
            (index, factor), *more = batch_marks.items()
            return None if more or factor != 1 else (index, 1)
        if not sources:
            return None
        name, (axis, inner) = max(sources, key=lambda s: len(self.b.shape_of(s[0])))
        x_shape = self.b.shape_of(name)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Transpose":
            perm = list(attrs.get("perm", reversed(range(len(x_shape)))))
            return perm.index(axis), inner
        if node.op_type in _RESHAPES:
            return reshape_position(x_shape, (axis, inner), out_shape, self.batch, getattr(module, "batch_index", None))
        if node.op_type == "Gather" and node.input[0] == name and node.input[1] in self.b.static:
            gather_axis = int(attrs.get("axis", 0)) % len(x_shape)
            if gather_axis != axis and self.b.static[node.input[1]].dim() == 0:
                return axis - (gather_axis < axis), inner
        if len(out_shape) == len(x_shape) and out_shape[axis] == x_shape[axis]:
            return axis, inner
        return None

    def _recurrent(self, node, ins, outs):
        layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
        position = self.axis.get(ins[0])
        if position == (layout, 1):
            # the input's run-time axis is the sequence (silero-vad reads its chunks as one sequence of
            # batch 1): Y keeps it, [seq, dirs, batch, H] (layout 1: [batch, seq, dirs, H]); Y_h, Y_c do not
            if outs and outs[0]:
                self.axis[outs[0]] = (layout, 1)
            return
        if position != (1 - layout, 1):
            return
        for k, name in enumerate(outs):
            if name:  # Y [seq, dirs, batch, H] (layout 1: [batch, seq, dirs, H]); Y_h, Y_c [dirs, batch, H]
                self.axis[name] = (0, 1) if layout else ((2, 1) if k == 0 else (1, 1))

    def _carry_marks(self, node, module, outs, results):
        if not any(n in self.marks for n in node.input) or not isinstance(module, _Op):
            return
        op = node.op_type
        if op in ("Mul", "Div"):
            self._scale(node, outs[0], results[0])
            return
        if op not in _MOVES and op != "Concat":
            return  # Add, Sub, ...: the entry is no longer a multiple of the batch
        data = range(len(node.input)) if op == "Concat" else [0]
        args = []
        for i, slot in enumerate(module.slots):
            value = getattr(module, f"c{i}") if slot == "const" else None
            if i in data and value is not None:
                value = self._codes(node.input[i], value)
            args.append(value)
        try:
            codes = module.fn(*args)
        except (RuntimeError, ValueError, IndexError, TypeError):
            return
        codes = codes if isinstance(codes, (tuple, list)) else [codes]
        for name, code, value in zip(outs, codes, results):
            code = np.asarray(code).astype(np.int64)
            if name and code.shape == tuple(value.shape) and code.any():
                self.marks[name] = {int(i): int(code.flat[i]) for i in np.flatnonzero(code)}

    def _codes(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """The tensor's marks as a tensor of its shape: each entry's factor, 0 where unmarked."""
        codes = torch.zeros(value.shape, dtype=torch.int64)
        for index, factor in self.marks.get(name, {}).items():
            codes.view(-1)[index] = factor
        return codes.to(value.dtype) if value.dtype.is_floating_point else codes

    def _scale(self, node, out: str, value: torch.Tensor):
        """A batch entry times (or divided by) a constant stays a multiple of the batch."""
        a, b = node.input[:2]
        if (a in self.marks) == (b in self.marks) or not out:
            return  # batch * batch, or nothing marked
        marked, other = (a, b) if a in self.marks else (b, a)
        k = self.b.static.get(other)
        if (node.op_type == "Div" and marked != a) or k is None or k.numel() != 1 or value.dim() > 1:
            return
        k = int(k.reshape(-1)[0])
        if node.op_type == "Mul":
            marks = {i: f * k for i, f in self.marks[marked].items()}
        else:
            marks = {i: f // k for i, f in self.marks[marked].items() if k and f % k == 0}
        if marks:
            self.marks[out] = marks
