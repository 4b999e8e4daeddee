"""Model registry: one decorated factory per architecture (timm's @register_model)."""

from __future__ import annotations

from typing import Callable, Protocol

import torch.nn as nn

from ..registry import Registry


class ModelFactory(Protocol):
    def __call__(self, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module: ...


_MODELS: Registry[ModelFactory] = Registry("model")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    _MODELS.add(fn.__name__, fn)
    return fn


def list_models() -> list[str]:
    return _MODELS.names()


def create_model(
    name: str, *, num_classes: int = 10, in_channels: int = 3, image_size: int = 32
) -> nn.Module:
    return _MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def classifier_layer(model: nn.Module) -> nn.Module:
    """The layer that produces the class scores: the last Linear (else the last Conv) registered."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not linears and not convs:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layer to classify with")
    return (linears or convs)[-1]


from . import cifar_other, resnet, small, vgg  # noqa: E402,F401  (registers the built-in models)
