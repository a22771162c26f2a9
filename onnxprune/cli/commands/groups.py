"""`onnxprune groups MODEL`: the channel dependency groups, prunable or not and why."""

from __future__ import annotations

from typing import List, Optional

import typer

from onnxprune.cli.app import app, emit_json, importing, input_shape_option, parse_input_shapes


def describe_members(deps, group) -> list[dict]:
    out = []
    for m in deps.members_of(group):
        entry = {"kind": m.kind, "node": m.label, "role": m.role}
        if m.tensor is not None:
            entry.update(tensor=m.tensor.name, axis=m.axis)
        out.append(entry)
    return out


def spans(deps, group) -> list[tuple[str, list[tuple[int, int]], bool]]:
    """(layer, channel ranges it gives the group, whether that is the whole layer) per producer."""
    return [(root.label, ranges, ranges == [(0, root.size)]) for root, ranges in deps.ranges(group)]


def spans_text(deps, group, limit: int = 4) -> str:
    """`cv1 [16:32] + m.0/cv2` : each producer, with its channel ranges when the group holds only part of it."""
    parts = [
        name if whole else f"{name} " + " ".join(f"[{a}:{b}]" for a, b in ranges)
        for name, ranges, whole in spans(deps, group)
    ]
    return " + ".join(parts[:limit]) + (f" (+{len(parts) - limit})" if len(parts) > limit else "")


def group_json(deps, group) -> dict:
    out = group.to_json(describe_members(deps, group))
    out["classes"] = group.size
    for producer, (_, ranges, _) in zip(out["producers"], spans(deps, group)):
        producer["channels"] = [list(r) for r in ranges]
    return out


@app.command("groups")
def groups_command(
    model: str = typer.Argument(..., metavar="MODEL", show_default=False, help="ONNX model file"),
    json_out: bool = typer.Option(False, "--json", help="machine output on stdout"),
    input_shape: Optional[List[str]] = input_shape_option(),
    keep_tied: bool = typer.Option(
        False,
        "--keep-tied",
        help="Layers that read one shared weight form one group (default: sharing is storage, not a coupling).",
    ),
) -> None:
    """Channel dependency groups: members, channel count, share of params/FLOPs/memory, prunable or not and why.

    A prunable group's share among prunable groups is its chance of being drawn first by `shrink`
    in that mode (JSON: `draw_probability`)."""
    with importing():
        from onnxprune import channel_groups
        from onnxprune.prune.plan import group_shares

    deps = channel_groups(model, parse_input_shapes(input_shape, model), keep_tied=keep_tied)
    shares = group_shares(deps)
    if json_out:
        emit_json(
            {
                "model": model,
                "groups": [group_json(deps, g) | shares[g.id] for g in deps.groups],
                "prunable": len(deps.prunable),
            }
        )
        return
    from onnxprune.cli.app import console  # rich: only a run that prints a table pays for it
    from onnxprune.report import LiteralTable

    table = LiteralTable(title=f"{model}: {len(deps.prunable)} of {len(deps.groups)} groups prunable")
    for column in (
        "group",
        "classes",
        "producers (channel ranges)",
        "coupled by",
        "members",
        "params %",
        "FLOPs %",
        "memory %",
        "prunable",
    ):
        table.add_column(column, justify="right" if column.endswith("%") else "left")
    for g in deps.groups:
        members = describe_members(deps, g)
        why = "yes" if g.prunable else "no: " + "; ".join(sorted(set(g.reasons)))
        producers = spans_text(deps, g)
        coupled = ", ".join(g.coupled_by[:2]) + (f" (+{len(g.coupled_by) - 2})" if len(g.coupled_by) > 2 else "")
        share = shares[g.id]["share"]
        table.add_row(
            str(g.id),
            str(g.size),
            producers,
            coupled,
            str(len(members)),
            *(f"{100 * share[f]:.1f}" for f in ("params", "flops", "memory_bytes")),
            why,
            style=None if g.prunable else "dim",
        )
    console.print(table)
