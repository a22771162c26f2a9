"""`onnxprune verify A B`: polygraphy-style: both models on the same random inputs, per output."""

from __future__ import annotations

from typing import List, Optional

import typer

from onnxprune.cli.app import app, console, emit_json, input_shape_option, parse_input_shapes, seed_option
from onnxprune.errors import CheckFailed, UserError
from onnxprune.report import LiteralTable


def _shape(dims) -> str:
    return "x".join(str(d) for d in dims) if dims is not None else "-"


def print_comparison(result: dict, title: str) -> None:
    table = LiteralTable(title=title)
    for column in ("output", "shape A", "shape B", "max abs error", "max rel error", "judged on"):
        table.add_column(column, justify="left" if column in ("output", "judged on") else "right")
    for row in result["outputs"]:
        logits = row.get("logits_max_rel")
        table.add_row(
            row["output"],
            _shape(row["shape_a"]),
            _shape(row["shape_b"]),
            "-" if row["max_abs"] is None else f"{row['max_abs']:.3g}",
            "-" if row["max_rel"] is None else f"{row['max_rel']:.3g}",
            row.get("compared_on", "output")
            + (
                f" (rel error {logits:.3g})"
                if logits is not None and row.get("compared_on", "").startswith("logits")
                else ""
            ),
        )
    console.print(table)
    if any(row.get("compared_on", "output") != "output" for row in result["outputs"]):
        console.print(
            "an output a saturating activation computes passes when it, or its logits, agree within --tol: "
            "onnxruntime's Sigmoid is exact to ~2e-7 absolute only",
            markup=False,
            highlight=False,
        )


@app.command("verify")
def verify_command(
    model_a: str = typer.Argument(..., help="Reference ONNX model (e.g. the original)."),
    model_b: str = typer.Argument(..., help="ONNX model compared with it (e.g. the pruned one)."),
    tol: float = typer.Option(
        1e-4, "--tol", help="Largest allowed relative error per output (max |A-B| over the largest |A| or |B|)."
    ),
    shapes_only: bool = typer.Option(
        False,
        "--shapes-only",
        help="Check only that B runs and its output shapes match A's (re-initialised weights differ by design).",
    ),
    seed: int = seed_option("Seed of the random inputs."),
    input_shape: Optional[List[str]] = input_shape_option(),
    json_out: bool = typer.Option(False, "--json", help="Per-output errors as JSON on stdout."),
) -> None:
    """Run A and B in onnxruntime on the same random inputs: per output, shapes and max abs/rel error.

    Exit 1 when B does not run, an output shape differs, or an error is over --tol."""
    from onnxprune.measure.compare_outputs import compare_outputs, verdict

    if tol < 0:
        raise UserError(f"--tol {tol}: must be non-negative, e.g. 1e-4")
    result = compare_outputs(model_a, model_b, parse_input_shapes(input_shape, model_a), seed, (model_a, model_b))
    problems = verdict(result, None if shapes_only else tol)
    result.update(tol=None if shapes_only else tol, passed=not problems, problems=problems)
    if json_out:
        emit_json(result)
    else:
        print_comparison(result, f"{model_a} vs {model_b} (seed {seed})")
        console.print("PASS" if not problems else "FAIL", style="green" if not problems else "red")
    if problems:
        raise CheckFailed("; ".join(problems))
