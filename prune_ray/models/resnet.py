"""ResNets for CIFAR.

- resnet20/32/44/56/110: He et al. 2016, section 4.2 (3 stages of 16-32-64 channels, n basic
  blocks each, depth 6n+2). Shortcuts use option B (1x1 conv + BN where the shape changes; identity
  elsewhere), because option A's zero-padded channels cannot be followed by torch-pruning's
  dependency graph. Option B adds 0.003M parameters: ResNet-20 0.27M params / 40.8M MACs.
- resnet18/34: the ImageNet block layout (64-128-256-512) with the CIFAR stem (one 3x3 conv,
  stride 1, no max-pool): ResNet-18 11.2M params / 556M MACs on 32x32.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from . import register_model


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, widths: list[int], blocks: list[int], num_classes: int, in_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages = []
        channels = widths[0]
        for index, (width, count) in enumerate(zip(widths, blocks)):
            stride = 1 if index == 0 else 2
            layers = []
            for block in range(count):
                layers.append(BasicBlock(channels, width, stride if block == 0 else 1))
                channels = width
            stages.append(nn.Sequential(*layers))
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return self.fc(self.pool(self.layers(out)).flatten(1))


def _register_depth(depth: int) -> None:
    def factory(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        n = (depth - 2) // 6
        return CifarResNet([16, 32, 64], [n, n, n], num_classes, in_channels)

    factory.__name__ = f"resnet{depth}"
    factory.__doc__ = f"ResNet-{depth} for CIFAR (He et al. 2016, option B shortcuts)."
    register_model(factory)


for _depth in (20, 32, 44, 56, 110):
    _register_depth(_depth)


@register_model
def resnet18(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """ResNet-18 with the CIFAR stem (3x3 conv, no max-pool)."""
    return CifarResNet([64, 128, 256, 512], [2, 2, 2, 2], num_classes, in_channels)


@register_model
def resnet34(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """ResNet-34 with the CIFAR stem (3x3 conv, no max-pool)."""
    return CifarResNet([64, 128, 256, 512], [3, 4, 6, 3], num_classes, in_channels)
