"""CIFAR VGG (Simonyan & Zisserman 2015, CIFAR form of Li et al. 2017): 3x3 convs, 2x2 max-pools,
then fc 512-512-classes. VGG-16: 15.0M parameters, 313M MACs on 32x32 input.

Pools use ceil_mode so inputs smaller than 32x32 (8x8 digits in smoke runs) stay at least 1x1;
for 32x32 input this is the standard network.
"""

from __future__ import annotations

import torch.nn as nn

from . import register_model

CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, config: list, batch_norm: bool, num_classes: int, in_channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                continue
            layers.append(nn.Conv2d(channels, item, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(item))
            layers.append(nn.ReLU(inplace=True))
            channels = item
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)  # 1x1 already for 32x32 input
        self.classifier = nn.Sequential(nn.Linear(channels, 512), nn.ReLU(inplace=True), nn.Linear(512, num_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def _register(name: str, batch_norm: bool) -> None:
    def factory(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        return VGG(CONFIGS[name.removesuffix("_bn")], batch_norm, num_classes, in_channels)

    factory.__name__ = name
    factory.__doc__ = f"{name} for CIFAR-sized input{' with BatchNorm' if batch_norm else ''}."
    register_model(factory)


for _name in CONFIGS:
    _register(_name, batch_norm=False)
    _register(f"{_name}_bn", batch_norm=True)
