"""onnxprune: complexity-driven structured pruning of CNNs, directly on ONNX graphs.

Public API: `profile`, `channel_groups`, `prune_channels`, `shrink`, `check`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from onnxprune.analysis.complexity import Profile, profile  # noqa: E402
from onnxprune.analysis.groups import Dependencies, Group, channel_groups  # noqa: E402
from onnxprune.errors import CheckFailed, InternalError, UserError  # noqa: E402
from onnxprune.prune.shrink import shrink  # noqa: E402  (bound eagerly: the submodule has the same name)


def prune_channels(model, keep, input_shapes=None, check=True):
    """Prune a model (path, ModelProto or Dependencies): `keep` maps group id -> kept channel indices."""
    from onnxprune.prune.surgery import prune_channels as _prune

    deps = model if isinstance(model, Dependencies) else channel_groups(model, input_shapes)
    return _prune(deps, keep, check=check)


def check(*args, **kwargs):
    """Budget verdict for models; see onnxprune.measure.budget.check."""
    from onnxprune.measure.budget import check as _check

    return _check(*args, **kwargs)


__all__ = [
    "Profile",
    "profile",
    "channel_groups",
    "prune_channels",
    "shrink",
    "check",
    "UserError",
    "CheckFailed",
    "InternalError",
    "Dependencies",
    "Group",
]
