"""verify.output_errors: outputs of saturating activations are compared on their logits.

onnxruntime's Sigmoid is accurate to ~1e-7 absolute, so on a saturated map (PP-OCRv4 det on a
random image: every probability ~1e-7) logits equal to 1e-6 relative gave a max relative error
of 0.8 on the output, and the zero-mask oracle failed on a correctly pruned graph.
"""

from __future__ import annotations

import numpy as np

from onnxprune.analysis.groups import channel_groups
from onnxprune.measure.verify import logit_names, max_relative_error, output_errors, run, zero_mask
from onnxprune.prune.surgery import prune_channels
from tests.synthetic_graphs import GraphBuilder

SATURATED = {"x": np.full((1, 3, 8, 8), -16.0, np.float32)}  # sigmoid(-16) ~ 1e-7


def shifted_sigmoid(shift: float):
    builder = GraphBuilder()
    logits = builder.node("Add", ["x", builder.const(np.float32(shift))], name="logits")[0]
    return builder.model(builder.node("Sigmoid", [logits], name="probability")[0])


def test_saturated_sigmoid_compared_on_logits_not_on_rounded_probabilities():
    exact, rounded = shifted_sigmoid(0.0), shifted_sigmoid(-1.5e-5)  # logits equal to 1e-6 relative
    assert max_relative_error(run(exact, SATURATED)[0], run(rounded, SATURATED)[0]) > 1e-2  # the old measure
    assert output_errors(rounded, exact, SATURATED)[0] < 1e-5


def test_a_real_change_of_saturated_logits_is_still_caught():
    assert output_errors(shifted_sigmoid(-0.5), shifted_sigmoid(0.0), SATURATED)[0] > 1e-2


def test_logits_found_through_identity_and_plain_outputs_kept():
    model = shifted_sigmoid(0.0)
    logits = next(node.output[0] for node in model.graph.node if node.name == "logits")
    assert logit_names(model) == [logits]
    builder = GraphBuilder()
    plain = builder.model(builder.relu(builder.conv("x", 3, 4)))
    assert logit_names(plain) == ["y"]


def test_scalar_affine_before_a_saturated_sigmoid_head_prunes_exactly():
    """PP-LCNetV3: conv, learnable x*a+b with scalar a and b, hardswish, then a DB-style head."""
    builder = GraphBuilder()
    h = builder.conv("x", 3, 8, name="stem")
    h = builder.node("Mul", [builder.const(np.float32(1.5)), h], name="scale")[0]
    h = builder.node("Add", [h, builder.const(np.float32(0.25))], name="shift")[0]
    h = builder.node("HardSwish", [h], name="act")[0]
    logits = builder.node("Add", [builder.conv(h, 8, 1, name="head"), builder.const(np.float32(-30.0))])[0]
    model = builder.model(builder.node("Sigmoid", [logits], name="probability")[0])
    deps = channel_groups(model)
    keep = {deps.group_of("stem").id: np.arange(0, 8, 2)}
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    assert output_errors(prune_channels(deps, keep), zero_mask(deps, keep), feeds)[0] < 1e-5
