"""Model registry: one decorated factory per architecture (timm's @register_model); any other
model string (an import path, `timm:<name>`, `torchvision:<name>`) is built by `external`."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol

import torch.nn as nn

from ..registry import Registry
from .external import ModelSourceError, Shape, check_model_args, check_model_string, create_external


class ModelFactory(Protocol):
    def __call__(self, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module: ...


_MODELS: Registry[ModelFactory] = Registry("model")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    _MODELS.add(fn.__name__, fn)
    return fn


def list_models() -> list[str]:
    return _MODELS.names()


def create_model(
    name: str, *, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
    model_args: Mapping[str, Any] | None = None,
) -> nn.Module:
    """A zoo model by name, or the model another string names (see `external`), called with the
    data's shape and, for non-zoo models, `model_args` as keyword arguments."""
    if name in _MODELS or ":" not in name:  # a zoo name (an unknown one: the error lists the zoo)
        if model_args:
            raise ModelSourceError(f"model_args: built-in model {name!r} takes none (got {', '.join(model_args)})")
        return _MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    return create_external(name, Shape(num_classes, in_channels, image_size), model_args or {})


def check_model(name: str, model_args: Mapping[str, Any]) -> None:
    """Spec check of `model` and `model_args` without building the model (ModelSourceError)."""
    check_model_string(name, list_models())
    check_model_args(model_args)
    if name in _MODELS and model_args:
        raise ModelSourceError(f"model_args: built-in model {name!r} takes none (got {', '.join(model_args)})")


def classifier_layer(model: nn.Module) -> nn.Module:
    """The layer that produces the class scores: the last Linear (else the last Conv) registered."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not linears and not convs:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layer to classify with")
    return (linears or convs)[-1]


from . import cifar_other, resnet, small, vgg  # noqa: E402,F401  (registers the built-in models)
