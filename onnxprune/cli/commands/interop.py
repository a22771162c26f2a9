"""`onnxprune interop MODEL --runtime openvino|ncnn`: does another runtime load the model and agree with onnxruntime?"""

from __future__ import annotations

import typer

from onnxprune.cli.app import app, console, emit_json
from onnxprune.errors import CheckFailed


@app.command("interop")
def interop_command(
    model: str = typer.Argument(..., help="ONNX model"),
    runtime: str = typer.Option(
        "openvino",
        "--runtime",
        help="openvino (install onnxprune[interop]) or ncnn (converted by pnnx; install onnxprune[ncnn])",
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="seed of the random inputs"),
    json_out: bool = typer.Option(False, "--json", help="print the verdict as JSON on stdout"),
) -> None:
    """Run MODEL in another runtime: exit 0 when its outputs equal onnxruntime's within 1e-4
    (relative), 1 when they differ, 2 when the runtime is missing or rejects the graph."""
    from onnxprune.measure.interop import TOLERANCE, compare_with_onnxruntime

    worst = compare_with_onnxruntime(runtime, model, seed)
    agrees = worst <= TOLERANCE
    if json_out:
        emit_json(
            {"model": model, "runtime": runtime, "max_relative_diff": worst, "tolerance": TOLERANCE, "agrees": agrees}
        )
    else:
        console.print(
            f"{model}: {runtime} {'agrees with' if agrees else 'DIFFERS from'} onnxruntime "
            f"(max relative difference {worst:.3g}, tolerance {TOLERANCE:g})"
        )
    if not agrees:
        raise CheckFailed(f"{runtime} differs from onnxruntime on {model} by {worst:.3g} > {TOLERANCE:g}")
