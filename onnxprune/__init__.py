"""onnxprune: complexity-driven structured pruning of CNNs, directly on ONNX graphs.

Public API: `profile`, `channel_groups`, `prune_channels`, `shrink`, `check`.

The names are bound on first use (PEP 562), so `import onnxprune` (and every CLI verb, which
imports the package first) does not pay for onnx, onnx-graphsurgeon and the analysis until it
needs them: `onnxprune --version` stays a fraction of a second.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

from onnxprune.errors import CheckFailed, InternalError, UserError  # noqa: E402  (light: no dependency)

# public name -> the module that defines it
_LAZY = {
    "Profile": "onnxprune.analysis.complexity",
    "profile": "onnxprune.analysis.complexity",
    "Dependencies": "onnxprune.analysis.groups",
    "Group": "onnxprune.analysis.groups",
    "channel_groups": "onnxprune.analysis.groups",
    "shrink": "onnxprune.prune.shrink",
}

if TYPE_CHECKING:  # pragma: no cover
    from onnxprune.analysis.complexity import Profile, profile
    from onnxprune.analysis.groups import Dependencies, Group, channel_groups
    from onnxprune.prune.shrink import shrink


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'onnxprune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # bound once; later lookups skip this hook
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def prune_channels(model, keep, input_shapes=None, check=True):
    """Prune a model (path, ModelProto or Dependencies): `keep` maps group id -> kept channel indices."""
    from onnxprune.analysis.groups import Dependencies, channel_groups
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
