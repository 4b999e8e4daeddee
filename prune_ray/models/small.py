"""Small CNNs for tiny inputs (digits 8x8); fast enough for CI on two CPU cores."""

from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn

from . import register_model


@register_model
def digits_cnn(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Four 3x3 conv layers (32-64-64-128 channels, two 2x2 max-pools) and a 2-layer fc head."""
    if image_size % 4:
        raise ValueError(f"digits_cnn needs an image size divisible by 4, got {image_size}")
    widths = [in_channels, 32, 64, 64, 128]
    layers: list[tuple[str, nn.Module]] = []
    for index, (c_in, c_out) in enumerate(zip(widths, widths[1:]), start=1):
        layers += [
            (f"conv{index}", nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)),
            (f"bn{index}", nn.BatchNorm2d(c_out)),
            (f"relu{index}", nn.ReLU()),
        ]
        if index % 2 == 0:
            layers.append((f"pool{index // 2}", nn.MaxPool2d(2)))
    spatial = image_size // 4
    layers += [
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(widths[-1] * spatial * spatial, 128)),
        ("relu_fc1", nn.ReLU()),
        ("fc2", nn.Linear(128, num_classes)),
    ]
    return nn.Sequential(OrderedDict(layers))
