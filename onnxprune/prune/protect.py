"""Protected layers (Torch-Pruning's `ignored_layers`): `shrink --exclude` and `--max-ratio`.

- `--exclude PATTERN`: a node-name glob (`head/*`, `Conv_12`) or `op:TYPE` (`op:Gemm`). A group
  with an excluded producer is not pruned at all (its channels are shared with that layer).
- `--max-ratio NODE=R`: at most the fraction R of that layer's output channels is removed: its
  group keeps at least ceil((1 - R) * channels). NODE is a name or a glob.

Patterns are matched against the producers of the channel groups (by name, or `Op#index` for an
unnamed node); a pattern that matches no node of the graph at all is a typo and refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from onnxprune.errors import UserError


@dataclass
class Protection:
    """What the user protected, resolved on one model's groups."""

    frozen: dict = field(default_factory=dict)  # group id -> the patterns that froze it
    floors: dict = field(default_factory=dict)  # group id -> fewest channels it keeps
    notes: list = field(default_factory=list)  # one entry per option, for the report

    def floor(self, gid: int, min_channels: int) -> int:
        return max(min_channels, self.floors.get(gid, 0))


def parse_max_ratios(specs: list[str] | None) -> dict[str, float]:
    """`["head*=0.3"]` -> {"head*": 0.3}."""
    ratios: dict[str, float] = {}
    for spec in specs or []:
        name, sep, text = spec.rpartition("=")
        try:
            ratio = float(text)
        except ValueError:
            ratio = -1.0
        if not sep or not name or not 0 <= ratio <= 1:
            raise UserError(
                f"--max-ratio {spec!r}: expected NODE=R with R a fraction in [0, 1], e.g. fc=0.3 "
                f"(at most 30% of fc's output channels removed)"
            )
        ratios[name] = ratio
    return ratios


def _matches(pattern: str, name: str, label: str, op: str) -> bool:
    if pattern.startswith("op:"):
        return op == pattern[3:]
    return fnmatchcase(name, pattern) or fnmatchcase(label, pattern)


def _node_matches(mg, pattern: str) -> list[str]:
    from onnxprune.read.graph import display_name

    return [
        display_name(node, i)
        for i, node in enumerate(mg.nodes)
        if _matches(pattern, node.name or "", display_name(node, i), node.op)
    ]


def resolve(deps, exclude: list[str] | None = None, max_ratio: dict[str, float] | None = None) -> Protection:
    """The groups each pattern freezes or limits; refuses a pattern that matches no node."""
    protection = Protection()
    for pattern, ratio in [(p, None) for p in exclude or []] + list((max_ratio or {}).items()):
        flag = "--exclude" if ratio is None else "--max-ratio"
        nodes = _node_matches(deps.mg, pattern)
        if not nodes:
            raise UserError(
                f"{flag} {pattern!r} matches no node of the model (a node-name glob such as 'head*', "
                f"or op:TYPE such as op:Gemm; `onnxprune profile` lists the names)"
            )
        groups = []
        for group in deps.prunable:
            producers = [r for r in group.roots if r.index >= 0 and _matches(pattern, r.node, r.label, r.op)]
            if not producers:
                continue
            groups.append(group.id)
            if ratio is None:
                protection.frozen.setdefault(group.id, []).append(pattern)
            else:
                keep = math.ceil((1 - ratio) * group.size - 1e-9)
                protection.floors[group.id] = max(protection.floors.get(group.id, 0), keep)
        note = {"option": flag, "pattern": pattern, "nodes": nodes, "groups": groups}
        if ratio is not None:
            note["max_ratio"] = ratio
        protection.notes.append(note)
    return protection
