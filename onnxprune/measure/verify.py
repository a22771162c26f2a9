"""Correctness oracles: the zero-mask model and output comparison with onnxruntime.

Pruning channels must give exactly the output of the original model with those channels
zeroed: producer weights and biases, BatchNorm scale and shift, and constant operands added to
or multiplied with them. Consumers' weights stay (they multiply zeros), and so do divisors.

`output_errors` compares an output that a saturating activation makes (Sigmoid, Softmax, Tanh)
on that activation's input, the logits: onnxruntime's Sigmoid is accurate to about 1e-7
*absolute*, so on a saturated probability map (every value ~1e-7, as PP-OCR's detector gives on a
random image) two graphs whose logits agree to 1e-7 relative differ by ~100% relative. The
logits determine the output, so comparing them is as strict, without that noise.
"""

from __future__ import annotations

import numpy as np
import onnx

from onnxprune.analysis.groups import Dependencies

ZEROED_ROLES = ("producer", "operand")


def zero_mask(deps: Dependencies, keep: dict) -> onnx.ModelProto:
    """A copy of the original model with the removed channels zeroed instead of removed.

    A constant shared by readers that are zeroed differently is copied per reader, as surgery does.
    """
    from onnxprune.analysis.shared_constants import apply_storage_edits, group_by_storage, zero
    from onnxprune.prune.surgery import _Editor
    from onnxprune.read.lazy_weights import materialize

    flags = deps.keep_flags({int(g): np.asarray(k) for g, k in keep.items()})
    model = onnx.ModelProto()
    model.CopyFrom(deps.mg.proto)  # weights left in the file: a small copy
    zeroed = []
    for member in deps.members:
        if member.kind != "slice":
            continue
        if member.role in ZEROED_ROLES or (member.role == "norm" and _is_scale_or_shift(deps, member)):
            zeroed.append((member, deps.mask(member.layout, flags)))
    editor = _Editor(deps, model)
    apply_storage_edits(editor, group_by_storage(zeroed), zero, lambda node: node.name)
    editor.flush()
    return materialize(model)  # a model loaded from a path left its other weights in the file


def _is_scale_or_shift(deps: Dependencies, member) -> bool:
    return member.position in (1, 2)


def dequantized(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """A QDQ graph with its activations' per-tensor QuantizeLinear -> DequantizeLinear pairs taken out
    (each DequantizeLinear's readers read the float tensor the pair quantized); None when it has none.

    What the zero-mask oracle compares on QDQ graphs: the pruned graph's integer weights, scales and
    zero points against the zero-masked original's, all dequantized as in the files. The quantized
    graphs themselves agree exactly where onnxruntime computes in integers (QLinearConv, ConvInteger,
    ...), but onnxruntime leaves some QDQ convs in float even when it optimizes: there a
    sum over fewer channels, accumulated in another order, can make the next requantization round
    the other way, and one step can grow through the layers after it (a QDQ ResNet-50: 0.5 relative
    on the logits; benchmarks/RESULTS.md, "Pruning quantized graphs")."""
    from onnxprune.read.graph import node_reads

    graph = model.graph
    readers: dict[str, list] = {}
    read_inside: set[str] = set()  # read by name in an If/Loop/Scan body: a rewiring here cannot follow
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
        read_inside.update(name for name in node_reads(node) if name not in node.input)
    outputs = {o.name for o in graph.output}
    values = {init.name: init for init in graph.initializer}

    def per_tensor(node) -> bool:
        scale = values.get(node.input[1])
        return scale is not None and int(np.prod(scale.dims)) == 1

    replace, dropped = {}, set()
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or not per_tensor(node) or node.output[0] in outputs:
            continue
        after = readers.get(node.output[0], [])
        if any(r.output[0] in read_inside for r in after):
            continue
        if after and all(r.op_type == "DequantizeLinear" and r.input[0] == node.output[0] for r in after):
            dropped.update(id(r) for r in [node, *after])
            replace.update({r.output[0]: node.input[0] for r in after})
    if not replace:
        return None
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [n for n in model.graph.node if id(n) not in dropped]
    del out.graph.node[:]
    for node in kept:
        copy = out.graph.node.add()
        copy.CopyFrom(node)
        for i, name in enumerate(copy.input):
            copy.input[i] = replace.get(name, name)
    for output in out.graph.output:  # a graph output that was a DequantizeLinear's: keep its name
        if output.name in replace:
            out.graph.node.append(onnx.helper.make_node("Identity", [replace[output.name]], [output.name]))
    del out.graph.value_info[:]
    read = {name for node in out.graph.node for name in node.input}
    unread = [init for init in out.graph.initializer if init.name not in read]  # the pairs' scales
    for init in unread:
        out.graph.initializer.remove(init)
    return out


def run(model: onnx.ModelProto, feeds: dict | None = None, seed: int = 0) -> list[np.ndarray]:
    """onnxruntime outputs on random inputs (seeded, never zeros)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors reach the user as our one line, not as onnxruntime's log
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    if feeds is None:
        feeds = random_feeds(session, seed)
    return session.run(None, feeds)


def random_feeds(session, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in value.shape]
        dtype = np.float16 if "float16" in value.type else np.float32
        feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


SATURATING_OPS = ("Sigmoid", "Softmax", "LogSoftmax", "Tanh")


def logit_names(model: onnx.ModelProto) -> list[str]:
    """Per graph output, the tensor to compare it on: the input of the saturating activation
    (through Identity nodes) that produces it, else the output itself."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    stored = {t.name for t in graph.initializer} | {i.name for i in graph.input}
    names = []
    for output in graph.output:
        name, node = output.name, producer.get(output.name)
        while node is not None and node.op_type == "Identity":
            node = producer.get(node.input[0])
        if node is not None and node.op_type in SATURATING_OPS and node.input[0] not in stored:
            name = node.input[0]
        names.append(name)
    return names


def with_logit_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose graph outputs are its `logit_names` (the activations keep the dtype)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    outputs = list(model.graph.output)
    del out.graph.output[:]
    for name, output in zip(logit_names(model), outputs):
        out.graph.output.append(onnx.helper.make_tensor_value_info(name, output.type.tensor_type.elem_type, None))
    return out


def output_errors(got: onnx.ModelProto, want: onnx.ModelProto, feeds: dict) -> list[float]:
    """Max relative error per graph output of `got` against `want` (same outputs), saturating
    activations' outputs compared on their logits (module docstring)."""
    names = logit_names(want)
    if logit_names(got) != names:
        raise ValueError(f"the two models' outputs differ: {logit_names(got)} vs {names}")
    got_values, want_values = run(with_logit_outputs(got), feeds), run(with_logit_outputs(want), feeds)
    return [max_relative_error(a, b) for a, b in zip(got_values, want_values)]


def max_relative_error(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(float(np.abs(a).max()), float(np.abs(b).max()), 1e-12)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() / scale)
