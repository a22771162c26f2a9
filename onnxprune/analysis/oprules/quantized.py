"""Quantized layers (QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger) and QDQ pairs.

Pruning them would slice per-channel scales and zero points along with the integer weights, and
the zero-mask oracle would need "zero" in the quantized domain; until that exists they are
refused with a reason: their inputs keep their channels and their outputs are unprunable roots,
so `groups` lists them and says why.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnxprune.analysis.channels import ChannelTracer as Tracer
from onnxprune.analysis.oprules import barrier, rule

QUANTIZED_LAYERS = ("QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger")
QDQ = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")


def quantized_reason(t: Tracer, node: gs.Node) -> str:
    return f"{t.where(node)}: quantized; pruning quantized channels (with their scales and zero points) is not supported yet"


def fixed_outputs(t: Tracer, node: gs.Node, reason: str) -> None:
    """Each channel-carrying output becomes an unprunable root, so the refusal is listed with its reason."""
    for out in node.outputs[:1]:
        shape = t.mg.shape(out)
        if shape is not None and len(shape) >= 2:
            t.new_root(
                node, out, shape[1] if len(shape) > 2 else shape[-1], 1 if len(shape) > 2 else len(shape) - 1, reason
            )


@rule(*QUANTIZED_LAYERS)
def quantized_layer(t: Tracer, node: gs.Node) -> None:
    reason = quantized_reason(t, node)
    barrier(t, node, reason)
    fixed_outputs(t, node, reason)


@rule(*QDQ)
def quantize_dequantize(t: Tracer, node: gs.Node) -> None:
    barrier(t, node, quantized_reason(t, node))
