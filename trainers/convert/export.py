"""Public entry points: `convert` (ONNX -> OnnxModule) and `export_onnx` (module -> ONNX)."""

from __future__ import annotations

import io
import warnings
from typing import Sequence

import onnx
import torch
from torch import nn

from onnxprune.errors import UserError
from onnxprune.read.io import ModelLike, load_model
from onnxprune.read.save import save_model

from .builder import _Builder
from .modules import OnnxModule

# ---------------------------------------------------------------------------------------- public


def _prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    if model.functions:
        try:
            from onnx import inliner

            model = inliner.inline_local_functions(model)
        except Exception as exc:  # pragma: no cover - depends on the model
            raise UserError(f"cannot inline the model's local functions ({type(exc).__name__})") from None
    return model


def convert(model: ModelLike, *, input_shape: Sequence[int] | None = None) -> OnnxModule:
    """ONNX model (path or ModelProto) -> an `OnnxModule` whose weights are Parameters.

    The module runs in any batch size; call `.train()` / `.eval()` as usual (BatchNorm and
    Dropout follow the mode). `input_shape` fills symbolic non-batch input dimensions.
    """
    proto = _prepare(load_model(model, check=False))
    module = _Builder(proto, input_shape).build()
    module.train()
    return module


def _drop_dead_nodes(model: onnx.ModelProto) -> None:
    """The legacy exporter in PRESERVE mode leaves Identity nodes nothing reads: drop them."""
    graph = model.graph
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output if o)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for init in list(graph.initializer):
        if init.name not in used:
            graph.initializer.remove(init)


def export_onnx(
    module: nn.Module,
    sample_input: torch.Tensor | None,
    path,
    *,
    opset: int | None = None,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    dynamic_batch: bool = True,
    keep_bn: bool = False,
    refuse: Sequence[ModelLike] = (),
    metadata: dict[str, str] | None = None,
) -> onnx.ModelProto:
    """Export `module` (eval mode) with torch.onnx.export(dynamo=False) and save it atomically.

    Names default to the source graph's (an OnnxModule remembers them); the batch axis is dynamic
    unless `dynamic_batch=False`. `keep_bn=True` keeps BatchNormalization nodes (for a later
    fine-tune); by default BN is folded into the convolutions, the smaller graph to deploy.
    `refuse` lists input paths the output must not overwrite. Returns the saved ModelProto.
    """
    if sample_input is None:
        if not isinstance(module, OnnxModule):
            raise ValueError("sample_input is required for a module that is not an OnnxModule")
        sample_input = module.sample_input(1)
    input_names = input_names or list(getattr(module, "input_names", []) or ["input"])
    output_names = output_names or list(getattr(module, "output_names", []) or ["output"])
    if opset is None:
        opset = getattr(module, "opset", 17)
    opset = max(11, min(int(opset), 20))  # the legacy exporter's range
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    sample = sample_input.to(device)
    was_training = module.training
    module.eval()
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {name: {0: "batch"} for name in input_names[:1] + output_names}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (sample,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=input_names[:1],
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
                training=torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL,
            )
    finally:
        module.train(was_training)
    proto = onnx.load_from_string(buffer.getvalue())
    _drop_dead_nodes(proto)
    proto.producer_name = "onnxprune-train"
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    save_model(proto, path, *refuse)
    return proto
