"""The two torch exporters as the zoo runs them: legacy (TorchScript) and dynamo, BN folded or kept.

``export_legacy``: ``dynamo=False``; BN folded by ``do_constant_folding=True``, kept without it.
``export_dynamo``: one unoptimised trace, then onnxscript's optimizer as ``optimize=True`` runs it
(folded) or with its three BatchNorm-fusion rules taken out (kept). Files, manifest and CLI are
in models/export.py.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Iterator, Sequence

import onnx
import torch
from torch import nn

__all__ = ["OPSET", "INPUT_NAME", "OUTPUT_NAME", "export_legacy", "export_dynamo"]

# Opset 20: the dynamo exporter's native opset in torch 2.13 (no version conversion) and the
# highest one the legacy (TorchScript) exporter supports.
OPSET = 20
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch.onnx's logger (``torchvision is not installed`` ...) and warnings."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_legacy(model: nn.Module, x: torch.Tensor, bn: str) -> onnx.ModelProto:
    buf = io.BytesIO()
    with _quiet():
        torch.onnx.export(
            model,
            (x,),
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            do_constant_folding=(bn == "folded"),
            training=torch.onnx.TrainingMode.EVAL,
            verbose=False,
        )
    return onnx.load_from_string(buf.getvalue())


@contextlib.contextmanager
def _without_bn_fusion() -> Iterator[None]:
    """Run onnxscript's default optimizer with its BatchNorm-fusion rewrite rules taken out."""
    import onnxscript.rewriter as rewriter
    from onnxscript.rewriter.rules import common as rules

    bn_rules = {
        id(rules.fuse_batchnorm_into_conv_rule),
        id(rules.fuse_batchnorm_into_conv_transpose_rule),
        id(rules.fuse_batchnorm_into_gemm_rule),
    }
    saved = rewriter._DEFAULT_REWRITE_RULES
    rewriter._DEFAULT_REWRITE_RULES = tuple(r for r in saved if id(r) not in bn_rules)
    try:
        yield
    finally:
        rewriter._DEFAULT_REWRITE_RULES = saved


def _optimize_keeping_bn(program) -> None:
    """``program.optimize()`` minus BN fusion; public-API fallback if onnxscript's internals move."""
    import onnxscript.rewriter as rewriter

    if isinstance(getattr(rewriter, "_DEFAULT_REWRITE_RULES", None), tuple):
        with _without_bn_fusion():
            program.optimize()
        return
    import onnx_ir.passes.common as common_passes
    import onnxscript.optimizer

    onnxscript.optimizer.fold_constants(program.model)
    common_passes.RemoveUnusedNodesPass()(program.model)
    common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(program.model)


def export_dynamo(model: nn.Module, x: torch.Tensor, bns: Sequence[str]) -> dict[str, onnx.ModelProto]:
    """One dynamo trace (unoptimised), then the exporter's optimizer with or without BN fusion."""
    import onnx_ir as ir

    with _quiet():
        program = torch.onnx.export(
            model,
            (x,),
            dynamo=True,
            external_data=False,
            optimize=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            verbose=False,
        )
        raw = program.model_proto
        out: dict[str, onnx.ModelProto] = {}
        for bn in bns:
            program.model = ir.serde.deserialize_model(raw)
            if bn == "folded":
                program.optimize()  # exactly what optimize=True does
            else:
                _optimize_keeping_bn(program)
            out[bn] = program.model_proto
    return out
