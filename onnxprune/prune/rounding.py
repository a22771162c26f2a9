"""`--round-to auto` (the default): channel counts that onnxruntime's CPU kernels like.

Measured by benchmarks/kernel_multiples.py (figures in benchmarks/RESULTS.md, "Channel multiples"):
time per multiply-accumulate of conv chains whose channel count c runs over 32..64, onnxruntime 1
thread, grouped by the largest power of two dividing c (1.00 = the best count):

    x86-64 AVX-512 (NCHWc block 16)  c % 16 == 0   c % 8 == 0   c % 4 == 0   odd c
    3x3 conv                         1.05          1.41         1.44         1.65
    1x1 conv                         1.06          1.42         1.46         1.33
    depthwise block                  1.04          1.19         1.20         2.78

onnxruntime runs convs in its blocked NCHWc layout only when the channels are a multiple of the
block (16 with AVX-512, 8 with AVX2; a multiple of 16 is both), and depthwise convs fall off
their vector path entirely on counts that are not a multiple of 4. So every group that feeds or
leaves a Conv keeps a multiple of 16. Dense layers (Gemm, MatMul) showed no such step and keep
exact counts. A group smaller than its multiple halves the multiple until it holds one; a group
that holds one keeps it even if it then cannot lose channels (a 16-channel group stays whole, a
24-channel one can go to 16): cutting MobileNetV2's 16/24-channel groups to 8 ran its 1x1 convs
at 112x112 at 23 GMAC/s instead of 75 and added Reorder nodes (per node, `benchmarks/RESULTS.md`,
issue 13), so the time saved lagged far behind the FLOPs saved. The multiples are the same whatever machine
prunes, so one model file serves x86 and ARM (NEON's 4-lane blocks divide 16 as well).

Each step's count is rounded to the multiple *without bias* (`unbiased_count`): down or up at
random so that on average a draw removes `step` of the group, as in the paper. The budget
always holds: the loop stops only below the target. If the target is unreachable with these
multiples, shrink falls back to exact counts (`--round-to 1`, the paper's behaviour, which
draws no extra random numbers) and says so in its report.
"""

from __future__ import annotations

import numpy as np

from onnxprune.analysis.complexity import Layer
from onnxprune.analysis.groups import Dependencies
from onnxprune.errors import UserError

AUTO = "auto"
KIND_MULTIPLES = {"conv": 16, "depthwise": 16, "dense": 1}


def parse_round_to(value: int | str) -> int | str:
    """`auto` or a positive integer (given as int or text); UserError otherwise."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UserError(f"--round-to {value!r}: give auto or a positive integer (1 = exact counts)") from None
    if number < 1 or (isinstance(value, float) and value != number):
        raise UserError("--round-to must be at least 1 (or auto)")
    return number


def layer_kind(layer: Layer) -> str | None:
    if layer.op in ("Conv", "ConvTranspose"):
        return "depthwise" if layer.in_fixed is not None else "conv"
    if layer.op in ("Gemm", "MatMul"):
        return "dense"
    return None  # normalisation layers have no kernel preference


def group_multiples(deps: Dependencies, layers: list[Layer], round_to: int | str) -> dict[int, int]:
    """The channel multiple each prunable group keeps."""
    if round_to != AUTO:
        return {g.id: int(round_to) for g in deps.prunable}
    kinds: dict[int, set] = {}
    for layer in layers:
        kind = layer_kind(layer)
        if kind is None:
            continue
        for tensor in (layer.in_tensor, layer.out_tensor):
            layout = deps.layouts.get(tensor) if tensor else None
            if layout is not None:
                for gid in deps.groups_in(layout):
                    kinds.setdefault(int(gid), set()).add(kind)
    multiples = {}
    for group in deps.prunable:
        multiple = max((KIND_MULTIPLES[k] for k in kinds.get(group.id, ())), default=1)
        while multiple > 1 and group.size < multiple:  # too small to hold one multiple
            multiple //= 2
        multiples[group.id] = multiple
    return multiples


def unbiased_count(current: int, step: float, floor: int, multiple: int, rng: np.random.Generator) -> int:
    """The count after one step on a group, rounded to `multiple` *without bias*: the paper's exact
    count lies between two multiples and is rounded down or up with the probabilities that keep
    its expectation, so on average a draw removes `step` of the group's channels as in the paper.

    Always rounding down removed 25-50 % of a small group per draw (64 -> 48 at step 0.1) but
    about 10 % of a large one, which moved the cut from the FLOPs-weighted draw's intent towards
    the small early high-resolution groups, whose convs run at the most MACs per second: VGG-16
    CIFAR lost 2x the FLOPs but kept its slow 2x2/4x4 512-channel layers (per node, RESULTS.md,
    issue 13). Rounding up to the current count removes nothing this draw. An exact count that
    is already a multiple (so every count when `multiple` is 1) draws no random number.
    """
    exact = current - max(1, int(step * current))
    lower = exact // multiple * multiple
    count = lower
    if lower < exact and rng.random() < (exact - lower) / multiple:
        count = lower + multiple
    return min(current, max(count, -(-floor // multiple) * multiple))
