"""The property test's random-architecture generator: draws (hypothesis or `random`), torch blocks, Spec, build."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
from hypothesis import strategies as st
from torch import nn

INPUT_SHAPE = (1, 3, 16, 16)
EXPORTERS = ("legacy-fold", "legacy-nofold", "dynamo")


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
