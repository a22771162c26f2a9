"""`profile` the onnx-tool/Netron way: each layer's input and output shapes, a CSV export, and two
models side by side (`profile A B`: matched by node name, before/after and the ratio per layer)."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from onnxprune.analysis.complexity import FIGURES, Profile, profile
from onnxprune.errors import UserError
from onnxprune.read.graph import load_graph
from onnxprune.report import nbytes, si

CSV_COLUMNS = ("node", "op", "input_shape", "output_shape", "out_channels", "params", "flops", "memory_bytes")


def _dims(shape) -> list | None:
    return [d if isinstance(d, int) else str(d) for d in shape] if shape is not None else None


def shape_text(shape) -> str:
    return "x".join(str(d) for d in shape) if shape else "-"


def profile_with_shapes(model, input_shapes: dict | None = None) -> tuple[Profile, list[dict]]:
    """The profile and its rows, each with `input_shape` and `output_shape` (as inferred)."""
    mg = load_graph(model, input_shapes)
    result = profile(mg, input_shapes)
    tensors = mg.graph.tensors()
    rows = result.rows()
    for row, layer in zip(rows, result.layers):
        for key, name in (("input_shape", layer.in_tensor), ("output_shape", layer.out_tensor)):
            tensor = tensors.get(name) if name else None
            row[key] = _dims(mg.shape(tensor)) if tensor is not None else None
    return result, rows


def write_csv(rows: list[dict], destination: str) -> None:
    """One line per layer (`-`: stdout); shapes as 1x3x32x32."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                **row,
                "input_shape": shape_text(row.get("input_shape")),
                "output_shape": shape_text(row.get("output_shape")),
            }
        )
    if destination == "-":
        sys.stdout.write(buffer.getvalue())
        sys.stdout.flush()
        return
    path = Path(destination)
    if path.suffix.lower() == ".onnx":
        raise UserError(f"--csv {destination}: give a .csv path (or - for stdout), not a model")
    _save_text(buffer.getvalue(), path)


def _save_text(text: str, path: Path) -> None:
    from onnxprune.read.save import atomic_write, check_outputs_writable  # the atomic write every output gets

    (out,) = check_outputs_writable({"--csv": path})
    atomic_write(out, lambda handle: handle.write(text))


def _ratio(before: float, after: float) -> float | None:
    return after / before if before else None


def compare_profiles(a: str, b: str, input_shapes: dict | None = None) -> dict:
    """Layers of A and B matched by node name (pruning keeps names): per layer both figures and the
    ratio B/A; layers only in one model are listed with the other side empty; totals."""
    (pa, rows_a), (pb, rows_b) = profile_with_shapes(a, input_shapes), profile_with_shapes(b, input_shapes)
    by_name_b = {row["node"]: row for row in rows_b}
    layers, seen = [], set()
    for row in rows_a:
        other = by_name_b.get(row["node"])
        seen.add(row["node"])
        layers.append(_pair(row, other))
    layers += [_pair(None, row) for row in rows_b if row["node"] not in seen]
    totals = {
        figure: {"a": pa.totals[figure], "b": pb.totals[figure], "ratio": _ratio(pa.totals[figure], pb.totals[figure])}
        for figure in FIGURES
    }
    # the weights either side's totals leave out (profile warns of them, as for one model)
    uncounted = {"a": [dict(u) for u in pa.uncounted], "b": [dict(u) for u in pb.uncounted]}
    warnings = [f"{path}: {p.uncounted_summary()}" for path, p in ((a, pa), (b, pb)) if p.uncounted]
    return {"a": str(a), "b": str(b), "layers": layers, "totals": totals, "uncounted": uncounted, "warnings": warnings}


def _pair(a: dict | None, b: dict | None) -> dict:
    some = a or b
    entry = {"node": some["node"], "op": some["op"]}
    for key in ("input_shape", "output_shape", "out_channels", *FIGURES):
        entry[key] = {"a": a[key] if a else None, "b": b[key] if b else None}
        if key in ("out_channels", *FIGURES):
            entry[key]["ratio"] = _ratio(a[key], b[key]) if a and b else None
    return entry


def _ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_comparison(result: dict, console, changed_only: bool = False) -> None:
    from onnxprune.report import LiteralTable

    table = LiteralTable(title=f"{result['a']} → {result['b']}")
    for column in ("node", "op", "output shape A → B", "params A → B", "ratio", "FLOPs A → B", "ratio"):
        table.add_column(column, justify="left" if column in ("node", "op", "output shape A → B") else "right")
    for row in result["layers"]:
        shapes = row["output_shape"]
        if changed_only and shapes["a"] == shapes["b"]:
            continue
        table.add_row(
            row["node"],
            row["op"],
            f"{shape_text(shapes['a'])} → {shape_text(shapes['b'])}",
            f"{_fig(row['params']['a'])} → {_fig(row['params']['b'])}",
            _ratio_text(row["params"]["ratio"]),
            f"{_fig(row['flops']['a'])} → {_fig(row['flops']['b'])}",
            _ratio_text(row["flops"]["ratio"]),
        )
    table.add_section()
    totals = result["totals"]
    table.add_row(
        "total",
        f"{len(result['layers'])} layers",
        "",
        f"{si(totals['params']['a'])} → {si(totals['params']['b'])}",
        _ratio_text(totals["params"]["ratio"]),
        f"{si(totals['flops']['a'])} → {si(totals['flops']['b'])}",
        _ratio_text(totals["flops"]["ratio"]),
        style="bold",
    )
    console.print(table)
    memory = totals["memory_bytes"]
    console.print(
        f"memory {nbytes(memory['a'])} → {nbytes(memory['b'])} ({_ratio_text(memory['ratio'])})",
        markup=False,
        highlight=False,
    )


def _fig(value) -> str:
    return "-" if value is None else si(value)
