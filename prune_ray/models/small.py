"""Small networks: the digits CNN (CI-sized), LeNet-5 (LeCun et al. 1998) and the two MNIST networks of
Han et al. 2015 and Deep Compression (LeNet-300-100, Caffe's LeNet-5) for MNIST-sized input."""

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


@register_model
def lenet5(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """LeNet-5 as used on MNIST: conv 6@5x5 (padded to keep 28x28), pool, conv 16@5x5, pool,
    fc 400-120-84-classes; 61,706 parameters for MNIST. Smaller inputs (8x8 digits) pad the second
    conv and are pooled to 5x5, so the fc layers keep their published sizes."""
    conv2_padding = 0 if image_size >= 28 else 2
    return nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(in_channels, 6, 5, padding=2)),
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(2)),
                ("conv2", nn.Conv2d(6, 16, 5, padding=conv2_padding)),
                ("relu2", nn.ReLU()),
                ("pool2", nn.MaxPool2d(2, ceil_mode=True)),
                ("resize", nn.AdaptiveAvgPool2d(5)),  # identity for 28x28 input
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(16 * 5 * 5, 120)),
                ("relu3", nn.ReLU()),
                ("fc2", nn.Linear(120, 84)),
                ("relu4", nn.ReLU()),
                ("fc3", nn.Linear(84, num_classes)),
            ]
        )
    )


@register_model
def lenet_300_100(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """LeNet-300-100 (LeCun et al. 1998), the fully connected MNIST network of Han et al. 2015 and
    Deep Compression: flattened input, fc 300, fc 100, fc classes, ReLU between; 266,610
    parameters for MNIST (784 inputs)."""
    return nn.Sequential(
        OrderedDict(
            [
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(in_channels * image_size * image_size, 300)),
                ("relu1", nn.ReLU()),
                ("fc2", nn.Linear(300, 100)),
                ("relu2", nn.ReLU()),
                ("fc3", nn.Linear(100, num_classes)),
            ]
        )
    )


@register_model
def lenet5_caffe(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Caffe's LeNet-5 (examples/mnist/lenet.prototxt), the LeNet-5 of Han et al. 2015 and Deep
    Compression: conv 20@5x5, max-pool, conv 50@5x5, max-pool, fc 500, ReLU, fc classes (no
    nonlinearity after the convolutions, as in Caffe); 431,080 parameters for MNIST. Smaller inputs
    (8x8 digits) pad the convs and are resized to 4x4, so the fc layers keep their published sizes."""
    padding = 0 if image_size >= 28 else 2
    return nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(in_channels, 20, 5, padding=padding)),
                ("pool1", nn.MaxPool2d(2)),
                ("conv2", nn.Conv2d(20, 50, 5, padding=padding)),
                ("pool2", nn.MaxPool2d(2, ceil_mode=True)),
                ("resize", nn.AdaptiveAvgPool2d(4)),  # identity for 28x28 input
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(50 * 4 * 4, 500)),
                ("relu", nn.ReLU()),
                ("fc2", nn.Linear(500, num_classes)),
            ]
        )
    )
