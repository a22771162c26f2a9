"""The figures a budget caps, and their sizes as people write them: `12M`, `1.5G`, `200MiB`, `3e9`
parsed exactly (SI for counts, SI or IEC for bytes), and printed back."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Union

from onnxprune.errors import UserError
from onnxprune.report import nbytes, si

# The figures a budget can cap, in display order: figure -> (flag, TOML key, Profile.totals key).
FIGURES: dict[str, tuple[str, str, str]] = {
    "params": ("--max-params", "max_params", "params"),
    "flops": ("--max-flops", "max_flops", "flops"),
    "memory": ("--max-memory", "max_memory", "memory_bytes"),
}

# ---------------------------------------------------------------------------------------------
# SI parsing
# ---------------------------------------------------------------------------------------------

_NUMBER = r"(?P<num>[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)"
_COUNT_RE = re.compile(rf"^{_NUMBER}\s*(?P<unit>[kKmMgGtT]?)$")
_BYTES_RE = re.compile(rf"^{_NUMBER}\s*(?P<unit>(?:[kKmMgGtT][iI]?)?[bB]?)$")

_SI = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_IEC = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def _to_int(num: str, scale: int) -> int:
    try:
        value = Decimal(num.replace("_", "")) * scale
    except ArithmeticError:  # InvalidOperation, Overflow
        raise ValueError(num) from None
    if not value.is_finite() or value.adjusted() > 30:  # 1e999999999 would be a huge int
        raise ValueError(num)
    return int(value.to_integral_value())  # 1.2345k -> 1234 (nearest integer)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):  # True is an int to Python, never a size
        raise ValueError(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(value)
        return repr(value)
    if isinstance(value, str):
        return value.strip()
    raise ValueError(value)


def parse_count(value: Union[str, int, float], flag: str = "--max-params") -> int:
    """A count with an optional SI suffix: ``"2.5M" -> 2_500_000``.

    Accepts plain integers (``"1500"``, ``1500``, ``"1_500"``), decimals with a suffix
    ``k/K`` (10^3), ``M`` (10^6), ``G`` (10^9), ``T`` (10^12) and exponents (``"1e6"``).
    Raises UserError naming `flag` and showing an example.
    """
    try:
        text = _as_text(value)
        match = _COUNT_RE.match(text)
        if not match:
            raise ValueError(text)
        result = _to_int(match["num"], _SI[match["unit"].lower()])
    except ValueError:
        raise UserError(
            f"{flag} {value!r}: not a count; use a number with an optional k/M/G/T suffix, e.g. {flag} 2.5M"
        ) from None
    return result


def parse_bytes(value: Union[str, int, float], flag: str = "--max-memory") -> int:
    """A size in bytes: ``"4MB" -> 4_000_000``, ``"4MiB" -> 4 * 2**20``, ``"512" -> 512``.

    Decimal units ``kB/KB, MB, GB, TB`` (also without the B: ``4M``) are powers of 1000;
    binary units ``KiB, MiB, GiB, TiB`` (also ``Ki, Mi`` ...) are powers of 1024; a plain
    number is bytes. Units are case-insensitive. Raises UserError naming `flag`.
    """
    try:
        text = _as_text(value)
        match = _BYTES_RE.match(text)
        if not match:
            raise ValueError(text)
        unit = match["unit"].lower()
        if unit.endswith("b"):
            unit = unit[:-1]
        scale = _IEC[unit] if unit.endswith("i") else _SI[unit]
        result = _to_int(match["num"], scale)
    except (ValueError, KeyError):
        raise UserError(
            f"{flag} {value!r}: not a size; use bytes or a unit such as kB, MB, GB (x1000) or "
            f"KiB, MiB, GiB (x1024), e.g. {flag} 4MiB"
        ) from None
    return result


# ---------------------------------------------------------------------------------------------
# Formatting for people
# ---------------------------------------------------------------------------------------------


def format_count(n: Union[int, float, None]) -> str:
    """``15_000_000 -> "15.00M"``, ``999 -> "999"``; None -> "-". The same form as `profile`'s tables
    (report.si), so a figure reads alike in `check`, `bench` and `profile`."""
    return "-" if n is None else si(n)


def format_bytes(n: Union[int, float, None], binary: bool = True) -> str:
    """``4 * 2**20 -> "4.00 MiB"`` (binary, default, as `profile`) or ``4_000_000 -> "4.00 MB"``; None -> "-"."""
    if n is None:
        return "-"
    if binary:
        return nbytes(n)
    for suffix, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {suffix}"
    return f"{n:.0f} B"


def format_figure(figure: str, n: Union[int, float, None]) -> str:
    """Format a budget figure's value: bytes for memory, SI counts otherwise."""
    return format_bytes(n) if figure == "memory" else format_count(n)
