"""Polygraphy-style checks: run two models on the same random inputs and compare every output;
and, for a shrink at `--init keep`, the zero-mask oracle on the pruned model (verify.py)."""

from __future__ import annotations

import numpy as np

from onnxprune.errors import UserError
from onnxprune.read.io import ModelLike, load_model

ZERO_MASK_TOL = 1e-4  # relative to the output's largest magnitude; measured ≤ 1.4e-6 on the zoo


def _outputs(model, feeds: dict, label: str) -> tuple[list[str], list[np.ndarray] | None, str | None]:
    from onnxprune.measure.verify import run

    names = [o.name for o in model.graph.output]
    try:
        return names, run(model, feeds), None
    except Exception as exc:  # noqa: BLE001 - onnxruntime's failures are the finding, not a crash
        return names, None, f"onnxruntime cannot run {label}: {' '.join(str(exc).split())[:300]}"


def compare_outputs(
    a: ModelLike, b: ModelLike, input_shapes: dict | None = None, seed: int = 0, labels: tuple[str, str] = ("A", "B")
) -> dict:
    """Both models on the same seeded random inputs (shaped for `a`): per output, both shapes and
    the max absolute and relative (to the largest magnitude) difference."""
    from onnxprune.measure.verify import max_relative_error
    from onnxprune.read.inputs import make_inputs

    model_a, model_b = load_model(a), load_model(b)
    feeds = make_inputs(model_a, 1, seed, input_shapes)
    names_a, outs_a, error_a = _outputs(model_a, feeds, labels[0])
    if error_a:
        raise UserError(error_a)
    names_b, outs_b, error_b = _outputs(model_b, feeds, labels[1])
    rows = []
    for i, name in enumerate(names_a):
        row = {
            "output": name,
            "shape_a": list(outs_a[i].shape),
            "shape_b": None,
            "shapes_match": False,
            "max_abs": None,
            "max_rel": None,
        }
        if outs_b is not None and i < len(outs_b):
            got = outs_b[i]
            row["shape_b"] = list(got.shape)
            row["shapes_match"] = got.shape == outs_a[i].shape
            if row["shapes_match"] and got.size and np.issubdtype(got.dtype, np.number):
                diff = np.abs(outs_a[i].astype(np.float64) - got.astype(np.float64))
                row["max_abs"] = float(diff.max())
                row["max_rel"] = max_relative_error(outs_a[i], got)
        rows.append(row)
    return {
        "runs": error_b is None,
        "error": error_b,
        "outputs": rows,
        "same_outputs": outs_b is not None and len(names_b) == len(names_a),
    }


def verdict(result: dict, tol: float | None) -> list[str]:
    """The failures of a comparison ([] when it passes); `tol` None: shapes only."""
    if not result["runs"]:
        return [result["error"]]
    problems = [] if result["same_outputs"] else ["the models have different numbers of outputs"]
    for row in result["outputs"]:
        if not row["shapes_match"]:
            problems.append(f"output {row['output']!r}: shape {row['shape_b']} instead of {row['shape_a']}")
        elif tol is not None and row["max_rel"] is not None and row["max_rel"] > tol:
            problems.append(f"output {row['output']!r}: max relative error {row['max_rel']:.3g} > --tol {tol:g}")
    return problems


def zero_mask_error(
    source: ModelLike,
    pruned: ModelLike,
    report: dict,
    input_shapes: dict | None = None,
    keep_tied: bool = False,
    seed: int = 0,
) -> float:
    """Largest relative difference, over the outputs, between the pruned model and the original with
    the report's removed channels zeroed (exact at `--init keep`: ≤ ZERO_MASK_TOL). QDQ graphs are
    compared with their activations' quantize/dequantize pairs taken out (`verify.dequantized`)."""
    from onnxprune.analysis.groups import channel_groups
    from onnxprune.measure.verify import dequantized, zero_mask

    deps = channel_groups(source, input_shapes, keep_tied=keep_tied)
    kept = {row["node"]: row["kept"] for row in report["layers"]}
    keep = {}
    for group in deps.prunable:
        for root in group.roots:
            found = kept.get(root.node) if root.node else None
            found = found if found is not None else kept.get(root.label)
            if found is not None and len(found) < group.size:
                keep[group.id] = found
                break
    masked, pruned = zero_mask(deps, keep), load_model(pruned)
    if dequantized(pruned) is not None:  # QDQ: compared with activation quantization taken out (verify.py)
        masked, pruned = dequantized(masked), dequantized(pruned)
    result = compare_outputs(masked, pruned, input_shapes, seed, ("the zero-masked original", "the pruned model"))
    problems = verdict(result, None)
    if problems:
        raise UserError("; ".join(problems))
    return max((row["max_rel"] or 0.0) for row in result["outputs"])


def verify_shrink(
    source: ModelLike, pruned: ModelLike, report: dict, input_shapes: dict | None = None, keep_tied: bool = False
) -> tuple[dict, list[str]]:
    """`shrink --verify`: onnxruntime runs the pruned model and its output shapes are the original's
    (graph outputs are never pruned); at `--init keep`, the zero-mask oracle's max error too."""
    result = compare_outputs(source, pruned, input_shapes, labels=("the original", "the pruned model"))
    problems = verdict(result, None)
    check = {
        "runs": result["runs"],
        "shapes_match": result["runs"] and not problems,
        "outputs": [{k: row[k] for k in ("output", "shape_a", "shape_b")} for row in result["outputs"]],
        "zero_mask_max_rel_error": None,
        "tolerance": ZERO_MASK_TOL,
    }
    if not problems and report.get("init") == "keep" and report.get("pruned"):
        error = zero_mask_error(source, pruned, report, input_shapes, keep_tied)
        check["zero_mask_max_rel_error"] = error
        if error > ZERO_MASK_TOL:
            problems.append(f"zero-mask max relative error {error:.3g} > {ZERO_MASK_TOL:g}")
    check["problems"] = problems
    return check, problems
