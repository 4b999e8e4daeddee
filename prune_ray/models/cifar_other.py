"""AlexNet, DenseNet and MobileNetV2 in their CIFAR forms."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register_model


@register_model
def alexnet(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """AlexNet for 32x32 input: AlexNet's five conv layers (64-192-384-256-256, 3x3 kernels, first
    with stride 2) and three fc layers (4096-4096-classes) on a 2x2x256 feature map; 23.3M parameters,
    most of them in the fc layers as in the original (the layers Han et al. prune hardest)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(64, 192, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.AdaptiveAvgPool2d(2),  # identity for 32x32 input
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(256 * 2 * 2, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )


class DenseLayer(nn.Module):
    """BN-ReLU-Conv3x3 producing `growth` new channels, concatenated to its input."""

    def __init__(self, c_in: int, growth: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(F.relu(self.bn(x)))], dim=1)


class Transition(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2, ceil_mode=True)


class DenseNet(nn.Module):
    def __init__(self, depth: int, growth: int, num_classes: int, in_channels: int):
        super().__init__()
        per_block = (depth - 4) // 3
        channels = 2 * growth if growth > 12 else 16  # Huang et al.: 16 initial channels for k=12
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        for block in range(3):
            for _ in range(per_block):
                blocks.append(DenseLayer(channels, growth))
                channels += growth
            if block < 2:
                blocks.append(Transition(channels, channels))
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.blocks(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_model
def densenet(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """DenseNet-40 (k=12) for CIFAR (Huang et al. 2017): three dense blocks of 12 BN-ReLU-Conv3x3
    layers, transitions without compression; about 1.0M parameters."""
    return DenseNet(40, 12, num_classes, in_channels)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, expansion: int, stride: int):
        super().__init__()
        hidden = c_in * expansion
        self.use_residual = stride == 1 and c_in == c_out
        self.body = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x):
        out = self.body(x)
        return x + out if self.use_residual else out


# (expansion, out channels, blocks, stride of the first block); CIFAR form: stem and stage 2 at stride 1
MOBILENETV2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


@register_model
def mobilenetv2(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """MobileNetV2 (Sandler et al. 2018) for 32x32 input: stride-1 stem and second stage; 2.2M params."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(inplace=True)]
    channels = 32
    for expansion, width, count, stride in MOBILENETV2_STAGES:
        for block in range(count):
            layers.append(InvertedResidual(channels, width, expansion, stride if block == 0 else 1))
            channels = width
    layers += [
        nn.Conv2d(channels, 1280, 1, bias=False),
        nn.BatchNorm2d(1280),
        nn.ReLU6(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(1280, num_classes),
    ]
    return nn.Sequential(*layers)
