"""The zoo's networks: plain PyTorch CNNs (no torchvision), as the pruning literature defines them.

VGG-16 and AlexNet in their CIFAR shapes, ResNet-50 and MobileNetV2 in both CIFAR and ImageNet
shapes. The registry, the seeded initialisation and the reference figures are in models/zoo.py.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["VGG16Cifar", "AlexNetCifar", "ResNet50", "MobileNetV2"]


# --------------------------------------------------------------------------------------
# VGG-16 (CIFAR)
# --------------------------------------------------------------------------------------
VGG16_CFG: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16Cifar(nn.Module):
    """VGG-16 with BatchNorm for 32x32 inputs: 13 conv3x3(+BN+ReLU), 5 max-pools, 3 FC.

    Head (as in the widely used CIFAR port of torchvision's VGG): flatten 512 ->
    Linear(512, 512) -> ReLU -> Dropout -> Linear(512, 512) -> ReLU -> Dropout -> Linear(512, 10).
    """

    def __init__(self, num_classes: int = 10, cfg: tuple = VGG16_CFG) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                in_ch = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(in_ch, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


# --------------------------------------------------------------------------------------
# AlexNet (CIFAR)
# --------------------------------------------------------------------------------------
class AlexNetCifar(nn.Module):
    """AlexNet with BatchNorm, torchvision's AlexNet layout shrunk to 32x32 inputs.

    This is the common CIFAR adaptation (5 conv + 3 FC, torchvision channel widths
    64-192-384-256-256 and the 4096-4096 classifier), with every conv 3x3 and a
    BatchNorm after each conv:

    ========  ==========================================  ===========
    layer     definition                                   output
    ========  ==========================================  ===========
    conv1     Conv(3, 64, k3, s2, p1) + BN + ReLU          64x16x16
    pool1     MaxPool(2)                                   64x8x8
    conv2     Conv(64, 192, k3, p1) + BN + ReLU            192x8x8
    pool2     MaxPool(2)                                   192x4x4
    conv3     Conv(192, 384, k3, p1) + BN + ReLU           384x4x4
    conv4     Conv(384, 256, k3, p1) + BN + ReLU           256x4x4
    conv5     Conv(256, 256, k3, p1) + BN + ReLU           256x4x4
    pool5     MaxPool(2)                                   256x2x2
    fc6       Dropout, Linear(1024, 4096) + ReLU           4096
    fc7       Dropout, Linear(4096, 4096) + ReLU           4096
    fc8       Linear(4096, 10)                             10
    ========  ==========================================  ===========

    About 23.3 M parameters (90% in the FC layers) and 62.7 M MACs.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(3, 64, stride=2),
            nn.MaxPool2d(2),
            *block(64, 192),
            nn.MaxPool2d(2),
            *block(192, 384),
            *block(384, 256),
            *block(256, 256),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(256 * 2 * 2, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


# --------------------------------------------------------------------------------------
# ResNet-50
# --------------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: 1x1 -> 3x3 (carries the stride) -> 1x1 (x4)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 (bottleneck blocks [3, 4, 6, 3], torchvision v1.5 layout).

    ``cifar=False``: ImageNet stem (7x7/2 conv, 3x3/2 max-pool), as torchvision's resnet50.
    ``cifar=True``: CIFAR stem (3x3/1 conv, no max-pool); the rest is unchanged.
    """

    def __init__(self, num_classes: int = 1000, cifar: bool = False, layers: tuple = (3, 4, 6, 3)) -> None:
        super().__init__()
        if cifar:
            self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        in_ch = 64
        stages = []
        for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            stage = []
            for b in range(blocks):
                stage.append(Bottleneck(in_ch, width, stride if b == 0 else 1))
                in_ch = width * Bottleneck.expansion
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


# --------------------------------------------------------------------------------------
# MobileNetV2
# --------------------------------------------------------------------------------------
def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _conv_bn_relu6(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand 1x1 (ReLU6) -> depthwise 3x3 (ReLU6) -> project 1x1 (linear); skip if shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(cin, hidden, 1))
        layers += [
            _conv_bn_relu6(hidden, hidden, 3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# t (expansion), c (channels), n (repeats), s (stride of the first block)
MBV2_SETTINGS: tuple = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0), torchvision layout: 32-ch stem, 17 inverted residuals, 1280-ch
    1x1 conv, global average pool, Dropout(0.2), Linear.

    ``cifar=True``: stride 1 in the stem conv and in the first stride-2 stage (t=6, c=24),
    the usual CIFAR adaptation, so the 32x32 input reaches the head at 4x4.
    """

    def __init__(self, num_classes: int = 1000, cifar: bool = False, width_mult: float = 1.0) -> None:
        super().__init__()
        settings = [list(s) for s in MBV2_SETTINGS]
        stem_stride = 2
        if cifar:
            stem_stride = 1
            settings[1][3] = 1
        in_ch = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [_conv_bn_relu6(3, in_ch, 3, stride=stem_stride)]
        for t, c, n, s in settings:
            out_ch = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
                in_ch = out_ch
        features.append(_conv_bn_relu6(in_ch, self.last_channel, 1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.last_channel, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        x = torch.flatten(x, 1)
        return self.classifier(x)
