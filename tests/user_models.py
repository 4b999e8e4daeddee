"""A user's own network, as a file the tests write: a residual add and a concatenation (the two
couplings torch-pruning's dependency graph must keep consistent), plus BatchNorm."""

from __future__ import annotations

import pathlib

USER_NET = '''
import torch
import torch.nn as nn


def block(cin, cout, kernel):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Net(nn.Module):
    def __init__(self, num_classes, in_channels, width):
        super().__init__()
        self.stem = block(in_channels, width, 3)
        self.body = block(width, width, 3)
        self.side = block(width, width, 1)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.stem(x)
        residual = x + self.body(x)  # a residual add: stem and body keep the same channels
        both = torch.cat([residual, self.side(x)], dim=1)  # a concat: the head sees both
        return self.head(both.mean((2, 3)))


def make(num_classes, in_channels, image_size, width=8):
    return Net(num_classes, in_channels, width)


def broken(num_classes, in_channels, image_size):
    raise ValueError("width must be even")


def not_a_model(num_classes, in_channels, image_size):
    return 42
'''


def write_user_net(directory: pathlib.Path, name: str = "net.py") -> pathlib.Path:
    path = directory / name
    path.write_text(USER_NET)
    return path
