"""Formatting for people: SI numbers and rich tables shared by the verbs.

rich is imported where a table or markup is made (`LiteralTable` is made on first use): a `--json`
run and the Python API (`shrink` reports with `si`) never pay for it (about 15 ms of start-up)."""

from __future__ import annotations


def si(value: float, unit: str = "") -> str:
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f}{suffix}{unit}"
    return f"{value:.0f}{unit}"


def nbytes(value: float) -> str:
    for factor, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {suffix}"
    return f"{value:.0f} B"


def pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def literal(value) -> str:
    """User-provided text inside a rich markup string (a `console.print` line): printed as given."""
    from rich.markup import escape

    return escape(str(value))


def _literal(value):
    from rich.markup import escape

    return escape(value) if isinstance(value, str) else value


def _literal_table_class() -> type:
    from rich.table import Table

    class LiteralTable(Table):
        """The one table every verb prints: user-provided text (node, file and budget names such as
        `block[red]0/Conv` or `[[budget]]`) shows as given, because the title, caption, column headers
        and str cells are escaped. Pass a `rich.text.Text` (`Text.from_markup(...)`) to style a cell."""

        def __init__(self, *headers, title=None, caption=None, **kwargs):
            super().__init__(
                *(_literal(h) for h in headers), title=_literal(title), caption=_literal(caption), **kwargs
            )

        def add_column(self, header="", *args, **kwargs):
            super().add_column(_literal(header), *args, **kwargs)

        def add_row(self, *cells, **kwargs):
            super().add_row(*(_literal(c) for c in cells), **kwargs)

    LiteralTable.__module__ = __name__
    return LiteralTable


def __getattr__(name: str):
    """`LiteralTable`, a rich Table subclass, made on first use (rich is imported then)."""
    if name != "LiteralTable":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    table = globals()[name] = _literal_table_class()
    return table
