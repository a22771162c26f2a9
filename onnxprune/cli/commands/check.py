"""`onnxprune check`: fail (exit 1) when a model is over its params / FLOPs / memory budget.

Exit 0: every model within every budget; 1: some model over (table or JSON printed first);
2: bad input (missing model, bad TOML, bad size, no budget at all). Format: docs/check.md.
"""

from __future__ import annotations

from typing import List, Optional

import typer

from onnxprune.cli.app import app, console, emit_json, input_shape_option, parse_input_shapes
from onnxprune.errors import CheckFailed


@app.command()
def check(
    models: Optional[List[str]] = typer.Argument(
        None,
        metavar="MODEL",
        show_default=False,
        help="ONNX models to check. Omit with --budgets to check every model its globs match.",
    ),
    max_params: Optional[str] = typer.Option(
        None, "--max-params", metavar="N", help="Parameter budget for every model, e.g. 2.5M (k, M, G, T)."
    ),
    max_flops: Optional[str] = typer.Option(
        None, "--max-flops", metavar="N", help="Multiply-accumulate budget for every model, e.g. 40M."
    ),
    max_memory: Optional[str] = typer.Option(
        None, "--max-memory", metavar="SIZE", help="Memory budget for every model, e.g. 4MiB or 4MB."
    ),
    budgets: Optional[str] = typer.Option(
        None, "--budgets", metavar="FILE.toml", help="Budget file mapping model globs to limits (docs/check.md)."
    ),
    input_shape: Optional[List[str]] = input_shape_option(),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable verdicts on stdout."),
    allow_uncounted: bool = typer.Option(
        False,
        "--allow-uncounted",
        help="Check a model even if some of its weights sit in ops profile cannot count (warns); default: exit 2.",
    ),
) -> None:
    """Check models against complexity budgets: exit 0 within, 1 over budget, 2 bad input."""
    from onnxprune.measure.budget import check as run_check
    from onnxprune.measure.figures import FIGURES, format_figure

    result = run_check(
        models or None,
        max_params=max_params,
        max_flops=max_flops,
        max_memory=max_memory,
        budgets_file=budgets,
        input_shapes=parse_input_shapes(input_shape, models[0] if models else None),
        allow_uncounted=allow_uncounted,
    )
    if json_out:
        emit_json(result.to_json())
    else:
        from rich.text import Text

        from onnxprune.report import LiteralTable

        table = LiteralTable(title="Complexity budget check", show_lines=False)
        for column, justify in (
            ("model", "left"),
            ("figure", "left"),
            ("value", "right"),
            ("limit", "right"),
            ("verdict", "left"),
            ("budget", "left"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for verdict in result.models:
            first = True
            for name in FIGURES:
                fig = verdict.figures[name]
                if fig.limit is None:
                    continue
                if fig.ok:
                    mark = Text("ok", style="green")
                else:
                    mark = Text(
                        f"OVER by {format_figure(name, fig.over_by)} (+{fig.over_by_pct:.1f}%)", style="bold red"
                    )
                table.add_row(
                    verdict.model if first else "",
                    name,
                    format_figure(name, fig.value),
                    format_figure(name, fig.limit),
                    mark,
                    fig.budget or "",
                )
                first = False
        console.print(table)
        failed = result.failed
        if failed:
            console.print(f"[bold red]FAIL[/bold red]: {len(failed)} of {len(result.models)} model(s) over budget")
        else:
            console.print(f"[bold green]PASS[/bold green]: {len(result.models)} model(s) within budget")
    if not result.ok:
        details = "; ".join(f"{m.model} ({', '.join(m.over)})" for m in result.failed)
        raise CheckFailed(f"over budget: {details}")
