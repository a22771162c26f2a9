"""Distillation losses: what each graph output is, how it is compared, and the error measures.

The rule, per graph output (the first that applies; `--output-loss NAME=kl|mse` overrides it, `mse`
comparing a Softmax / Sigmoid output on its logits):

1. made by Softmax or LogSoftmax (through Identity): **class scores**. Compared on the op's input,
   the logits, with KL divergence at temperature T over the op's axis (opset < 13: the flattened
   trailing axes, as the op then computes).
2. made by Sigmoid: **element scores** (multi-label heads, segmentation and text maps). Compared on
   its logits, with the normalised MSE of rule 5. A saturated sigmoid (p ~ 1e-7) still has
   informative logits (onnxprune.measure.verify compares them the same way); the Bernoulli KL at T,
   tried first, vanishes there: on PP-OCRv4's detector pruned at FLOPs 0.5 (CIFAR-10 images, where it
   finds almost no text) it left the logits further from the teacher's than the MSE on them did
   (benchmarks/distill_sigmoid_loss.py). `--output-loss NAME=kl` asks for the Bernoulli KL.
3. non-negative and summing to 1 over the last axis on the probe batch (a softmax written out as
   Exp / ReduceSum / Div): **probabilities**, compared with KL at T on their logarithms.
4. the graph's only output, made (through Reshape, Transpose, Flatten, Squeeze, Unsqueeze,
   Identity) by a linear layer (Gemm, MatMul, or MatMul + bias Add): **class logits** over the
   last axis, KL at T (a classifier, a CTC sequence head).
5. anything else: **regression** (boxes, landmarks, feature maps), mean squared error normalised
   per feature by the teacher's root mean square (over the calibration images): loss 1 is what
   predicting zeros would score, whatever the output's magnitude (a standard deviation, tried
   first, made near-constant features weigh without bound). The feature axis is the
   non-batch axis with the fewest entries (ties: the later one): a head's 4 + C box and score
   channels, not its thousands of anchors; the floor on a scale is 1e-3 of the largest.

The Sigmoid output of rule 2 keeps its own kind ("sigmoid") for the measures. KL losses are
multiplied by T^2 (gradients keep their size as T changes, Hinton et al. 2015).
The distillation loss is the mean over outputs, plus `hint_weight` x the mean of the feature hints
(trainers.hints), each a per-channel normalised MSE like rule 5.

Measures on held-out images (`Measures`): per output, the relative error ||s - t|| / ||t|| of the
compared tensors -- logits for rules 1 and 2, log-probabilities for 3 -- with class scores (rules
1, 3, 4) centred over their class axis first (a softmax ignores a shift of all its logits, so the
centred logits are exactly what fixes the output); and, for class scores, top-1 agreement: the
share of positions (images, time steps, pixels) where the student's argmax over the classes is the
teacher's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
import torch
import torch.nn.functional as F

from onnxprune.errors import UserError

CLASS_KINDS = ("softmax", "probabilities", "logits")
SCALED_KINDS = ("regression", "sigmoid")  # normalised MSE: their per-feature scale comes from calibration
KINDS = CLASS_KINDS + SCALED_KINDS + ("binary",)
OVERRIDES = ("kl", "mse")
SATURATING = ("Softmax", "LogSoftmax", "Sigmoid")
PASS_THROUGH = ("Identity", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze")
SCALE_FLOOR = 1e-3
LOG_FLOOR = 1e-8


@dataclass
class OutputRule:
    output: str  # the graph output
    tensor: str  # the tensor compared: the output, or the logits before its Softmax / Sigmoid
    kind: str
    axis: int  # class axis (class kinds), feature axis (regression, sigmoid); -1 = none (binary)
    reason: str
    flatten: bool = False  # opset < 13 softmax: classes are the axes from `axis` on
    scale: torch.Tensor | None = None  # regression: per-feature root mean square of the teacher
    batch_axis: int = 0

    def describe(self) -> dict:
        return {
            "output": self.output,
            "compared": self.tensor,
            "kind": self.kind,
            "axis": self.axis,
            "batch_axis": self.batch_axis,
            "rule": self.reason,
        }


def _producers(proto: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in proto.graph.node for out in node.output}


def _through(node, producer, ops):
    while node is not None and node.op_type in ops:
        node = producer.get(node.input[0]) if node.input else None
    return node


def _is_linear(node, producer, constants: set[str]) -> bool:
    if node is None:
        return False
    if node.op_type == "Gemm":
        return True
    if node.op_type == "Add":
        node = next((producer.get(i) for i in node.input if producer.get(i) is not None), None)
    return node is not None and node.op_type == "MatMul" and any(i in constants for i in node.input)


def _constants(proto: onnx.ModelProto) -> set[str]:
    names = {i.name for i in proto.graph.initializer}
    names |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    return names


def _sums_to_one(value: torch.Tensor) -> bool:
    if value.dim() < 2 or value.shape[-1] < 2 or not value.dtype.is_floating_point:
        return False
    return bool((value >= 0).all()) and bool(((value.sum(-1) - 1).abs() < 1e-3).all())


def feature_axis(shape: tuple[int, ...], batch_axis: int) -> int:
    """The non-batch axis with the fewest entries of at least 2 (ties: the later); -1 if none."""
    best = -1
    for axis, size in enumerate(shape):
        if axis != batch_axis and size >= 2 and (best < 0 or size <= shape[best]):
            best = axis
    return best


def output_rules(
    proto: onnx.ModelProto,
    probe: list[torch.Tensor],
    batch_axes: dict[str, int],
    overrides: dict[str, str] | None = None,
) -> list[OutputRule]:
    """One OutputRule per graph output (module docstring); `probe`: the teacher's outputs on a batch."""
    producer, constants = _producers(proto), _constants(proto)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13)
    outputs = [o.name for o in proto.graph.output]
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(outputs))
    if unknown:
        raise UserError(
            f"--output-loss {unknown[0]}=...: the model has no output {unknown[0]!r}; its outputs: {outputs}"
        )
    rules = []
    for name, value in zip(outputs, probe):
        node = _through(producer.get(name), producer, ("Identity",))
        batch = batch_axes.get(name, 0)
        count = len(rules)
        rank = value.dim()
        want = overrides.get(name)
        if want is not None and want not in OVERRIDES:
            raise UserError(f"--output-loss {name}={want}: expected kl or mse")
        saturating = node is not None and node.op_type in SATURATING and node.input[0] not in constants
        if want == "mse":  # on the logits of a Softmax / Sigmoid output (their shape is the output's)
            tensor = node.input[0] if saturating else name
            rules.append(
                OutputRule(name, tensor, "regression", feature_axis(tuple(value.shape), batch), "--output-loss")
            )
        elif node is not None and node.op_type in ("Softmax", "LogSoftmax") and node.input[0] not in constants:
            default = -1 if opset >= 13 else 1
            axis = int(next((a.i for a in node.attribute if a.name == "axis"), default)) % rank
            flatten = opset < 13 and axis != rank - 1
            rules.append(OutputRule(name, node.input[0], "softmax", axis, f"made by {node.op_type}", flatten))
        elif node is not None and node.op_type == "Sigmoid" and node.input[0] not in constants:
            if want == "kl":
                rules.append(OutputRule(name, node.input[0], "binary", -1, "made by Sigmoid, --output-loss kl"))
            else:
                axis = feature_axis(tuple(value.shape), batch)
                rules.append(OutputRule(name, node.input[0], "sigmoid", axis, "made by Sigmoid"))
        elif _sums_to_one(value):
            rules.append(OutputRule(name, name, "probabilities", rank - 1, "sums to 1 over its last axis"))
        elif want == "kl" or (
            len(outputs) == 1
            and rank >= 2
            and value.shape[-1] >= 2
            and _is_linear(_through(producer.get(name), producer, PASS_THROUGH), producer, constants)
        ):
            why = "--output-loss" if want == "kl" else "the only output, made by a linear layer"
            rules.append(OutputRule(name, name, "logits", rank - 1, why))
        else:
            rules.append(OutputRule(name, name, "regression", feature_axis(tuple(value.shape), batch), "other"))
        rules[count].batch_axis = batch
    return rules


# ------------------------------------------------------------------------------------------ losses


def class_rows(x: torch.Tensor, axis: int, flatten: bool) -> torch.Tensor:
    """(positions, classes): the class axis last, every other axis a position."""
    if flatten:
        return x.reshape(-1, int(torch.tensor(x.shape[axis:]).prod()))
    return x.movedim(axis, -1).reshape(-1, x.shape[axis])


def kl_rows(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over rows of KL(softmax(t/T) || softmax(s/T)) * T^2."""
    log_s = F.log_softmax(student / temperature, dim=-1)
    log_t = F.log_softmax(teacher / temperature, dim=-1)
    return (log_t.exp() * (log_t - log_s)).sum(-1).mean() * temperature**2


def bernoulli_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    s, t = student / temperature, teacher / temperature
    p = torch.sigmoid(t)
    kl = p * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    return kl.mean() * temperature**2


def normalised_mse(student: torch.Tensor, teacher: torch.Tensor, axis: int, scale: torch.Tensor | None) -> torch.Tensor:
    diff = student - teacher
    if scale is not None and axis >= 0:
        shape = [1] * diff.dim()
        shape[axis] = -1
        diff = diff / scale.view(shape)
    return diff.pow(2).mean()


def compared(rule: OutputRule, outputs: dict[str, torch.Tensor], taps: dict[str, torch.Tensor]) -> torch.Tensor:
    value = outputs[rule.tensor] if rule.tensor in outputs else taps[rule.tensor]
    if rule.kind == "probabilities":
        return value.clamp_min(LOG_FLOOR).log()
    return value


def output_loss(rule: OutputRule, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    if rule.kind in CLASS_KINDS:
        return kl_rows(
            class_rows(student, rule.axis, rule.flatten), class_rows(teacher, rule.axis, rule.flatten), temperature
        )
    if rule.kind == "binary":
        return bernoulli_kl(student, teacher, temperature)
    return normalised_mse(student, teacher, rule.axis, rule.scale)  # regression, sigmoid (on its logits)


class ScaleMeter:
    """Per-index root mean square along `axis`, accumulated over batches (nothing kept)."""

    def __init__(self, axis: int):
        self.axis = axis
        self.count = 0
        self.squares: torch.Tensor | None = None

    def add(self, value: torch.Tensor) -> None:
        if self.axis < 0:
            return
        rows = value.detach().double().movedim(self.axis, 0).reshape(value.shape[self.axis], -1)
        squares = rows.pow(2).sum(1)
        self.squares = squares if self.squares is None else self.squares + squares
        self.count += rows.shape[1]

    def scale(self) -> torch.Tensor | None:
        """The root mean squares, floored at SCALE_FLOOR x the largest (None without an axis)."""
        if self.axis < 0 or self.squares is None:
            return None
        rms = (self.squares / self.count).sqrt()
        return rms.clamp_min(max(float(rms.max()) * SCALE_FLOOR, 1e-12)).float()


# ------------------------------------------------------------------------------------------ measures


@dataclass
class Measures:
    """Held-out error sums per output (and top-1 agreement counts for class outputs)."""

    rules: list[OutputRule]
    err: list[float] = field(default_factory=list)
    ref: list[float] = field(default_factory=list)
    same: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    loss_sum: float = 0.0
    images: int = 0
    correct: int = 0
    labelled: int = 0

    def __post_init__(self):
        n = len(self.rules)
        self.err, self.ref, self.same, self.positions = [0.0] * n, [0.0] * n, [0] * n, [0] * n

    def add(self, student: list[torch.Tensor], teacher: list[torch.Tensor], loss: float, count: int) -> None:
        for k, (rule, s, t) in enumerate(zip(self.rules, student, teacher)):
            s, t = s.detach().double(), t.detach().double()
            if rule.kind in CLASS_KINDS:  # softmax ignores a shift of all logits: compare them centred
                s, t = class_rows(s, rule.axis, rule.flatten), class_rows(t, rule.axis, rule.flatten)
                s, t = s - s.mean(-1, keepdim=True), t - t.mean(-1, keepdim=True)
                self.same[k] += int((s.argmax(-1) == t.argmax(-1)).sum())
                self.positions[k] += s.shape[0]
            self.err[k] += float((s - t).pow(2).sum())
            self.ref[k] += float(t.pow(2).sum())
        self.loss_sum += loss * count
        self.images += count

    def summary(self) -> dict:
        outputs = []
        for k, rule in enumerate(self.rules):
            entry = {
                "output": rule.output,
                "kind": rule.kind,
                "relative_error": (self.err[k] / max(self.ref[k], 1e-30)) ** 0.5,
            }
            if rule.kind in CLASS_KINDS:
                entry["agreement"] = self.same[k] / max(self.positions[k], 1)
            outputs.append(entry)
        agreements = [o["agreement"] for o in outputs if "agreement" in o]
        out = {
            "loss": self.loss_sum / max(self.images, 1),
            "relative_error": max(o["relative_error"] for o in outputs) if outputs else 0.0,
            "agreement": min(agreements) if agreements else None,
            "outputs": outputs,
        }
        if self.labelled:
            out["accuracy"] = self.correct / self.labelled
        return out
