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

`benchmarks/property_sweep.py` runs the same generator with many more examples.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import warnings
from dataclasses import dataclass, field

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

INPUT_SHAPE = (1, 3, 16, 16)
OPSET = 20
EXPORTERS = ("legacy-fold", "legacy-nofold", "dynamo")
TOLERANCE = 1e-5
onnxruntime.set_default_logger_severity(3)  # no "removing unused initializer" chatter


# ---- drawing: one interface for hypothesis (shrinkable) and for plain `random` (the sweep) -------
class Draw:
    def int(self, lo: int, hi: int) -> int:  # inclusive
        raise NotImplementedError

    def choice(self, options):
        return options[self.int(0, len(options) - 1)]

    def flag(self) -> bool:
        return bool(self.int(0, 1))


class HypothesisDraw(Draw):
    def __init__(self, data):
        self.data = data

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))


class RandomDraw(Draw):
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


# ---- building blocks ------------------------------------------------------------------------
def _bn(c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return bn


def cbr(cin: int, cout: int, k: int = 3, groups: int = 1, bn: bool = True, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=not bn)]
    if bn:
        layers.append(_bn(cout))
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, cin: int, cout: int, mid: int):
        super().__init__()
        self.body = nn.Sequential(cbr(cin, mid), cbr(mid, cout, act=False))
        self.short = None if cin == cout else cbr(cin, cout, k=1, act=False)

    def forward(self, x):
        s = x if self.short is None else self.short(x)
        return torch.relu(self.body(x) + s)


class Dense(nn.Module):
    """x = cat([x, f(x)]) several times (DenseNet); the block's input is part of every concat."""

    def __init__(self, cin: int, growth: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(cbr(cin + i * growth, growth) for i in range(layers))

    def forward(self, x):
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return x


class SE(nn.Module):
    def __init__(self, c: int, r: int, linear: bool, reduce_mean: bool):
        super().__init__()
        self.linear, self.reduce_mean = linear, reduce_mean
        if linear:
            self.fc1, self.fc2 = nn.Linear(c, r), nn.Linear(r, c)
        else:
            self.fc1, self.fc2 = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True) if self.reduce_mean else self.pool(x)
        if self.linear:
            s = torch.flatten(s, 1)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
        if self.linear:
            s = s.view(s.size(0), -1, 1, 1)
        return x * s


class SplitBlock(nn.Module):
    """Cut the channels in two; process one part; concatenate (in either order) or add them."""

    def __init__(self, c: int, first: int, mode: str):
        super().__init__()
        self.sizes, self.mode = [first, c - first], mode
        out = c - first if mode == "add" else first
        self.f = cbr(first, out)

    def forward(self, x):
        a, b = torch.split(x, self.sizes, 1)
        y = self.f(a)
        if self.mode == "add":
            return torch.relu(y + b)
        return torch.cat([b, y] if self.mode == "swap" else [y, b], 1)


class C2fBlock(nn.Module):
    """YOLOv8's C2f core: split in halves, a residual conv on the second half, concat all three."""

    def __init__(self, c: int):
        super().__init__()
        self.half = c // 2
        self.f = cbr(self.half, self.half)

    def forward(self, x):
        a, b = torch.split(x, [self.half, self.half], 1)
        return torch.cat([a, b, b + self.f(b)], 1)


class Shuffle(nn.Module):
    """ShuffleNet's channel shuffle with two rows."""

    def forward(self, x):
        n, c, h, w = x.shape
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class DenseResidual(nn.Module):
    """Two dense layers whose concatenated outputs are added to the block input."""

    def __init__(self, c: int):
        super().__init__()
        self.a, self.b = cbr(c, c // 2), cbr(c + c // 2, c - c // 2)

    def forward(self, x):
        a = self.a(x)
        return torch.relu(torch.cat([a, self.b(torch.cat([x, a], 1))], 1) + x)


class Head(nn.Module):
    def __init__(self, c: int, spatial: int, gap: bool, flatten: str, hidden: int, matmul: bool, classes: int):
        super().__init__()
        self.gap, self.flatten, self.matmul = gap, flatten, matmul
        features = c if gap else c * spatial * spatial
        dims = [features] + ([hidden] if hidden else []) + [classes]
        if matmul:
            self.weights = nn.ParameterList(nn.Parameter(torch.randn(a, b) / a**0.5) for a, b in zip(dims, dims[1:]))
            self.biases = nn.ParameterList(nn.Parameter(torch.randn(b) * 0.1) for b in dims[1:])
        else:
            self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))

    def forward(self, x):
        if self.gap:
            x = torch.nn.functional.adaptive_avg_pool2d(x, 1)
        if self.flatten == "flatten":
            x = torch.flatten(x, 1)
        elif self.flatten == "view":
            x = x.view(x.size(0), -1)
        else:
            x = x.reshape(1, -1)
        n = len(self.biases) if self.matmul else len(self.fcs)
        for i in range(n):
            x = x @ self.weights[i] + self.biases[i] if self.matmul else self.fcs[i](x)
            if i < n - 1:
                x = torch.relu(x)
        return x


@dataclass
class Spec:
    blocks: list = field(default_factory=list)
    head: dict = field(default_factory=dict)
    exporter: str = "legacy-fold"
    seed: int = 0
    expect_prunable: bool = False

    def __str__(self) -> str:
        return f"exporter={self.exporter} seed={self.seed} blocks={self.blocks} head={self.head}"


def draw_spec(d: Draw, dynamo_share: int = 10) -> Spec:
    """A random architecture (as plain data, so failures print readably)."""
    spec = Spec()
    spec.exporter = "dynamo" if d.int(0, 99) < dynamo_share else d.choice(EXPORTERS[:2])
    spec.seed = d.int(0, 2**16)
    c, spatial = d.int(2, 6), INPUT_SHAPE[-1]
    spec.blocks.append(("conv", c, 3, d.flag()))
    previous_plain = True
    for _ in range(d.int(0, 4)):
        kind = d.choice(
            ["conv", "res", "res", "dense", "dw", "group", "se", "pool", "split", "c2f", "shuffle", "denseres"]
        )
        if kind in ("c2f", "shuffle") and c % 2:
            kind = "conv"
        if kind == "conv":
            cout, k = d.int(2, 8), d.choice([1, 3])
            spec.blocks.append(("conv", cout, k, d.flag()))
        elif kind == "res":
            cout = c if d.flag() else d.int(2, 8)
            spec.blocks.append(("res", cout, d.int(2, 6)))
        elif kind == "dense":
            spec.blocks.append(("dense", d.int(1, 4), d.int(1, 3)))
            cout = c + spec.blocks[-1][1] * spec.blocks[-1][2]
        elif kind == "dw":
            mult = d.int(1, 2)
            spec.blocks.append(("dw", mult))
            cout = c * mult
        elif kind == "group":
            g = d.choice([2, 4])
            cout = g * d.int(1, 2)
            spec.blocks.append(("group", g, cout))
        elif kind == "se":
            spec.blocks.append(("se", d.int(1, 4), d.flag(), d.flag()))
            cout = c
        elif kind in ("c2f", "shuffle", "denseres"):
            spec.blocks.append((kind,))
            cout = c + c // 2 if kind == "c2f" else c
        elif kind == "pool":
            if spatial < 4:
                continue
            spec.blocks.append(("pool", d.choice(["max", "avg"])))
            spatial //= 2
            cout = c
        else:
            if c < 2:
                continue
            mode = d.choice(["cat", "swap", "add"])
            first = c // 2 if mode == "add" and c % 2 == 0 else d.int(1, c - 1)
            if mode == "add" and c % 2:
                mode = "cat"
            spec.blocks.append(("split", first, mode))
            cout = c - first if mode == "add" else c
        # a plain conv whose output feeds another plain conv is always prunable
        if kind == "conv" and previous_plain:
            spec.expect_prunable = True
        previous_plain = kind == "conv"
        c = cout
    hidden = d.choice([0, 0, d.int(2, 6)])
    spec.head = dict(
        gap=d.flag(),
        flatten=d.choice(["flatten", "view", "reshape"]),
        hidden=hidden,
        matmul=d.flag(),
        classes=d.int(2, 5),
    )
    if hidden:
        spec.expect_prunable = True
    return spec


def build(spec: Spec) -> nn.Module:
    torch.manual_seed(spec.seed)
    layers: list[nn.Module] = []
    c, spatial = INPUT_SHAPE[1], INPUT_SHAPE[-1]
    for block in spec.blocks:
        kind = block[0]
        if kind == "conv":
            _, cout, k, bn = block
            layers.append(cbr(c, cout, k, bn=bn))
        elif kind == "res":
            _, cout, mid = block
            layers.append(Residual(c, cout, mid))
        elif kind == "dense":
            _, growth, n = block
            layers.append(Dense(c, growth, n))
            cout = c + growth * n
        elif kind == "dw":
            cout = c * block[1]
            layers.append(cbr(c, cout, 3, groups=c))
        elif kind == "group":
            _, g, cout = block
            if c % g:  # bring the channels to a multiple of the group count first
                layers.append(cbr(c, g * 2, 1))
                c = g * 2
            layers.append(cbr(c, cout, 3, groups=g))
        elif kind == "se":
            layers.append(SE(c, block[1], block[2], block[3]))
            cout = c
        elif kind in ("c2f", "shuffle", "denseres"):
            layers.append({"c2f": C2fBlock, "shuffle": lambda c: Shuffle(), "denseres": DenseResidual}[kind](c))
            cout = c + c // 2 if kind == "c2f" else c
        elif kind == "pool":
            layers.append(nn.MaxPool2d(2) if block[1] == "max" else nn.AvgPool2d(2))
            spatial //= 2
            cout = c
        else:
            layers.append(SplitBlock(c, block[1], block[2]))
            cout = c - block[1] if block[2] == "add" else c
        c = cout
    layers.append(Head(c, spatial, **spec.head))
    return nn.Sequential(*layers).eval()


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


# ---- real exporters' patterns (tests/pattern_models.py): profile reads each one right ------------
def _pattern_case(draw):
    """(model, --input-shape or None, expected params, expected MACs) for one drawn pattern."""
    from tests import pattern_models as pm

    kind = draw(
        st.sampled_from(
            ["constant", "computed", "dynamic_hw", "float_computed", "lstm", "qdq", "conv_integer", "qlinear"]
        )
    )
    a, b = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    size = 2 * draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "constant":
        return (
            kind,
            pm.constant_weights(rng, a, b, size, value_floats=draw(st.booleans())),
            None,
            pm.constant_weights_params(a, b),
            size * size * (a * 27 + b * a) + 5 * b,
        )
    if kind in ("computed", "dynamic_hw"):
        model = pm.computed_reshape(rng, a, size, hw="H" if kind == "dynamic_hw" else size)
        return kind, model, {"x": [1, 3, size, size]}, a * 27 + 6, a * size * size * (27 + 3)
    if kind == "float_computed":
        return kind, pm.float_computed_reshape(rng, a, size), None, a * 27 + 6, a * size * size * (27 + 3)
    if kind == "lstm":
        model = pm.lstm_consumer(rng, a, b, width="W")
        params = a * 9 + 4 * b * (a + b) + b * 7
        return kind, model, {"x": [1, 3, 1, size]}, params, size * (a * 9 + 4 * b * (a + b) + b * 7)
    if kind == "qdq":
        per_channel = 3 * b if b > 1 else 0  # weight scale + zero point, bias scale; a 1-element one is a scalar
        return (
            kind,
            pm.qdq_conv(rng, a, b, size),
            None,
            b * a * 9 + b + per_channel + 10 * b + 30,
            b * size * size * a * 9 + 10 * b,
        )
    if kind == "conv_integer":
        return (
            kind,
            pm.conv_integer(rng, a, b, size),
            None,
            b * a * 9 + b * 4,
            b * size * size * a * 9 + size * size * b * 4,
        )
    per_channel = 2 * b if b > 1 else 0
    return (
        kind,
        pm.qlinear_conv(rng, a, b, size),
        None,
        b * a * 9 + b + per_channel + size * 6,
        b * size * size * a * 9 + b * size * size * 6,
    )


def _run_shapes(model, shapes) -> dict:
    """Every node output's shape in one onnxruntime run (the oracle for inferred shapes)."""
    names = [o for n in model.graph.node for o in n.output if o]
    probed = onnx.ModelProto()
    probed.CopyFrom(model)
    declared = {o.name for o in probed.graph.output}
    probed.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in declared)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(probed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {}
    for value in session.get_inputs():
        shape = (shapes or {}).get(value.name) or [d if isinstance(d, int) else 1 for d in value.shape]
        feeds[value.name] = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return {name: tuple(v.shape) for name, v in zip(names, session.run(names, feeds))}


@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_exporter_patterns_profile_like_their_formulas(data):
    from onnxprune import profile
    from onnxprune.read.shapes import infer_shapes

    kind, model, shapes, params, macs = _pattern_case(data.draw)
    note(kind)
    result = profile(model, shapes)
    assert (result.totals["params"], result.totals["flops"]) == (params, macs)
    assert result.uncounted == []
    infos = infer_shapes(model, shapes)
    actual = _run_shapes(model, shapes)
    for name, shape in actual.items():
        info = infos.get(name)
        assert info is not None and info.known and tuple(info.shape) == shape, (name, info, shape)
