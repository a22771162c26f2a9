"""Measured per-node latency for mode LA (latency-aware), which no peer tool has.

onnxruntime's profiler times every node (graph optimisations off, so node names are the
graph's). Each node's time is then a cost term that scales with its channel counts: a
Conv/Gemm/MatMul with its MACs, anything else with its output channels. So the shrink loop
draws groups by their share of *measured* time and estimates the latency of each step with
arithmetic. A profile measured on the target device (`onnxprune latency MODEL -o prof.json`
on the board) can be used instead of this machine's.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from onnxprune.analysis.complexity import Layer
from onnxprune.analysis.groups import Dependencies
from onnxprune.errors import UserError
from onnxprune.read.names import display_name


def measure_node_latency(
    model: onnx.ModelProto,
    runs: int = 20,
    warmup: int = 3,
    threads: int = 1,
    seed: int = 0,
    input_shapes: dict | None = None,
    label: str | None = None,
) -> dict[str, float]:
    """Median microseconds per node over `runs` inferences on seeded random inputs.

    The inputs are `bench`'s (typed by each input's dtype, symbolic dims from `input_shapes`; a
    symbolic dimension other than the batch without a given shape is a UserError). An onnxruntime
    failure is a UserError naming the node when onnxruntime does.
    """
    import onnxruntime as ort

    from onnxprune.read.inputs import input_specs, random_inputs

    specs = input_specs(model, None, input_shapes, label)  # no --batch here: a fixed batch as declared
    feeds = random_inputs(specs, seed)
    model = _named_for_profiling(model)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the one-line error says what failed
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = os.path.join(folder, "onnxprune")
        try:
            warm = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            for _ in range(warmup):
                warm.run(None, feeds)
            options.enable_profiling = True
            session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            for _ in range(runs):
                session.run(None, feeds)
        except Exception as exc:  # onnxruntime raises its own types (Fail, InvalidArgument, RuntimeException...)
            raise UserError(runtime_failure(exc, specs)) from None
        with open(session.end_profiling()) as handle:
            events = json.load(handle)
    samples: dict[str, list[float]] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            samples.setdefault(event["name"][: -len("_kernel_time")], []).append(float(event["dur"]))
    return {name: float(np.median(values)) for name, values in samples.items()}


def _named_for_profiling(model: onnx.ModelProto) -> onnx.ModelProto:
    """The profiler keys times by node name: unnamed nodes get their report name (op#index) in a copy."""
    if all(node.name for node in model.graph.node):
        return model
    named = onnx.ModelProto()
    named.CopyFrom(model)
    for index, node in enumerate(named.graph.node):
        node.name = display_name(node, index)
    return named


def runtime_failure(exc: Exception, specs) -> str:
    """One line for an onnxruntime failure: the node it names, its message, and the shapes fed."""
    import re

    text = " ".join(str(exc).split()) or type(exc).__name__
    fed = ", ".join(f"{s.name} {'x'.join(map(str, s.shape))}" for s in specs)
    node = re.search(r"running (\w+) node\. Name:'([^']*)'", text)
    status = re.search(r"Status Message: (.*)", text)
    if node:
        detail = f"node {node.group(2)!r} ({node.group(1)}) failed: {(status.group(1) if status else text)[:300]}"
    else:
        detail = text[:300]
    return f"onnxruntime cannot run the model at input {fed}: {detail}; check the model or give --input-shape"


def save_profile(times: dict[str, float], path: Path, model: str) -> None:
    from onnxprune.read.save import save_json

    payload = {
        "model": model,
        "device": platform.platform(),
        "machine": platform.machine(),
        "unit": "us",
        "total_us": sum(times.values()),
        "nodes": times,
    }
    save_json(payload, path, model)


def load_profile(path: str | Path) -> dict[str, float]:
    try:
        payload = json.loads(Path(path).read_text())
        nodes = payload["nodes"]
        return {str(k): float(v) for k, v in nodes.items()}
    except FileNotFoundError:
        raise UserError(
            f"--latency-profile {path}: no such file; make one with `onnxprune latency MODEL -o FILE`"
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(
            f"--latency-profile {path}: not a latency profile (expected JSON with a 'nodes' map "
            f"of node name to microseconds)"
        ) from None


@dataclass
class LatencyTerm:
    """One node's measured time as a function of its channel counts (a Bookkeeper cost term)."""

    node: str
    op: str
    in_tensor: str | None
    out_tensor: str
    cin: int
    cout: int
    time_us: float
    layer: Layer | None = None

    def cost(self, cin: int | None = None, cout: int | None = None) -> tuple[float]:
        cin = self.cin if cin is None else cin
        cout = self.cout if cout is None else cout
        if self.layer is not None and self.layer.cost()[1] > 0:
            return (self.time_us * self.layer.cost(cin, cout)[1] / self.layer.cost()[1],)
        return (self.time_us * cout / self.cout if self.cout else self.time_us,)


def latency_terms(deps: Dependencies, layers: list[Layer], times: dict[str, float]) -> list[LatencyTerm]:
    by_node = {layer.node: layer for layer in layers}
    names = {id(n): deps.mg.display_name(n) for n in deps.mg.nodes}  # as measure_node_latency keys them
    known = set(names.values())
    if not known & set(times):
        raise UserError(
            "the latency profile names none of this model's nodes; measure it on this model with "
            "`onnxprune latency MODEL -o FILE`"
        )
    terms = []
    for node in deps.mg.nodes:
        name = names[id(node)]
        time_us = times.get(name, 0.0)
        if time_us <= 0 or not node.outputs:
            continue
        layer = by_node.get(name)
        if layer is not None:
            terms.append(
                LatencyTerm(name, node.op, layer.in_tensor, layer.out_tensor, layer.cin, layer.cout, time_us, layer)
            )
            continue
        data = node.inputs[0] if node.inputs else None
        in_layout = deps.layouts.get(data.name) if data is not None else None
        out_layout = deps.layouts.get(node.outputs[0].name)
        terms.append(
            LatencyTerm(
                name,
                node.op,
                data.name if in_layout is not None else None,
                node.outputs[0].name,
                len(in_layout) if in_layout is not None else 0,
                len(out_layout) if out_layout is not None else 0,
                time_us,
            )
        )
    return terms
