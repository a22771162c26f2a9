"""Setting up a distillation before any step: the two networks probed side by side, the losses
chosen, the images loaded, the calibration pass (per-feature scales, channel matching) and the
starting point (the error as pruned, the least-squares refit, the error after it)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from onnxprune.errors import UserError

from .convert.norms import NORM_MODES
from .data import parse_data_spec
from .dataset import Dataset
from .distill import CLASS_KINDS, SCALED_KINDS, Measures, OutputRule, ScaleMeter, compared, output_loss, output_rules
from .hints import HINT_MODES, Hint, candidates, hint_loss, meters, read_report, select, teacher_view
from .hints import match as match_channels
from .images import Skipped, load_images
from .preprocess import InputSpec
from .recalibrate import add_refit_biases, recalibrate
from .teacher import Runner, Teacher, check_shapes, module_fn, probe

CALIBRATION_IMAGES = 64


@dataclass
class Objective:
    """The distillation loss of a batch (trainers.distill, trainers.hints), and the label loss mixed in."""

    rules: list[OutputRule]
    hints: list[Hint]
    names: list[str]
    temperature: float
    hint_weight: float
    alpha: float = 0.0
    label_index: int | None = None  # the rule whose compared tensor is (batch, classes) logits

    def compared(self, outs: list[torch.Tensor], taps: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        by_name = dict(zip(self.names, outs))
        return [compared(rule, by_name, taps) for rule in self.rules]

    def __call__(self, student, teacher, labels: torch.Tensor | None = None):
        """(loss, student's compared tensors, teacher's); `labels` (>= 0) mix in cross-entropy by alpha."""
        s_cmp, t_cmp = self.compared(*student), self.compared(*teacher)
        loss = torch.stack([output_loss(r, s, t, self.temperature) for r, s, t in zip(self.rules, s_cmp, t_cmp)]).mean()
        if self.hints and self.hint_weight > 0:
            loss = loss + self.hint_weight * hint_loss(self.hints, student[1], teacher[1])
        if self.alpha > 0 and labels is not None and self.label_index is not None and bool((labels >= 0).all()):
            label_loss = F.cross_entropy(s_cmp[self.label_index], labels)
            loss = (1.0 - self.alpha) * loss + self.alpha * label_loss
        return loss, s_cmp, t_cmp

    def predictions(self, s_cmp: list[torch.Tensor]) -> torch.Tensor | None:
        return None if self.label_index is None else s_cmp[self.label_index].argmax(1)


@dataclass
class Pair:
    """Student and teacher, probed: runners, output rules, hints."""

    student: Runner
    teacher: Runner
    rules: list[OutputRule]
    hints: list[Hint]  # those the loss reads (--hints auto)
    taps: set[str]
    aligned: list[Hint] = field(default_factory=list)  # every pruned layer matched to the teacher's, any --hints


def random_images(spec: InputSpec, seed: int = 0):
    def make(batch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return spec.to_input(
            torch.randint(0, 256, (batch, 3, spec.height, spec.width), generator=gen, dtype=torch.uint8)
        )

    return make


def pair_up(
    module,
    proto: onnx.ModelProto,
    teacher: Teacher,
    spec: InputSpec,
    *,
    hints_mode: str,
    report,
    overrides: dict[str, str] | None,
    where: str,
    device: torch.device,
) -> Pair:
    """Probe both networks (batch axes, shapes), choose each output's loss and the hints."""
    names = list(module.output_names)
    make = lambda b: random_images(spec)(b).to(device)  # noqa: E731
    module.eval()
    t_probe = probe(teacher.fn, make, names)
    rules = output_rules(teacher.proto, t_probe.sample[0], t_probe.axes, overrides)
    available = {name for _ins, outs, _free in module.wiring for name in outs}
    pairs = candidates(proto, teacher.proto, available, teacher.available)
    logits = {r.tensor for r in rules if r.tensor != r.output}
    missing = sorted(
        t for t in logits if t not in available or (teacher.available is not None and t not in teacher.available)
    )
    if missing:
        raise UserError(f"{where}: the tensor {missing[0]!r} an output is compared on is not computed by both networks")
    taps = logits | {tensor for _node, tensor in pairs}
    module.taps = frozenset(taps)
    teacher.set_taps(taps)
    s_runner = probe(module_fn(module, grad=True), make, names)
    t_runner = probe(teacher.fn, make, names)
    check_shapes(s_runner.sample[0], t_runner.sample[0], names, str(where))
    shapes = lambda runner: {n: tuple(v.shape) for n, v in runner.sample[1].items()}  # noqa: E731
    aligned = select(pairs, shapes(s_runner), shapes(t_runner), s_runner.axes, read_report(report))
    hints = aligned if hints_mode == "auto" else []
    taps = logits | {h.tensor for h in aligned}  # the refit and the channel matching read them all
    module.taps = frozenset(taps)
    teacher.set_taps(taps)
    module.train()
    return Pair(s_runner, t_runner, rules, hints, taps, aligned)


def label_index(rules: list[OutputRule], sample: list[torch.Tensor], names: list[str], classes: int) -> int | None:
    """The class output a label loss can use: (batch, classes) scores with the dataset's class count."""
    by_name = dict(zip(names, sample))
    for k, rule in enumerate(rules):
        value = by_name.get(rule.output)
        if rule.kind in CLASS_KINDS and value is not None and value.dim() == 2 and value.shape[1] == classes:
            return k
    return None


def load_data(data, spec: InputSpec, config: dict, log) -> tuple[Dataset, Skipped]:
    """Images for distillation: `images=PATH` (no labels) or a labelled dataset; labelled sets keep
    their size and are resized per batch."""
    if isinstance(data, Dataset):
        return data.limited(config.get("limit_train"), config.get("limit_test")), Skipped()
    kind, path = parse_data_spec(data)
    if kind == "images":
        return load_images(
            data,
            path,
            (spec.height, spec.width),
            limit_train=config.get("limit_train"),
            limit_test=config.get("limit_test"),
            log=log,
        )
    from .evaluate import _load_data

    dataset = _load_data(data, config, log)
    return dataset, Skipped()


def calibrate(pair: Pair, batches, kept: dict[str, list[int]] | None = None) -> None:
    """On the first CALIBRATION_IMAGES training images (no augmentation), both in eval mode: channels
    of hints without a report matched (or restored from a checkpoint's `kept`), and the per-feature
    scales of regression outputs and hints measured on the teacher."""
    for hint in pair.aligned:
        if kept and hint.tensor in kept:
            hint.kept = torch.tensor(kept[hint.tensor], dtype=torch.long)
    out_meters = [ScaleMeter(r.axis) if r.kind in SCALED_KINDS else None for r in pair.rules]
    hint_meters = meters(pair.hints)
    seen = 0
    with torch.no_grad():
        for xb, _yb in batches:
            t_out = pair.teacher(xb)
            if any(h.kept is None for h in pair.aligned):
                s_out = pair.student(xb)
                for hint in pair.aligned:
                    if hint.kept is None:
                        match_channels(hint, s_out[1][hint.tensor], t_out[1][hint.tensor])
            t_by_name = dict(zip(pair.teacher.names, t_out[0]))
            for rule, meter in zip(pair.rules, out_meters):
                if meter is not None:
                    meter.add(compared(rule, t_by_name, t_out[1]))
            for hint, meter in zip(pair.hints, hint_meters):
                meter.add(teacher_view(hint, t_out[1][hint.tensor]))
            seen += xb.shape[0]
            if seen >= CALIBRATION_IMAGES:
                break
    for rule, meter in zip(pair.rules, out_meters):
        if meter is not None:
            rule.scale = meter.scale()
    for hint, meter in zip(pair.hints, hint_meters):
        hint.scale = meter.scale()


def heldout(pair, objective: Objective, batches, module) -> dict:
    """The student against the teacher on held-out images (trainers.distill.Measures), eval mode."""
    measures = Measures(pair.rules)
    was = module.training
    module.eval()
    with torch.no_grad():
        for xb, yb in batches:
            loss, s_cmp, t_cmp = objective(pair.student(xb), pair.teacher(xb))
            measures.add(s_cmp, t_cmp, float(loss), xb.shape[0])
            predicted = objective.predictions(s_cmp)
            if predicted is not None and bool((yb >= 0).all()):
                measures.correct += int((predicted == yb).sum())
                measures.labelled += int(yb.shape[0])
    module.train(was)
    return measures.summary()


REFIT_REPORT_EVERY_S = 10.0


def _refit_progress(say):
    """A line every REFIT_REPORT_EVERY_S seconds while the refit runs (a 960x960 detector's took over
    5 minutes with no sign of life), nothing for a refit done sooner."""
    if not say:
        return None
    started = last = time.perf_counter()

    def on_layer(done: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= REFIT_REPORT_EVERY_S and done < total:
            say(f"refitting layers by least squares: {done} of {total} done ({now - started:.0f} s)")
            last = now

    return on_layer


def start_point(pair, objective, module, teacher, calibration, test_batches, state, recalibration: bool, say):
    """(saved, before, refit, recalibrated): the calibration pass, the held-out error as pruned, the
    refit's records (trainers.recalibrate) and the held-out error after it (None: no layer changed).
    On --resume (`state`) these come from the checkpoint, which holds the refitted weights: the refit
    is not run again, only the biases it added are recreated so that the weights load."""
    saved = (state or {}).get("distill", {})
    module.eval()
    calibrate(pair, calibration, saved.get("kept"))
    before = saved.get("before") or heldout(pair, objective, test_batches, module)
    if state is None:
        refit = recalibrate(module, pair, teacher, calibration, on_layer=_refit_progress(say)) if recalibration else []
    else:
        refit = saved.get("refit", [])
        add_refit_biases(module, state["model"])
    changed = [r for r in refit if r["lambda"] is not None]
    recalibrated = saved.get("recalibrated") or (heldout(pair, objective, test_batches, module) if changed else None)
    if say:
        say(f"as pruned: held-out relative error {before['relative_error']:.4f}" + agreement_text(before))
        if changed:
            say(
                f"refitted {len(changed)} of {len(refit)} layers by least squares to the teacher's tensors: "
                f"relative error {recalibrated['relative_error']:.4f}" + agreement_text(recalibrated)
            )
    return saved, before, refit, recalibrated


def export_check(exported: onnx.ModelProto, pair, batches, limit: int = 64) -> dict:
    """onnxruntime on the written model against torch, on up to `limit` held-out images."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(exported.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst: dict[str, float] = {}
    with torch.no_grad():
        for xb, _yb in batches:
            xb = xb[:limit].cpu()
            want = [t.cpu().numpy() for t in pair.student(xb)[0]]
            try:  # a graph may declare a symbolic batch and still reshape to a constant one: then one by one
                parts = [session.run(None, {name: xb.numpy()})] if pair.student.chunk is None else None
            except Exception:  # noqa: BLE001 - onnxruntime raises its own exception types
                parts = None
            if parts is None:
                parts = [session.run(None, {name: xb[i : i + 1].numpy()}) for i in range(xb.shape[0])]
            for k, out in enumerate(pair.student.names):
                got = np.concatenate([p[k] for p in parts], axis=pair.student.axes.get(out, 0))
                error = float(np.abs(got - want[k]).max() / max(float(np.abs(want[k]).max()), 1e-12))
                worst[out] = max(worst.get(out, 0.0), error)
            break
    return {"images": min(limit, int(batches.x.shape[0])), "max_relative_error": worst}


def check_options(alpha, temperature, hints: str, hint_weight, norm: str) -> None:
    """The distillation flags' ranges, refused in one line each before any work."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise UserError(f"--alpha {alpha}: a weight between 0 (teacher only) and 1 (labels only)")
    if not float(temperature) > 0:
        raise UserError(f"--temperature {temperature}: must be positive")
    if hints not in HINT_MODES:
        raise UserError(f"--hints {hints!r}: expected one of {', '.join(HINT_MODES)}")
    if float(hint_weight) < 0:
        raise UserError(f"--hint-weight {hint_weight}: must not be negative")
    if norm not in NORM_MODES:
        raise UserError(f"--norm {norm!r}: expected one of {', '.join(NORM_MODES)}")


def train_mode(module, as_original: bool) -> None:
    """Train mode; with `as_original` (kept weights) the student computes as the teacher does: the
    graph's own BatchNorm layers normalise with their running statistics (affine parameters still
    trained) and Dropout is off. A dropped channel is noise the eval-mode teacher never has: on the
    zoo's SqueezeNet two epochs with Dropout on took the refitted student from 0.009 to 0.24."""
    module.train()
    if as_original:
        inserted = set((getattr(module, "inserted_norms", {}) or {}).values())
        for key, op in module.ops.items():
            if key not in inserted and isinstance(op, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout)):
                op.eval()


def epoch_record(epoch: int, train_loss: float, measured: dict, lr: float, seconds: float, rate: float) -> dict:
    """One epoch's line of the JSONL log (held-out figures: trainers.distill.Measures.summary)."""
    record = {
        "epoch": epoch,
        "train_loss": round(train_loss, 6),
        "heldout_loss": round(measured["loss"], 6),
        "relative_error": round(measured["relative_error"], 6),
        "agreement": None if measured["agreement"] is None else round(measured["agreement"], 6),
        "lr": lr,
        "seconds": round(seconds, 3),
        "images_per_s": round(rate, 2),
    }
    if "accuracy" in measured:
        record["test_acc"] = round(measured["accuracy"], 6)
    return record


def epoch_line(record: dict, measured: dict) -> str:
    return (
        f"epoch {record['epoch']}: train loss {record['train_loss']:.4f} | held-out loss {measured['loss']:.4f}, "
        f"relative error {measured['relative_error']:.4f}"
        + agreement_text(measured)
        + (f", accuracy {100 * measured['accuracy']:.1f} %" if "accuracy" in measured else "")
        + f" | {record['images_per_s']:.0f} img/s"
    )


def agreement_text(measured: dict) -> str:
    return "" if measured.get("agreement") is None else f", agreement {100 * measured['agreement']:.1f} %"


def student_init_of(proto: onnx.ModelProto, given: str | None) -> str:
    if given is not None:
        return given
    meta = {p.key: p.value for p in proto.metadata_props}
    return meta.get("onnxprune.init", "keep")


@dataclass
class DistillResult:
    accuracy: float | None  # test accuracy when the data has labels and the student a class output
    relative_error: float  # held-out, worst output, after training
    relative_error_before: float
    agreement: float | None  # held-out top-1 agreement with the teacher (worst class output)
    agreement_before: float | None
    heldout: dict
    heldout_before: dict  # as pruned, before recalibration and training
    train_loss: float
    epochs: int
    wall_seconds: float
    train_seconds: float
    images_per_s: float
    log_path: str | None
    output_path: str | None
    device: str
    teacher: dict
    outputs: list
    hints: list
    input: dict
    skipped_images: int = 0
    heldout_recalibrated: dict | None = None  # after the least-squares refit (trainers.recalibrate), before training
    refit: list = field(default_factory=list)  # per layer: trainers.recalibrate.recalibrate's records
    selected: dict = field(default_factory=dict)  # which student was exported (trainers.keep_best)
    config: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    onnx_check: dict | None = None
    params: int = 0
    resumed_from_epoch: int = 0
    norm: dict = field(default_factory=dict)
    verdict: dict = field(default_factory=dict)
    export: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)
