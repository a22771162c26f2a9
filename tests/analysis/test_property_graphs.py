"""Property test: random small architectures, both exporters, random keep sets, the zero-mask oracle.

A net is a stem conv followed by a few random blocks (conv/BN/ReLU6, residual adds with identity or
1x1-projection shortcuts, DenseNet-style concat blocks, depthwise convs with multiplier 1 or 2,
grouped convs, squeeze-excitation gates, pooling, channel splits) and a head (Flatten / view /
reshape into Gemm or an explicit MatMul+Add). Each net is exported with the legacy exporter
(constant folding on or off) or the dynamo exporter, analysed, and pruned with a random keep set
for every prunable group; the pruned model must pass the full checker, keep the output shape and
give the output of the original model with the removed channels zeroed.

Activations before any consumer map 0 to 0 (ReLU, ReLU6), so zeroed channels stay zero; the only
sigmoid is an SE gate that multiplies the (zeroed) channels it gates.

The generator (blocks, `Spec`, `draw_spec`, `build`) lives in tests/analysis/property_builders.py; the
exporters' patterns in tests/analysis/test_exporter_patterns.py.

`benchmarks/property_sweep.py` runs the same generator with many more examples.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from torch import nn

from onnxprune.analysis.groups import channel_groups
from onnxprune.measure.verify import max_relative_error, run, zero_mask
from onnxprune.prune.surgery import fill_empty_cuts, prune_channels
from tests.analysis.property_builders import (  # tests/read/test_constant_folding.py imports some from here
    INPUT_SHAPE,
    HypothesisDraw,
    RandomDraw,  # noqa: F401  (benchmarks/property_sweep.py imports it from here)
    Spec,
    build,
    cbr,
    draw_spec,
)

OPSET = 20
TOLERANCE = 1e-5
onnxruntime.set_default_logger_severity(3)  # no "removing unused initializer" chatter


# ---- export ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet():
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export(model: nn.Module, exporter: str) -> onnx.ModelProto:
    x = torch.randn(INPUT_SHAPE)
    with _quiet(), torch.no_grad():
        if exporter == "dynamo":
            program = torch.onnx.export(
                model, (x,), dynamo=True, external_data=False, opset_version=OPSET, verbose=False
            )
            return program.model_proto
        buf = io.BytesIO()
        torch.onnx.export(
            model,
            (x,),
            buf,
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=exporter == "legacy-fold",
            training=torch.onnx.TrainingMode.EVAL,
            verbose=False,
        )
        return onnx.load_from_string(buf.getvalue())


def param_count(model: onnx.ModelProto) -> int:
    total = sum(
        int(np.prod(i.dims, dtype=np.int64))
        for i in model.graph.initializer
        if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    )
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
                    total += int(np.prod(a.t.dims, dtype=np.int64))
    return total


def random_keep(deps, rng: np.random.Generator) -> dict[int, np.ndarray]:
    keep = {}
    for group in deps.prunable:
        k = int(rng.integers(1, group.size + 1))
        keep[group.id] = np.sort(rng.choice(group.size, k, replace=False))
    return fill_empty_cuts(deps, keep)  # a Split/Slice output may not lose all its channels


def check_pruning(model: onnx.ModelProto, keep_seed: int, deps=None) -> dict:
    """Analyse, prune with a random keep set, check the oracle; returns figures for the report."""
    deps = deps if deps is not None else channel_groups(model)
    keep = random_keep(deps, np.random.default_rng(keep_seed))
    pruned = prune_channels(deps, keep)
    onnx.checker.check_model(pruned, full_check=True)
    expected = run(zero_mask(deps, keep))[0]
    got = run(pruned)[0]
    assert got.shape == expected.shape, f"output shape {got.shape} != {expected.shape}"
    error = max_relative_error(got, expected)
    assert error <= TOLERANCE, f"pruned output differs from the zero-mask oracle: {error:.3g}"
    strict = any(len(k) < deps.groups[g].size for g, k in keep.items())
    if strict:
        assert param_count(pruned) < param_count(model), "a strict keep set removed no parameters"
    return {"groups": len(deps.groups), "prunable": len(deps.prunable), "strict": strict}


def check_spec(spec: Spec) -> dict:
    model = build(spec)
    proto = export(model, spec.exporter)
    x = np.random.default_rng(spec.seed).standard_normal(INPUT_SHAPE).astype(np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    original = run(proto, {proto.graph.input[0].name: x})[0]
    assert max_relative_error(original, reference) < 1e-4, "export does not match torch"
    deps = channel_groups(proto)
    if spec.expect_prunable:
        assert deps.prunable, f"no prunable group found; reasons: {[g.reasons[:1] for g in deps.groups]}"
    return check_pruning(proto, spec.seed, deps)


# ---- the property ---------------------------------------------------------------------------
STATS = {"examples": 0, "with_prunable": 0, "strict": 0}


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_random_architectures_prune_like_zero_mask(data):
    spec = draw_spec(HypothesisDraw(data))
    note(str(spec))
    figures = check_spec(spec)
    STATS["examples"] += 1
    STATS["with_prunable"] += bool(figures["prunable"])
    STATS["strict"] += figures["strict"]


def test_property_run_was_not_vacuous():
    """Runs after the property (same file, same worker under --dist loadfile)."""
    if STATS["examples"] == 0:
        pytest.skip("the property test did not run in this process")
    assert STATS["with_prunable"] >= 0.8 * STATS["examples"], STATS
    assert STATS["strict"] >= 0.5 * STATS["examples"], STATS


@pytest.mark.parametrize("exporter", ["legacy-fold", "dynamo"])
def test_all_block_kinds_once(exporter):
    """One fixed net with every block kind, so each exporter sees all of them in every run."""
    spec = Spec(
        blocks=[
            ("conv", 4, 3, True),
            ("res", 4, 3),
            ("res", 6, 3),
            ("dense", 2, 2),
            ("dw", 2),
            ("group", 2, 4),
            ("se", 2, True, False),
            ("pool", "max"),
            ("split", 2, "swap"),
            ("conv", 4, 1, False),
            ("c2f",),
            ("shuffle",),
            ("denseres",),
            ("se", 2, False, True),
            ("pool", "avg"),
        ],
        head=dict(gap=False, flatten="view", hidden=4, matmul=False, classes=3),
        exporter=exporter,
        seed=1,
        expect_prunable=True,
    )
    figures = check_spec(spec)
    assert figures["prunable"] >= 4


# ---- a channel shuffle: prunable when both rows keep the same offsets ---------------------------------------------
class ShuffleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = cbr(3, 4)
        self.b = cbr(4, 8)
        self.c = cbr(8, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        x = self.b(self.a(x))
        n, c, h, w = x.shape
        x = x.reshape(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)  # channel shuffle
        x = self.c(x).mean((2, 3))
        return self.head(x)


@pytest.mark.parametrize("exporter", ["legacy-fold", "legacy-nofold", "dynamo"])
def test_channel_shuffle_prunes_or_is_refused_with_the_reshape_named(exporter):
    torch.manual_seed(0)
    proto = export(ShuffleNet().eval(), exporter)
    deps = channel_groups(proto)
    conv_nodes = [n.name for n in proto.graph.node if n.op_type == "Conv"]
    assert len(conv_nodes) == 3
    shuffled = deps.group_of(conv_nodes[1])
    reshapes = [n.name for n in proto.graph.node if n.op_type == "Reshape"]
    # legacy-nofold writes the [n, 2, c/2, h, w] target as Concat(Unsqueeze(Constant), ...): the
    # constant pieces fold (constant_folding.py), so it prunes like the other exports
    assert shuffled.prunable and any(name in why for why in shuffled.coupled_by for name in reshapes)
    assert deps.group_of(conv_nodes[0]).prunable and deps.group_of(conv_nodes[2]).prunable
    for seed in range(3):
        figures = check_pruning(proto, seed, deps)
        assert figures["prunable"] >= 3


def test_keep_set_that_empties_a_split_output_is_refused():
    """Every group keeps a channel, but a Split output can still lose all of them: refuse, or fill."""
    from onnxprune.errors import UserError

    spec = Spec(
        blocks=[("conv", 4, 3, True), ("split", 2, "cat")],
        head=dict(gap=True, flatten="flatten", hidden=0, matmul=False, classes=2),
        seed=0,
    )
    proto = export(build(spec), "legacy-fold")
    deps = channel_groups(proto)
    stem = deps.group_of(next(n.name for n in proto.graph.node if n.op_type == "Conv"))
    with pytest.raises(UserError, match="removes every channel"):
        prune_channels(deps, {stem.id: [0, 1]})  # the second Split output (channels 2, 3) would be empty
    keep = fill_empty_cuts(deps, {stem.id: [0, 1]})
    assert keep[stem.id].tolist() == [0, 1, 2]
    pruned = prune_channels(deps, keep)
    assert max_relative_error(run(pruned)[0], run(zero_mask(deps, keep))[0]) <= TOLERANCE
