"""Complexity budgets: budget TOML files and `check()` (sizes are parsed and printed by measure.figures).

A budget caps three figures of a model's profile (see `onnxprune.profile`):

* ``params``  -- number of parameters (weights + biases),
* ``flops``   -- multiply-accumulates of one forward pass,
* ``memory``  -- the profile's ``memory_bytes``.

Limits come from the command line (``--max-params`` ...) and/or a budget TOML file
(format in docs/check.md). A model must satisfy every limit that applies to it; when
several limits apply to the same figure, the tightest one decides and is reported.

Pure Python + onnx: no torch, no onnxruntime needed here.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from onnxprune.errors import UserError

from .figures import FIGURES, parse_bytes, parse_count

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class Budget:
    """Limits from one source (the command line, or one [[budget]] entry of a TOML file)."""

    source: str  # "command line" or "budgets.toml [[budget]] #2 (name)"
    limits: Mapping[str, int]  # figure -> limit, only the figures this source caps
    patterns: tuple[str, ...] = ()  # absolute glob patterns; empty = applies to every model
    matched: tuple[Path, ...] = ()  # resolved files the patterns matched

    def applies_to(self, model: Path) -> bool:
        return not self.patterns or model.resolve() in self.matched


def _parse_limit(figure: str, value: Any, where: str) -> int:
    flag, key, _ = FIGURES[figure]
    label = f"{where} {key}" if where else flag
    limit = parse_bytes(value, label) if figure == "memory" else parse_count(value, label)
    if limit <= 0:
        raise UserError(
            f"{label} {value!r}: a budget must be positive, e.g. {label} {'4MiB' if figure == 'memory' else '2.5M'}"
        )
    return limit


def cli_budget(max_params: Any = None, max_flops: Any = None, max_memory: Any = None) -> Optional[Budget]:
    """The budget given by --max-* flags (strings or numbers), or None when no flag is set."""
    limits = {}
    for figure, value in (("params", max_params), ("flops", max_flops), ("memory", max_memory)):
        if value is not None:
            limits[figure] = _parse_limit(figure, value, "")
    return Budget("command line", limits) if limits else None


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise UserError(f"--budgets {path}: reading TOML on Python < 3.11 needs `pip install tomli`") from None
    if not path.exists():
        raise UserError(f"--budgets {path}: no such file; give the path of a budget .toml file (see docs/check.md)")
    if path.is_dir():
        raise UserError(f"--budgets {path}: is a directory; give the path of a budget .toml file")
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"--budgets {path}: not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--budgets {path}: cannot read it ({type(exc).__name__}: {exc})") from None


_ENTRY_KEYS = {"models", "name", "max_params", "max_flops", "max_memory"}


def _expand(pattern: str, base: Path) -> tuple[str, list[Path]]:
    expanded = os.path.expanduser(pattern)
    full = expanded if os.path.isabs(expanded) else os.path.join(glob.escape(str(base)), expanded)
    files = sorted({Path(p).resolve() for p in glob.glob(full, recursive=True) if os.path.isfile(p)})
    return full, files


def load_budgets(path: PathLike) -> list[Budget]:
    """Read a budget TOML file: one Budget per ``[[budget]]`` entry, globs already expanded.

    Raises UserError for a missing/invalid file, unknown keys, an entry without limits, or a
    glob that matches no file (a typo would otherwise silently check nothing).
    """
    path = Path(path)
    data = _load_toml(path)
    where_file = f"--budgets {path}"
    unknown = sorted(set(data) - {"budget"})
    if unknown:
        raise UserError(
            f"{where_file}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
            f"the file holds [[budget]] entries only (see docs/check.md)"
        )
    entries = data.get("budget")
    if not entries:
        raise UserError(
            f'{where_file}: no [[budget]] entries; add one, e.g. [[budget]] models = "*.onnx" max_params = "2.5M"'
        )
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise UserError(f"{where_file}: `budget` must be an array of tables, written [[budget]] (see docs/check.md)")
    base = path.resolve().parent
    budgets = []
    for index, entry in enumerate(entries, start=1):
        name = entry.get("name")
        where = f"{where_file} [[budget]] #{index}"
        if name is not None:
            if not isinstance(name, str):
                raise UserError(f"{where}: name must be a string")
            where += f" ({name})"
        unknown = sorted(set(entry) - _ENTRY_KEYS)
        if unknown:
            raise UserError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(_ENTRY_KEYS))}"
            )
        models = entry.get("models")
        if isinstance(models, str):
            models = [models]
        if not models or not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
            raise UserError(f'{where}: `models` must be a glob or a list of globs, e.g. models = "models/*.onnx"')
        limits = {}
        for figure, (_, key, _) in FIGURES.items():
            if key in entry:
                limits[figure] = _parse_limit(figure, entry[key], where)
        if not limits:
            raise UserError(f"{where}: sets no limit; give at least one of max_params, max_flops, max_memory")
        patterns, matched = [], set()
        for pattern in models:
            full, files = _expand(pattern, base)
            if not files:
                raise UserError(f"{where}: models = {pattern!r} matches no file (relative to {base})")
            patterns.append(full)
            matched.update(files)
        budgets.append(Budget(where.removeprefix("--budgets "), limits, tuple(patterns), tuple(sorted(matched))))
    return budgets


# ---------------------------------------------------------------------------------------------
# check()
# ---------------------------------------------------------------------------------------------


@dataclass
class FigureVerdict:
    figure: str  # "params" | "flops" | "memory"
    value: int
    limit: Optional[int]  # None: no budget caps this figure for this model
    budget: Optional[str]  # the source of the (tightest) limit

    @property
    def ok(self) -> bool:
        return self.limit is None or self.value <= self.limit

    @property
    def over_by(self) -> int:
        """How much the value exceeds the limit (0 when within budget)."""
        return 0 if self.ok else self.value - self.limit  # type: ignore[operator]

    @property
    def over_by_pct(self) -> float:
        """over_by as a percentage of the limit (0.0 when within budget)."""
        return 0.0 if self.ok else 100.0 * self.over_by / self.limit  # type: ignore[operator]

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "limit": self.limit,
            "ok": self.ok,
            "over_by": self.over_by,
            "over_by_pct": round(self.over_by_pct, 3),
            "budget": self.budget,
        }


@dataclass
class ModelVerdict:
    model: str
    figures: dict[str, FigureVerdict]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.figures.values())

    @property
    def over(self) -> list[str]:
        return [name for name, f in self.figures.items() if not f.ok]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ok": self.ok,
            "over": self.over,
            "figures": {name: f.to_json() for name, f in self.figures.items()},
        }


@dataclass
class CheckResult:
    models: list[ModelVerdict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.models)

    @property
    def failed(self) -> list[ModelVerdict]:
        return [m for m in self.models if not m.ok]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": len(self.models),
            "over_budget": len(self.failed),
            "models": [m.to_json() for m in self.models],
        }


class MeasuredTotals(dict):
    """Profile totals, plus a line naming nodes whose weights they leave out ("" when none)."""

    def __init__(self, totals: Mapping[str, int], uncounted: str = ""):
        super().__init__(totals)
        self.uncounted = uncounted


def _profile_totals(model: Path, input_shapes: Optional[dict[str, list[int]]]) -> dict[str, int]:
    try:
        from onnxprune.analysis.complexity import (
            profile,  # imported late: complexity is heavier and not needed to parse
        )
    except ImportError as exc:  # pragma: no cover - a broken install
        raise UserError(f"{model}: cannot profile it, onnxprune.profile is unavailable ({exc})") from None

    result = profile(str(model), input_shapes=input_shapes)
    return MeasuredTotals(result.totals, uncounted=result.uncounted_summary())


# Replaceable in tests; (model path, input shapes) -> Profile.totals-like dict.
_profile: Callable[[Path, Optional[dict[str, list[int]]]], Mapping[str, int]] = _profile_totals


def check(
    models: Optional[Sequence[PathLike]] = None,
    max_params: Any = None,
    max_flops: Any = None,
    max_memory: Any = None,
    budgets_file: Optional[PathLike] = None,
    input_shapes: Optional[dict[str, list[int]]] = None,
    allow_uncounted: bool = False,
) -> CheckResult:
    """Profile each model and compare it with every budget that applies to it.

    `models`: model paths; when empty and `budgets_file` is given, every file the budget
    globs match is checked. `max_*`: limits for every model (SI strings like "2.5M"/"4MiB"
    or ints). `budgets_file`: a TOML file of [[budget]] entries (docs/check.md). Raises
    UserError for bad input: no budget at all, a missing model, a model no budget applies
    to, a bad TOML file or value, or a model with weights profile cannot count (a budget
    check must not pass what it did not measure) unless `allow_uncounted`, which warns instead.
    """
    budgets: list[Budget] = []
    flags = cli_budget(max_params, max_flops, max_memory)
    if flags:
        budgets.append(flags)
    if budgets_file is not None:
        budgets.extend(load_budgets(budgets_file))
    if not budgets:
        raise UserError(
            "no budget given; pass --max-params, --max-flops, --max-memory and/or --budgets FILE.toml "
            "(e.g. onnxprune check model.onnx --max-params 2.5M)"
        )

    if models:
        paths = [Path(m) for m in models]
        for path in paths:
            if not path.exists():
                raise UserError(f"{path}: no such file; give the path of an .onnx model")
            if path.is_dir():
                raise UserError(
                    f"{path}: is a directory; give the path of an .onnx model file (or a glob in --budgets)"
                )
    elif budgets_file is not None:
        seen: dict[Path, None] = {}
        for budget in budgets:
            for match in budget.matched:
                seen.setdefault(match, None)
        paths = list(seen)
    else:
        raise UserError(
            "no model given; name at least one .onnx model (e.g. onnxprune check model.onnx --max-params 2.5M)"
        )

    result = CheckResult()
    for path in paths:
        applicable = [b for b in budgets if b.applies_to(path)]
        if not applicable:
            raise UserError(
                f"{path}: no budget applies to it (no [[budget]] glob in {budgets_file} matches it "
                f"and no --max-* flag is given)"
            )
        totals = _profile(path, input_shapes)
        uncounted = getattr(totals, "uncounted", "")
        if uncounted and not allow_uncounted:
            raise UserError(
                f"{path}: {uncounted}; a budget check cannot pass what it did not measure "
                f"(--allow-uncounted checks the counted part anyway)"
            )
        if uncounted:
            print(f"onnxprune: warning: {path}: {uncounted}", file=sys.stderr)
        figures = {}
        for figure, (_, _, total_key) in FIGURES.items():
            value = int(totals[total_key])
            limit, source = None, None
            for budget in applicable:
                if figure in budget.limits and (limit is None or budget.limits[figure] < limit):
                    limit, source = budget.limits[figure], budget.source
            figures[figure] = FigureVerdict(figure, value, limit, source)
        result.models.append(ModelVerdict(str(path), figures))
    return result
