"""Feature hints: intermediate tensors of the student matched to the teacher's, channel by channel.

Surgery keeps the names of the surviving nodes and tensors, and keeps the surviving channels in
their original order, so no wiring is asked of the user. The rule (`--hints auto`):

* a hint is the output tensor of a layer -- Conv, ConvTranspose, Gemm or MatMul -- whose node has
  the same name and op in both graphs (or, unnamed in both, the same output tensor), whose output
  tensor has the same name, is
  computed by both networks at run time, and is not a graph output (outputs have their own loss);
* and whose channels were pruned: its shape differs from the teacher's in exactly one non-batch
  axis, smaller in the student. Layers that kept every channel are left to the output loss.

The teacher's tensor is sliced to the kept channels: the shrink report's `kept` list for the node
(`--shrink-report`, or given by `pipeline distill` directly), or, without a report, recovered by
matching: each student channel is paired with a teacher channel so that the summed correlation of
their activations on the calibration images is largest, with the pairs in increasing order on both
sides (the order surgery keeps) -- a dynamic programme over the correlation matrix. On a student
whose weights were kept, a kept channel correlates 1 with its original in the first pruned layer
and near 1 deeper on; on re-initialised weights every pairing is as good as another, and so is the
report's. A report whose `kept` list does not fit the student's channel count is refused.

The hint loss is the mean squared error normalised per channel by the teacher's standard deviation
over the calibration images (trainers.distill rule 5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from onnxprune.errors import UserError

from .distill import ScaleMeter, normalised_mse

LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
HINT_MODES = ("auto", "none")
MATCH_POSITIONS = 20000


@dataclass
class Hint:
    node: str
    tensor: str
    axis: int
    kept: torch.Tensor | None  # teacher channel indices, in order
    source: str  # "report" | "matched"
    scale: torch.Tensor | None = None

    def describe(self) -> dict:
        count = None if self.kept is None else int(self.kept.numel())
        return {"node": self.node, "tensor": self.tensor, "axis": self.axis, "channels": count, "from": self.source}


def read_report(report) -> dict[str, list[int]]:
    """{node: kept} from a shrink report: a path to its JSON, the dict, or its `layers` list."""
    if report is None:
        return {}
    if isinstance(report, (str, Path)):
        try:
            report = json.loads(Path(report).read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"--shrink-report {report}: cannot read it as JSON ({type(exc).__name__})") from None
    layers = report.get("layers") if isinstance(report, dict) else report
    if not isinstance(layers, list) or not all(isinstance(x, dict) and "node" in x and "kept" in x for x in layers):
        raise UserError("--shrink-report: not a shrink report (no `layers` list with `node` and `kept`)")
    return {str(x["node"]): [int(i) for i in x["kept"]] for x in layers}


def candidates(
    student: onnx.ModelProto, teacher: onnx.ModelProto, in_student: set[str], in_teacher: set[str] | None
) -> list[tuple[str, str]]:
    """(node, tensor) pairs that exist alike in both graphs (module docstring, first point). A node
    without a name (torch 1.x exports, e.g. CenterFace) is known by its output tensor instead; it is
    then `Op(tensor)` in the logs, and its channels are recovered by matching (the report names it
    by its index in the original graph, which surgery may shift)."""
    theirs = {n.name: n for n in teacher.graph.node if n.name}
    theirs_unnamed = {n.output[0]: n for n in teacher.graph.node if not n.name and n.output}
    outputs = {o.name for o in student.graph.output}
    found = []
    for node in student.graph.node:
        if node.op_type not in LAYER_OPS or not node.output:
            continue
        tensor = node.output[0]
        other = theirs.get(node.name) if node.name else theirs_unnamed.get(tensor)
        if other is None or other.op_type != node.op_type:
            continue
        if tensor != other.output[0] or tensor in outputs or tensor not in in_student:
            continue
        if in_teacher is not None and tensor not in in_teacher:
            continue
        found.append((node.name or f"{node.op_type}({tensor})", tensor))
    return found


def pruned_axis(student: tuple[int, ...], teacher: tuple[int, ...], batch_axis: int) -> int | None:
    if len(student) != len(teacher):
        return None
    differ = [a for a in range(len(student)) if a != batch_axis and student[a] != teacher[a]]
    if len(differ) != 1 or student[differ[0]] > teacher[differ[0]]:
        return None
    return differ[0]


def select(
    pairs: list[tuple[str, str]],
    student_shapes: dict[str, tuple[int, ...]],
    teacher_shapes: dict[str, tuple[int, ...]],
    batch_axes: dict[str, int],
    report: dict[str, list[int]],
) -> list[Hint]:
    hints = []
    for node, tensor in pairs:
        if tensor not in student_shapes or tensor not in teacher_shapes:
            continue
        axis = pruned_axis(student_shapes[tensor], teacher_shapes[tensor], batch_axes.get(tensor, 0))
        if axis is None:
            continue
        kept, source = report.get(node), "report"
        if kept is not None:
            have, was = student_shapes[tensor][axis], teacher_shapes[tensor][axis]
            if len(kept) != have or (kept and max(kept) >= was):
                raise UserError(
                    f"--shrink-report: layer {node!r} keeps {len(kept)} of {was} channels in the report, the student "
                    f"has {have}; give the report of the shrink that made this student"
                )
            kept_t = torch.tensor(kept, dtype=torch.long)
        else:
            kept_t, source = None, "matched"
        hints.append(Hint(node, tensor, axis, kept_t, source))
    return hints


def monotone_match(corr: np.ndarray) -> np.ndarray:
    """Increasing teacher indices, one per student row, maximising the summed `corr` (rows <= cols)."""
    rows, cols = corr.shape
    dp = np.full((rows, cols), -np.inf)
    back = np.zeros((rows, cols), dtype=np.int64)
    dp[0] = corr[0]
    index = np.arange(cols)
    for j in range(1, rows):
        best = np.maximum.accumulate(dp[j - 1])
        where = np.maximum.accumulate(np.where(dp[j - 1] == best, index, 0))
        dp[j, 1:] = corr[j, 1:] + best[:-1]
        back[j, 1:] = where[:-1]
    kept = np.zeros(rows, dtype=np.int64)
    kept[-1] = int(np.argmax(dp[-1]))
    for j in range(rows - 1, 0, -1):
        kept[j - 1] = back[j, kept[j]]
    return kept


def _channel_rows(x: torch.Tensor, axis: int, pick: torch.Tensor | None) -> np.ndarray:
    rows = x.detach().double().movedim(axis, 0).reshape(x.shape[axis], -1)
    if pick is not None:
        rows = rows[:, pick]
    rows = rows - rows.mean(1, keepdim=True)
    return (rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)).numpy()


def match(hint: Hint, student: torch.Tensor, teacher: torch.Tensor, seed: int = 0) -> None:
    """Fill `hint.kept` by correlation (module docstring)."""
    positions = student.numel() // student.shape[hint.axis]
    pick = None
    if positions > MATCH_POSITIONS:
        pick = torch.from_numpy(np.random.default_rng(seed).choice(positions, MATCH_POSITIONS, replace=False))
    corr = _channel_rows(student, hint.axis, pick) @ _channel_rows(teacher, hint.axis, pick).T
    hint.kept = torch.from_numpy(monotone_match(corr))


def teacher_view(hint: Hint, teacher: torch.Tensor) -> torch.Tensor:
    return teacher.index_select(hint.axis, hint.kept.to(teacher.device))


def meters(hints: list[Hint]) -> list[ScaleMeter]:
    return [ScaleMeter(h.axis) for h in hints]


def hint_loss(hints: list[Hint], student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> torch.Tensor:
    losses = [normalised_mse(student[h.tensor], teacher_view(h, teacher[h.tensor]), h.axis, h.scale) for h in hints]
    return torch.stack(losses).mean()
