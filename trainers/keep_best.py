"""Keep the best student (`--keep-best`, default on): the refit start or an epoch, whichever is closest
to the teacher.

A student the refit (trainers.recalibrate) brought near its teacher can be moved away again by the
first optimizer steps. Adam scales each weight's step to about the learning rate whatever the size
of its gradient: a student identical to its teacher, whose gradients are rounding noise (1e-9),
moved 5 % away in one epoch at 1e-2 where SGD left it exact. And the zoo's SqueezeNet, 0.011 after
the refit, went to 0.221 in 2 epochs while its Dropout trained (now off for kept weights). So the
student's error is measured before the first step and after every epoch on a fixed slice of the
training images (never the held-out images, which report the result), and the weights of the lowest
are the ones exported. The slice is the last training images, ones the refit did not fit: scored on
its own fitting images, the refit looked best on MTCNN O-net while both epochs were closer on held-
out images (0.513 against 0.539). The snapshot travels in the checkpoint, so a resumed run chooses
as the uninterrupted one does.
"""

from __future__ import annotations

import torch

SELECTION_IMAGES = 256


def selection_range(count: int, fitted: int) -> tuple[int, int]:
    """[start, stop) of the selection images among `count` training images whose first `fitted` the
    refit read: the last SELECTION_IMAGES of the others; the first ones only when the refit read all."""
    start = max(fitted, count - SELECTION_IMAGES)
    return (start, count) if start < count else (0, min(count, SELECTION_IMAGES))


class BestState:
    """The student's weights at the lowest selection error seen so far."""

    def __init__(self, enabled: bool, measure, images: tuple[int, int] = (0, SELECTION_IMAGES)):
        self.enabled = enabled
        self.images = images  # [start, stop) of the training images measured
        self.measure = measure  # () -> relative error of the student, eval mode, on the selection images
        self.epoch: int | None = None
        self.error: float | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    @classmethod
    def on_training_images(cls, enabled: bool, train, fitted: int, make_batches, measure_on) -> BestState:
        """Measured on selection_range's slice of `train` (images, labels); `fitted`: how many of the
        first images the refit read; make_batches(x, y) -> batches; measure_on(batches) -> error."""
        first, stop = selection_range(len(train[0]), fitted)
        batches = make_batches(train[0][first:stop], train[1][first:stop])
        return cls(enabled, lambda: measure_on(batches), (first, stop))

    def offer(self, epoch: int, module) -> None:
        """Measure the student as it is now (after `epoch` epochs; 0: before any step); keep it if best."""
        if not self.enabled:
            return
        error = float(self.measure())
        if self.error is None or error < self.error:
            self.epoch, self.error = epoch, error
            self.weights = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}

    def restore(self, module, last_epoch: int) -> bool:
        """Load the kept weights unless they are the last epoch's; True when they were loaded."""
        if not self.enabled or self.weights is None or self.epoch == last_epoch:
            return False
        module.load_state_dict(self.weights)
        return True

    def state(self) -> dict:
        return {"epoch": self.epoch, "error": self.error, "weights": self.weights}

    def load(self, state: dict | None) -> None:
        if state:
            self.epoch, self.error, self.weights = state["epoch"], state["error"], state["weights"]

    def describe(self) -> dict:
        return {
            "enabled": self.enabled,
            "epoch": self.epoch,
            "selection_relative_error": self.error,
            "selection_images": f"training images {self.images[0]}-{self.images[1] - 1}, not augmented",
        }
