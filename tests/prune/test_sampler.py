"""The sampler: draws follow complexity shares; step arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.analysis.complexity import build_layers
from onnxprune.analysis.groups import channel_groups
from onnxprune.prune.sampler import draw_group, next_count
from onnxprune.prune.shrink import Bookkeeper


@pytest.mark.parametrize("figure", [0, 1, 2])
def test_draw_frequencies_follow_complexity_share(zoo_model, figure):
    deps = channel_groups(zoo_model("vgg16_cifar", "legacy", "kept"))
    book = Bookkeeper(deps, build_layers(deps.mg))
    candidates = [g.id for g in deps.prunable]
    weights = np.array([book.group_weight(g, figure) for g in candidates])
    assert np.all(weights > 0)
    rng, draws = np.random.default_rng(1234), 40_000
    counts = np.bincount(
        [candidates.index(draw_group(rng, candidates, weights)) for _ in range(draws)], minlength=len(candidates)
    )
    expected = draws * weights / weights.sum()
    big = expected >= 5  # chi-square needs expected counts of at least ~5 per cell
    observed = np.append(counts[big], counts[~big].sum())
    expect = np.append(expected[big], expected[~big].sum())
    if expect[-1] == 0:
        observed, expect = observed[:-1], expect[:-1]
    chi2 = float(((observed - expect) ** 2 / expect).sum())
    dof = len(observed) - 1
    # 99.9th percentile of chi-square (Wilson-Hilferty): fixed seed, so this is not flaky
    z = 3.09
    critical = dof * (1 - 2 / (9 * dof) + z * np.sqrt(2 / (9 * dof))) ** 3
    assert chi2 < critical
    # and the draws are not uniform: the heaviest group is drawn far more than the lightest
    assert counts[np.argmax(weights)] > 3 * counts[np.argmin(weights)]


def test_draw_falls_back_to_uniform_when_weights_vanish():
    rng = np.random.default_rng(0)
    picks = {draw_group(rng, [3, 5], np.zeros(2)) for _ in range(50)}
    assert picks == {3, 5}


@pytest.mark.parametrize(
    "current,step,min_channels,round_to,expected",
    [
        (64, 0.1, 1, 1, 58),
        (5, 0.1, 1, 1, 4),  # at least one channel
        (2, 0.1, 2, 1, None),  # at the minimum
        (64, 0.1, 1, 8, 56),  # multiple of 8
        (16, 0.1, 9, 8, None),  # minimum rounds up to 16
        (100, 0.5, 1, 1, 50),
    ],
)
def test_next_count(current, step, min_channels, round_to, expected):
    assert next_count(current, step, min_channels, round_to) == expected
