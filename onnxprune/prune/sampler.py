"""Choosing what to prune: the paper's complexity-weighted draw, and the baselines.

- `draw_group`: ONE group, with probability proportional to its share of the network's
  complexity in the chosen figure (params, FLOPs or memory). A group's complexity is the sum
  over the layers whose *output* channels it holds (its producers, their BatchNorms and the
  depthwise convs coupled to it) — the paper's per-layer weighting, lifted to coupled groups.
- `channels_to_remove`: which channels of the drawn group go: random (the paper) or the
  smallest L1 norm of the producers' weights (the train-prune-fine-tune baseline).
"""

from __future__ import annotations

import numpy as np

from onnxprune.analysis.groups import Dependencies, Group


def draw_group(rng: np.random.Generator, candidates: list[int], weights: np.ndarray) -> int:
    """Weighted random sampling of one group id among `candidates`."""
    weights = np.asarray(weights, dtype=np.float64)
    total = weights.sum()
    if total <= 0:  # no complexity left in any candidate: fall back to a uniform draw
        return candidates[int(rng.integers(len(candidates)))]
    return candidates[int(rng.choice(len(candidates), p=weights / total))]


def next_count(current: int, step: float, min_channels: int, round_to: int) -> int | None:
    """Channel count after one step on a group, or None when it is already at its minimum."""
    floor = max(min_channels, 1)
    floor = -(-floor // round_to) * round_to  # the minimum, rounded up to a multiple
    target = current - max(1, int(step * current))
    target = (target // round_to) * round_to
    target = max(target, floor)
    return target if target < current else None


def l1_importance(deps: Dependencies, group: Group) -> np.ndarray:
    """Per channel class of the group: L1 norm of its producers' weights (rows, bias, BN scale)."""
    importance = np.zeros(group.size, dtype=np.float64)
    for member in deps.members_of(group):
        if member.kind != "slice" or member.role != "producer":
            continue
        values = np.asarray(deps.mg.const_value(member.tensor), dtype=np.float64)
        if isinstance(member.extra, tuple) and member.extra[0] == "zero_point":  # an integer weight: q - zp
            values = values - np.asarray(member.extra[1], dtype=np.float64)
        values = np.abs(values)
        per_position = (
            values.sum(axis=tuple(a for a in range(values.ndim) if a != member.axis)) if values.ndim > 1 else values
        )
        ids = deps.ids(member.layout)
        in_group = deps.group_of_channel[ids] == group.id
        np.add.at(importance, deps.slot_of_channel[ids[in_group]], per_position[in_group])
    return importance


def channels_to_remove(
    rng: np.random.Generator, kept: np.ndarray, count: int, criterion: str, importance: np.ndarray | None = None
) -> np.ndarray:
    """`count` channel indices out of `kept` to remove."""
    if criterion == "l1":
        order = np.argsort(importance[kept], kind="stable")
        return kept[order[:count]]
    return rng.choice(kept, size=count, replace=False)
