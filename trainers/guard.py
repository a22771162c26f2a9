"""The divergence guard: never export and report a model that did not learn as if it did.

After the first epoch the guard looks at the training loss over the epoch's last quarter of steps
(the epoch's mean would include the first steps, taken before anything was learned):

* NaN or inf: the run diverged (checked at every step, whatever `--no-guard` says: there is
  nothing to export).
* within `UNINFORMED_TOLERANCE` (2 %) of ln(classes) *and* a test accuracy under 1.5x chance: the
  network learned nothing. ln(C) is the cross-entropy of the uniform prediction, and also of a
  network that learned only the class frequencies of a balanced set; over the last quarter of an
  epoch (thousands of images) the mean's noise is ~0.01 nats, while any network that learns moves
  it down by tenths of a nat within an epoch (the BN VGG-16 of the cpu recipe: ln 10 = 2.30 ->
  ~1.6). 2 % of ln(10) is 0.046 nats; the accuracy condition keeps a slow but learning run
  (loss 2.26, accuracy 20 %) from being stopped.

Distillation (`train --teacher`) has no ln(classes): its uninformed level is where it started, the
pruned graph as it came (before the least-squares recalibration and the epochs). After the first
epoch, a held-out distillation loss within 2 % of that value means the student learned nothing from
the teacher (`check_distill_epoch`); a student that already equals its teacher (loss under 1e-9) is
not judged. (Measured from the recalibrated start instead, the guard stopped students that were
learning slowly from a good start: PP-OCR's classifier, 2 % lower after epoch 1.)

An epoch of fewer than `MIN_STEPS` optimizer steps is not judged: a handful of steps says nothing
(smoke runs on a few dozen images); the verdict then reads "not judged".
"""

from __future__ import annotations

import math

from onnxprune.errors import UserError

UNINFORMED_TOLERANCE = 0.02
CHANCE_FACTOR = 1.5
MIN_STEPS = 20
ADVICE = "lower --lr, or train with --norm insert (or --no-guard to train on anyway)"


class DidNotLearn(UserError):
    """Exit 2; `verdict` is the result JSON's `verdict` entry (with the history so far)."""

    def __init__(self, message: str, verdict: dict):
        super().__init__(message)
        self.verdict = verdict


def uninformed(loss: float, test_accuracy: float, classes: int) -> bool:
    level = math.log(classes)
    return loss >= (1.0 - UNINFORMED_TOLERANCE) * level and test_accuracy < CHANCE_FACTOR / classes


def verdict(history: list[dict], classes: int, guarded: bool) -> dict:
    """The result JSON's verdict for a run that finished: learned, or not (then only with --no-guard)."""
    if not history:
        return {"status": "not trained", "guard": guarded}
    first = history[0]
    if first.get("steps", MIN_STEPS) < MIN_STEPS:
        return {"status": "not judged", "guard": guarded, "reason": f"fewer than {MIN_STEPS} steps in epoch 1"}
    tail = first.get("train_loss_tail", first["train_loss"])
    if first.get("epoch") == 1 and uninformed(tail, first["test_acc"], classes):
        return {
            "status": "did not learn",
            "guard": guarded,
            "epoch": 1,
            "train_loss": tail,
            "uninformed_loss": round(math.log(classes), 6),
        }
    return {"status": "learned", "guard": guarded}


def check_epoch(
    epoch: int, steps: int, tail_loss: float, test_accuracy: float, classes: int, history: list[dict]
) -> None:
    """After the first epoch: raise DidNotLearn when the loss is still at the uninformed level."""
    if epoch != 1 or steps < MIN_STEPS or not uninformed(tail_loss, test_accuracy, classes):
        return
    level = math.log(classes)
    raise DidNotLearn(
        f"the model did not learn: after epoch 1 the training loss is {tail_loss:.3f}, the uninformed level "
        f"ln({classes}) = {level:.3f}, and test accuracy {100 * test_accuracy:.1f} % is chance; nothing was "
        f"written; {ADVICE}",
        {
            "status": "did not learn",
            "guard": True,
            "epoch": 1,
            "train_loss": round(tail_loss, 6),
            "uninformed_loss": round(level, 6),
            "test_acc": test_accuracy,
            "history": history,
        },
    )


def check_step(loss: float, epoch: int, step_in_epoch: int, history: list[dict]) -> None:
    """At every step: a NaN/inf loss stops the run."""
    if math.isfinite(loss):
        return
    raise DidNotLearn(
        f"training diverged: the loss became {loss} at step {step_in_epoch + 1} of epoch {epoch}; nothing was "
        f"written; lower --lr (or train with --norm insert)",
        {"status": "diverged", "guard": True, "epoch": epoch, "train_loss": str(loss), "history": history},
    )


def distill_verdict(history: list[dict], before_loss: float, guarded: bool) -> dict:
    """The verdict of a finished distillation: learned, or not (then only with --no-guard)."""
    if not history:
        return {"status": "not trained", "guard": guarded}
    first = history[0]
    if first.get("steps", MIN_STEPS) < MIN_STEPS or before_loss < 1e-9:
        return {"status": "not judged", "guard": guarded, "reason": "fewer than 20 steps or nothing to learn"}
    if first.get("epoch") == 1 and first["heldout_loss"] >= (1.0 - UNINFORMED_TOLERANCE) * before_loss:
        return {"status": "did not learn", "guard": guarded, "epoch": 1, "heldout_loss": first["heldout_loss"]}
    return {"status": "learned", "guard": guarded}


def check_distill_epoch(epoch: int, steps: int, before_loss: float, after_loss: float, history: list[dict]) -> None:
    """After the first epoch: raise DidNotLearn when the held-out loss has not moved from its start."""
    if epoch != 1 or steps < MIN_STEPS or before_loss < 1e-9:
        return
    if after_loss < (1.0 - UNINFORMED_TOLERANCE) * before_loss:
        return
    raise DidNotLearn(
        f"the student did not learn from the teacher: after epoch 1 the held-out distillation loss is "
        f"{after_loss:.4g}, {before_loss:.4g} before training; nothing was written; lower --lr, or train with "
        f"--norm insert (or --no-guard to train on anyway)",
        {
            "status": "did not learn",
            "guard": True,
            "epoch": 1,
            "heldout_loss": after_loss,
            "heldout_loss_before": before_loss,
            "history": history,
        },
    )
