"""Model zoo registry: the CNNs of models/nets.py, seeded, initialised and described.

Every factory takes ``seed`` and builds a deterministic, randomly initialised network
(nothing is downloaded). After the usual Kaiming init, every BatchNorm gets a random
affine (gamma, beta) and *calibrated* running statistics (a few forward passes in train
mode on seeded random data), so that activations stay O(1) through the depth of the
network and BatchNorm folding is a non-trivial transformation of the weights.

``MODELS`` maps a name to a :class:`ModelSpec` (factory, input shape, classes and
reference figures). MACs are multiply-accumulates of Conv/Linear layers only (bias,
BN, activations, pooling and residual adds are not counted), for batch 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from models.nets import AlexNetCifar, MobileNetV2, ResNet50, VGG16Cifar

__all__ = [
    "ModelSpec",
    "MODELS",
    "CIFAR_MODELS",
    "IMAGENET_MODELS",
    "EXPORTERS",
    "BN_VARIANTS",
    "build",
]

EXPORTERS: tuple[str, ...] = ("legacy", "dynamo")
BN_VARIANTS: tuple[str, ...] = ("folded", "kept")


# --------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------
CALIBRATION_BATCH = 4
CALIBRATION_STEPS = 2


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.normal_(m.bias, 0.0, 0.01)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, 0.0, 0.1)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, (2.0 / m.in_features) ** 0.5)
            nn.init.normal_(m.bias, 0.0, 0.01)


@torch.no_grad()
def _calibrate_bn(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Give every BatchNorm the running statistics of seeded random data (cumulative average)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the calibration steps
    model.train()
    for _ in range(CALIBRATION_STEPS):
        model(torch.randn(CALIBRATION_BATCH, *input_shape[1:]))
    for m, mom in zip(bns, saved):
        m.momentum = mom


def build(name: str, seed: int = 0) -> nn.Module:
    """Build zoo model ``name`` with a seeded random init, in eval mode."""
    spec = MODELS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.factory()
        _init_weights(model)
        _calibrate_bn(model, spec.input_shape)
    return model.eval()


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """A zoo entry. ``ref_params``/``ref_macs``: reference figures the tests check against.

    ``ref_source`` says where the figures come from: a published number, or (``"own"``)
    our own count for a variant without a canonical published figure (documented in
    models/README.md).
    """

    name: str
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, int, int, int]
    num_classes: int
    ref_params: float
    ref_macs: float
    ref_source: str
    dataset: str

    def build(self, seed: int = 0) -> nn.Module:
        return build(self.name, seed)


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec(
            "vgg16_cifar",
            lambda: VGG16Cifar(10),
            (1, 3, 32, 32),
            10,
            ref_params=15.0e6,
            ref_macs=313e6,
            ref_source="published: VGG-16/CIFAR-10 ~15 M params, ~313 M MACs (e.g. HRank, CVPR 2020)",
            dataset="cifar10",
        ),
        ModelSpec(
            "alexnet_cifar",
            lambda: AlexNetCifar(10),
            (1, 3, 32, 32),
            10,
            ref_params=23_274_570,
            ref_macs=62_742_528,
            ref_source="own: exact count of this AlexNet-BN/CIFAR variant (see AlexNetCifar)",
            dataset="cifar10",
        ),
        ModelSpec(
            "resnet50_cifar",
            lambda: ResNet50(10, cifar=True),
            (1, 3, 32, 32),
            10,
            ref_params=23_520_842,
            ref_macs=1_297_829_888,
            ref_source="own: exact count (matches the common CIFAR port: 23.5 M params, 1.30 G MACs)",
            dataset="cifar10",
        ),
        ModelSpec(
            "mobilenetv2_cifar",
            lambda: MobileNetV2(10, cifar=True),
            (1, 3, 32, 32),
            10,
            ref_params=2_236_682,
            ref_macs=87_976_448,
            ref_source="own: exact count (stride-1 stem and 24-ch stage: 2.24 M params, 88.0 M MACs)",
            dataset="cifar10",
        ),
        ModelSpec(
            "resnet50_imagenet",
            lambda: ResNet50(1000, cifar=False),
            (1, 3, 224, 224),
            1000,
            ref_params=25.6e6,
            ref_macs=4.1e9,
            ref_source="published: torchvision resnet50, 25.6 M params, 4.1 G MACs",
            dataset="imagenet",
        ),
        ModelSpec(
            "mobilenetv2_imagenet",
            lambda: MobileNetV2(1000, cifar=False),
            (1, 3, 224, 224),
            1000,
            ref_params=3.5e6,
            ref_macs=300e6,
            ref_source="published: MobileNetV2 1.0 (Sandler et al. 2018), 3.4-3.5 M params, 300 M MACs",
            dataset="imagenet",
        ),
    )
}

CIFAR_MODELS: tuple[str, ...] = tuple(n for n, s in MODELS.items() if s.dataset == "cifar10")
IMAGENET_MODELS: tuple[str, ...] = tuple(n for n, s in MODELS.items() if s.dataset == "imagenet")
