"""`onnxprune shrink MODEL --mode PA|FA|MA --target T`: the main job."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from onnxprune.cli.app import app, console, emit_json, input_shape_option, parse_input_shapes, seed_option
from onnxprune.errors import CheckFailed, UserError
from onnxprune.read.save import check_outputs_writable, save_json, save_outputs
from onnxprune.report import LiteralTable, literal, nbytes, pct, si

DEFAULT_TARGET = 0.5  # half the chosen measure: the setting every benchmark here uses


def target_text(target: Optional[float], budget: Optional[str], target_from: str) -> str:
    """How the summary states the goal: `target 0.5, the default`, `target 0.3` or `budget 2.5M`."""
    if budget is not None:
        return f"budget {budget}"
    return f"target {target:g}" + (", the default" if target_from == "default" else "")


def default_output(model: str, mode: str, target: Optional[float], budget: Optional[str]) -> Path:
    source = Path(model)
    tag = f"{target:g}" if target is not None else str(budget)
    return source.with_name(f"{source.stem}.{mode}-{tag}.onnx")


def parse_budget(mode: str, budget: str) -> float:
    from onnxprune.measure.figures import parse_bytes, parse_count

    return float(parse_bytes(budget, "--budget") if mode == "MA" else parse_count(budget, "--budget"))


@app.command("shrink")
def shrink_command(
    model: str = typer.Argument(..., metavar="MODEL", show_default=False, help="ONNX model file (never modified)."),
    mode: str = typer.Option(..., "--mode", help="PA (params), FA (FLOPs), MA (memory) or LA (measured latency)."),
    target: Optional[float] = typer.Option(
        None,
        "--target",
        help=f"Fraction of the baseline to keep, 0<t<1; default {DEFAULT_TARGET:g} (half the chosen measure) "
        "unless --budget is given.",
        show_default=False,
    ),
    budget: Optional[str] = typer.Option(
        None, "--budget", help="Absolute figure instead of --target: 2.5M, 40M, 4MB, 4MiB."
    ),
    step: float = typer.Option(0.1, "--step", help="Fraction of a drawn group's channels removed per step."),
    seed: int = seed_option("Seed of the group draws and of re-initialised weights."),
    init: str = typer.Option("reinit", "--init", help="reinit (train from scratch) | keep (slice weights)."),
    criterion: str = typer.Option("random", "--criterion", help="Channels removed in a group: random | l1."),
    strategy: str = typer.Option("complexity", "--strategy", help="complexity (the paper's draw) | uniform."),
    min_channels: int = typer.Option(1, "--min-channels", help="Fewest channels a group keeps."),
    round_to: str = typer.Option(
        "auto",
        "--round-to",
        help="auto: kernel-friendly multiples per layer kind | R: multiples of R | 1: the paper's exact counts.",
    ),
    output: Optional[str] = typer.Option(
        None,
        "-o",
        "--output",
        help="Pruned model; default <stem>.<mode>-<target>.onnx. A no-op shrink writes a file only when -o is given.",
    ),
    report: Optional[str] = typer.Option(None, "--report", help="Write the JSON report here."),
    input_shape: Optional[List[str]] = input_shape_option(),
    json_out: bool = typer.Option(False, "--json", help="Print the report on stdout."),
    verify: bool = typer.Option(
        False,
        "--verify",
        help="Check the result: onnxruntime runs it, its output shapes "
        "match the original's; with --init keep, the zero-mask oracle's max error. Exit 1 "
        "if a check fails.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the report (what would be removed, totals before and after) and write nothing."
    ),
    latency_profile: Optional[str] = typer.Option(
        None, "--latency-profile", help="LA: per-node times measured on the target device."
    ),
    keep_tied: bool = typer.Option(
        False,
        "--keep-tied",
        help="Layers that read one shared weight stay pruned alike "
        "(default: sharing is storage; differing readers get their own copies).",
    ),
    exclude: Optional[List[str]] = typer.Option(
        None,
        "--exclude",
        metavar="PATTERN",
        help="Never prune this layer's group: a node-name glob ('head*') or op:TYPE (op:Gemm). Repeatable.",
    ),
    max_ratio: Optional[List[str]] = typer.Option(
        None,
        "--max-ratio",
        metavar="NODE=R",
        help="Remove at most the fraction R of NODE's output channels (NODE may be a glob), e.g. fc1=0.3. Repeatable.",
    ),
) -> None:
    """Prune output channels, chosen by complexity-weighted sampling, until under the target."""
    from onnxprune import __version__, shrink
    from onnxprune.cli.provenance import file_facts, file_facts_meanwhile, shrink_record, stamp
    from onnxprune.prune.protect import parse_max_ratios

    mode = mode.upper()
    if mode not in ("PA", "FA", "MA", "LA"):
        raise UserError(f"--mode {mode!r}: choose PA (params), FA (FLOPs), MA (memory) or LA (latency)")
    if mode == "LA" and budget is not None:
        raise UserError("--budget is not available with --mode LA; give --target, a fraction of measured latency")
    if latency_profile and mode != "LA":
        raise UserError("--latency-profile goes with --mode LA")
    if target is not None and budget is not None:
        raise UserError("give either --target or --budget, not both")
    target_from = "--budget" if budget is not None else "--target" if target is not None else "default"
    if target is None and budget is None:
        target = DEFAULT_TARGET
    # every output location is checked before any work; both are then written, or neither
    out, report_path = None, None
    if not dry_run:
        out, *rest = check_outputs_writable(
            {"-o": output or default_output(model, mode, target, budget), "--report": report}, model
        )
        report_path = rest[0] if rest else None
    absolute = parse_budget(mode, budget) if budget is not None else None
    hashing = file_facts_meanwhile(model)  # the input's sha256, computed while shrink works
    pruned, result = shrink(
        model,
        mode=mode,
        target=target,
        budget=absolute,
        step=step,
        seed=seed,
        init=init,
        criterion=criterion,
        strategy=strategy,
        min_channels=min_channels,
        round_to=round_to,
        input_shapes=parse_input_shapes(input_shape, model),
        latency_profile=latency_profile,
        keep_tied=keep_tied,
        exclude=exclude,
        max_ratio=parse_max_ratios(max_ratio),
    )
    if result.get("uncounted_summary"):  # the figures leave these weights out: said, as profile and check do
        print(f"onnxprune: warning: {result['uncounted_summary']}", file=sys.stderr)
    result["target_from"] = target_from  # "default", "--target" or "--budget"
    result["goal"] = target_text(target, budget, target_from)
    written = out if (result["pruned"] or output) and not dry_run else None
    result["output"] = str(written) if written else None
    if dry_run:
        result["dry_run"] = True
    source_facts = hashing()
    result["provenance"] = {"tool": "onnxprune", "version": __version__, "input": source_facts, "output": None}
    if written:
        stamp(pruned, shrink_record(source_facts, result))
    save_outputs(
        [(path, payload) for path, payload in ((written, pruned), (report_path, result)) if path],
        model,
        flags=[flag for flag, path in (("-o", written), ("--report", report_path)) if path],
    )
    if written:  # the written file's own hash: the report is rewritten (atomically) once it is known
        result["provenance"]["output"] = file_facts(written)
    problems = []
    if verify:
        from onnxprune.measure.compare_outputs import verify_shrink

        try:
            result["verify"], problems = verify_shrink(
                model, written or pruned, result, parse_input_shapes(input_shape, model), keep_tied
            )
        except UserError as exc:  # the check could not run: an unverified file must not stay behind
            removed = _remove_outputs(written, report_path)
            raise UserError(f"{exc}; --verify could not run, so {removed}") from None
    if report_path and (written or verify):
        save_json(result, report_path, model, flag="--report")
    if json_out:
        emit_json(result)
    else:
        _print_result(model, written, result, dry_run)
    if problems:
        raise CheckFailed("verify: " + "; ".join(problems))


def _remove_outputs(*paths: Optional[Path]) -> str:
    """Remove the files this run just wrote; say which (for the one-line error)."""
    gone = []
    for path in paths:
        if path and Path(path).exists():
            Path(path).unlink()
            gone.append(str(path))
    return f"nothing was written ({', '.join(gone)} removed)" if gone else "nothing was written"


def _print_result(model: str, written: Optional[Path], result: dict, dry_run: bool) -> None:
    _print_summary(model, written, result)
    _print_protected(result)
    if dry_run:
        console.print("dry run: nothing written", markup=False, highlight=False)
    if "verify" in result:
        check = result["verify"]
        zero = check.get("zero_mask_max_rel_error")
        console.print(
            f"verify: onnxruntime runs it: {'yes' if check['runs'] else 'NO'}; output shapes match the "
            f"original's: {'yes' if check['shapes_match'] else 'NO'}"
            + (
                f"; zero-mask max relative error {zero:.3g} (tolerance {check['tolerance']:g}){_on_logits(check)}"
                if zero is not None
                else "; zero-mask check: only at --init keep"
            ),
            markup=False,
            highlight=False,
        )
    if result.get("pruned") and result.get("round_to_used") != result.get("round_to"):
        console.print(
            "note: exact channel counts (--round-to 1): the target is unreachable with auto's kernel multiples"
        )
    landing = result.get("pruned") and far_under_target(
        result["mode"], result["target"], result.get("round_to_used"), result["before"], result["after"]
    )
    if landing:
        console.print(landing, markup=False, highlight=False)


LANDING_SLACK = 0.05  # a landing this far under the target (as a fraction of the original) gets a note
LANDING_FIGURES = {"PA": ("params", "parameters"), "FA": ("flops", "FLOPs"), "MA": ("memory_bytes", "memory")}


def far_under_target(mode: str, target: float, round_to_used, before: dict, after: dict) -> str | None:
    """A note when auto's kernel multiples landed well under the target. They move a small group in
    steps of 16 channels, so the last draw can take far more than the target asks (MTCNN's O-net: 36.9 %
    of the FLOPs at --target 0.5): a smaller network than the budget allows, by design of the rounding,
    said so that a user who wants the capacity back knows which flag gives it."""
    key = LANDING_FIGURES.get(mode)
    if not key or round_to_used != "auto":
        return None
    landed = after[key[0]] / max(before[key[0]], 1)
    if landed >= target - LANDING_SLACK:
        return None
    return (
        f"note: landed at {landed:.1%} of the {key[1]} for a target of {target:.1%}: auto's kernel "
        f"multiples move small groups in steps of up to 16 channels; --round-to 1 (exact counts) keeps more "
        f"channels, nearer the target, at a slower kernel per multiply-accumulate"
    )


def _on_logits(check: dict) -> str:
    """Which outputs the zero-mask check compared on their logits, and why (compare_outputs.py)."""
    notes = [
        f"output {name!r} on its {basis} (the output itself: {check['zero_mask_output_rel_error'][name]:.3g})"
        for name, basis in (check.get("zero_mask_compared_on") or {}).items()
        if basis != "output"
    ]
    if not notes:
        return ""
    return (
        f"; compared {', '.join(notes)}: a saturated activation's output, whose onnxruntime value is "
        f"exact to ~2e-7 absolute only"
    )


def _shape_text(shapes: dict) -> str:
    return ", ".join(f"{name}={'x'.join(str(d) for d in dims)}" for name, dims in shapes.items()) or "as declared"


def _print_protected(result: dict) -> None:
    for note in result.get("protected", []):
        what = f"at most {note['max_ratio']:.0%} of channels removed" if "max_ratio" in note else "not pruned"
        console.print(
            f"{note['option']} {note['pattern']}: {len(note['nodes'])} node(s), {len(note['groups'])} "
            f"group(s) {what}: {', '.join(note['nodes'][:6])}{' ...' if len(note['nodes']) > 6 else ''}",
            markup=False,
            highlight=False,
        )


def _print_summary(model: str, out: Optional[Path], result: dict) -> None:
    shapes = _shape_text(result.get("input_shapes", {}))
    if not result["pruned"]:
        where = f"; the unchanged model was written to {out}" if out else "; no file written (give -o to get a copy)"
        console.print(
            f"{literal(model)}: already within the budget: nothing pruned ({literal(result['goal'])}); "
            f"weights unchanged (no re-initialisation){literal(where)}. Measured at input shape {literal(shapes)}."
        )
        return
    table = LiteralTable(
        title=f"{model} → {out or '(dry run)'}  (mode {result['mode']}, {result['goal']}, seed "
        f"{result['seed']}, {result['iterations']} steps)"
    )
    for column in ("layer", "op", "channels", "kept"):
        table.add_column(column, justify="left" if column in ("layer", "op") else "right")
    for row in result["layers"]:
        table.add_row(
            row["node"],
            row["op"],
            f"{row['out_channels_before']} → {row['out_channels_after']}",
            pct(row["out_channels_after"], row["out_channels_before"]),
        )
    console.print(table)
    totals = LiteralTable(title=f"totals at input shape {shapes}; weights {result.get('weights', '')}")
    for column in ("figure", "before", "after", "reduction"):
        totals.add_column(column, justify="left" if column == "figure" else "right")
    before, after = result["before"], result["after"]
    for key, label, fmt in (
        ("params", "params", si),
        ("flops", "FLOPs (MACs)", si),
        ("memory_bytes", "memory", nbytes),
    ):
        totals.add_row(label, fmt(before[key]), fmt(after[key]), f"-{pct(before[key] - after[key], before[key])}")
    if "latency_us" in result:
        lat = result["latency_us"]
        totals.add_row(
            "latency (estimated)",
            f"{lat['before_measured'] / 1000:.2f} ms",
            f"{lat['after_estimated'] / 1000:.2f} ms",
            f"-{pct(lat['before_measured'] - lat['after_estimated'], lat['before_measured'])}",
        )
    console.print(totals)
    for note in result.get("unshared_constants", []):
        console.print(
            f"shared constant {note['constant']!r} ({note['readers']} readers) now has {note['versions']} "
            f"versions: readers pruned differently got their own copy (--keep-tied keeps them alike)",
            markup=False,
        )
