"""Polygraphy-style checks: run two models on the same random inputs and compare every output;
and, for a shrink at `--init keep`, the zero-mask oracle on the pruned model (verify.py).

Saturated outputs: an output that a saturating activation computes (Sigmoid, Softmax, LogSoftmax,
Tanh) agrees when it does within the tolerance, or when its logits (the activation's input) do.
onnxruntime's Sigmoid is exact to ~2e-7 *absolute* only, so on a saturated map (every value ~1e-5)
two graphs whose logits agree to 1e-7 differ by ~1% relative; the logits determine the output, and
the corpus oracle compares them (verify.output_errors). Each row says what it was compared on."""

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
    feeds = make_inputs(model_a, None, seed, input_shapes)  # the model's own fixed batch, if any
    names_a, outs_a, error_a = _outputs(model_a, feeds, labels[0])
    if error_a:
        raise UserError(error_a)
    names_b, outs_b, error_b = _outputs(model_b, feeds, labels[1])
    logits = _logit_errors(model_a, model_b, feeds) if outs_b is not None else {}
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
                if i in logits:
                    row["activation"], row["logits"], row["logits_max_rel"] = logits[i]
        rows.append(row)
    return {
        "runs": error_b is None,
        "error": error_b,
        "outputs": rows,
        "same_outputs": outs_b is not None and len(names_b) == len(names_a),
    }


def _logit_errors(model_a, model_b, feeds: dict) -> dict[int, tuple[str, str, float]]:
    """Per output that the same saturating activation computes in both models: (activation, logits
    tensor, max relative error of the logits)."""
    from onnxprune.measure.verify import logit_names, max_relative_error, run, with_logit_outputs

    saturated = {}
    ops_a, ops_b = _activations(model_a), _activations(model_b)
    for i, (name, op_a, op_b) in enumerate(zip(logit_names(model_a), ops_a, ops_b)):
        if op_a and op_a == op_b:
            saturated[i] = (op_a, name)
    if not saturated:
        return {}
    try:
        got_a, got_b = run(with_logit_outputs(model_a), feeds), run(with_logit_outputs(model_b), feeds)
    except Exception:  # noqa: BLE001 - a logits run that onnxruntime refuses leaves the outputs' own figures
        return {}
    return {
        i: (op, name, max_relative_error(got_a[i], got_b[i]))
        for i, (op, name) in saturated.items()
        if got_a[i].shape == got_b[i].shape and got_a[i].size
    }


def _activations(model) -> list[str | None]:
    """Per graph output, the saturating activation that computes it (through Identity nodes), if any."""
    from onnxprune.measure.verify import SATURATING_OPS, logit_names

    producer = {out: node for node in model.graph.node for out in node.output}
    found = []
    for output, logits in zip(model.graph.output, logit_names(model)):
        node = producer.get(output.name)
        while node is not None and node.op_type == "Identity":
            node = producer.get(node.input[0])
        found.append(
            node.op_type if node is not None and logits != output.name and node.op_type in SATURATING_OPS else None
        )
    return found


def checked_error(row: dict, tol: float) -> tuple[float | None, str]:
    """The error an output is judged by, and on what: its own max relative error when within `tol`,
    else, for a saturating activation's output, its logits' (see the module docstring)."""
    if row["max_rel"] is None or row["max_rel"] <= tol or row.get("logits_max_rel") is None:
        return row["max_rel"], "output"
    if row["logits_max_rel"] < row["max_rel"]:
        return row["logits_max_rel"], f"logits ({row['activation']} input {row['logits']!r})"
    return row["max_rel"], "output"


def verdict(result: dict, tol: float | None) -> list[str]:
    """The failures of a comparison ([] when it passes); `tol` None: shapes only. An output a
    saturating activation computes passes when it, or its logits, agree within `tol`."""
    if not result["runs"]:
        return [result["error"]]
    problems = [] if result["same_outputs"] else ["the models have different numbers of outputs"]
    for row in result["outputs"]:
        if not row["shapes_match"]:
            problems.append(f"output {row['output']!r}: shape {row['shape_b']} instead of {row['shape_a']}")
            continue
        if tol is None:
            continue
        error, basis = checked_error(row, tol)
        row["compared_on"] = basis
        if error is not None and error > tol:
            logits = row.get("logits_max_rel")
            also = f" (its logits, the {row['activation']}'s input: {logits:.3g})" if logits is not None else ""
            problems.append(f"output {row['output']!r}: max relative error {row['max_rel']:.3g} > --tol {tol:g}{also}")
    return problems


def zero_mask_comparison(
    source: ModelLike,
    pruned: ModelLike,
    report: dict,
    input_shapes: dict | None = None,
    keep_tied: bool = False,
    seed: int = 0,
) -> dict:
    """The pruned model against the original with the report's removed channels zeroed (exact at
    `--init keep`): compare_outputs' result, each row's `checked_rel` and `compared_on` set at
    ZERO_MASK_TOL (a saturated output on its logits). QDQ graphs are compared with their activations'
    quantize/dequantize pairs taken out (`verify.dequantized`)."""
    from onnxprune.analysis.groups import channel_groups
    from onnxprune.measure.verify import dequantized, zero_mask

    deps = channel_groups(source, input_shapes, keep_tied=keep_tied)
    # the report's kept output channels per layer, turned into kept classes per group: a layer's
    # channels are not its group's positions when channels are coupled in pairs (silero's STFT conv:
    # 258 channels, 129 classes), and reading them as such masked the wrong ones
    keep = deps.keep_from_layers({row["node"]: row["kept"] for row in report["layers"]})
    masked, pruned = zero_mask(deps, keep), load_model(pruned)
    if dequantized(pruned) is not None:  # QDQ: compared with activation quantization taken out (verify.py)
        masked, pruned = dequantized(masked), dequantized(pruned)
    result = compare_outputs(masked, pruned, input_shapes, seed, ("the zero-masked original", "the pruned model"))
    problems = verdict(result, None)
    if problems:
        raise UserError("; ".join(problems))
    for row in result["outputs"]:
        row["checked_rel"], row["compared_on"] = checked_error(row, ZERO_MASK_TOL)
    return result


def zero_mask_error(source: ModelLike, pruned: ModelLike, report: dict, *args, **kwargs) -> float:
    """Largest relative difference, over the outputs, between the pruned model and the zero-masked
    original (a saturated output compared on its logits; arguments as zero_mask_comparison's):
    ≤ ZERO_MASK_TOL at `--init keep`."""
    result = zero_mask_comparison(source, pruned, report, *args, **kwargs)
    return max((row["checked_rel"] or 0.0) for row in result["outputs"])


def verify_shrink(
    source: ModelLike, pruned: ModelLike, report: dict, input_shapes: dict | None = None, keep_tied: bool = False
) -> tuple[dict, list[str]]:
    """`shrink --verify`: onnxruntime runs the pruned model and its output shapes are the original's
    (graph outputs are never pruned); at `--init keep`, the zero-mask oracle's max error too, with
    what each output was compared on (a saturated output: its logits)."""
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
        comparison = zero_mask_comparison(source, pruned, report, input_shapes, keep_tied)
        rows = comparison["outputs"]
        error = max((row["checked_rel"] or 0.0) for row in rows)
        check["zero_mask_max_rel_error"] = error
        check["zero_mask_compared_on"] = {row["output"]: row["compared_on"] for row in rows}
        check["zero_mask_output_rel_error"] = {row["output"]: row["max_rel"] for row in rows}
        if error > ZERO_MASK_TOL:
            problems.append(f"zero-mask max relative error {error:.3g} > {ZERO_MASK_TOL:g}")
    check["problems"] = problems
    return check, problems
