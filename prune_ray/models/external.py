"""Models from outside the zoo, each still one string (the spec's `model`, the Parquet `model`):

- `package.module:factory` or `path/to/net.py:factory`: a user's callable, called as
  `factory(num_classes=..., in_channels=..., image_size=..., **model_args)` and returning an
  `nn.Module` (model_args are the spec's `model_args:` mapping, forwarded as keyword arguments);
- `timm:<name>`: `timm.create_model(name, pretrained=False, num_classes=..., in_chans=..., **model_args)`
  (needs the extra `timm`);
- `torchvision:<name>`: `torchvision.models.get_model(name, weights=None, num_classes=..., **model_args)`
  (3-channel images only: torchvision's models take no channel count).

Nothing is downloaded: pretrained weights come from `baseline.checkpoint`. Every failure (a bad
string, a module that does not import, a missing factory, a factory that raises or returns no
module) is a ModelSourceError whose one-line message names the model string.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch.nn as nn

from ..registry import Registry

# a model_args value: what YAML gives as a plain scalar, or a list of them (a tuple here)
PLAIN_TYPES = (bool, int, float, str, type(None))


class ModelSourceError(ValueError):
    """A model string that does not give a model; the one-line message names it."""


@dataclass(frozen=True)
class Shape:
    num_classes: int  # classifier outputs
    in_channels: int  # image channels
    image_size: int  # image height = width (pixels)


# (what follows the prefix, the data's shape, model_args) -> the model
Source = Callable[[str, Shape, Mapping[str, Any]], nn.Module]
_SOURCES: Registry[Source] = Registry("model source")


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def check_model_args(model_args: Mapping[str, Any], where: str = "model_args") -> None:
    """model_args must map names to plain values (scalars or lists of scalars): they reach the
    factory as keyword arguments, and the saved model's plan stores them as JSON."""
    if not isinstance(model_args, Mapping):
        raise ModelSourceError(f"{where}: expected a mapping of argument names to values, got {model_args!r}")
    for key, value in model_args.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        if not isinstance(key, str) or not key.isidentifier():
            raise ModelSourceError(f"{where}: key {key!r} is not a keyword argument name")
        if not all(isinstance(item, PLAIN_TYPES) for item in items):
            raise ModelSourceError(f"{where}.{key}: {value!r} is not a plain value (number, string, bool, null or a list of them)")


def _module_from_file(path: str, model: str):
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise ModelSourceError(f"model {model!r}: file {path} does not exist")
    name = f"prune_ray_user_{hashlib.sha256(path.encode()).hexdigest()[:12]}"  # one module per file
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001  (the user's file: any error is one line)
        del sys.modules[name]
        raise ModelSourceError(f"model {model!r}: {path} does not import: {_one_line(error)}") from None
    return module


def _module_by_name(name: str, model: str):
    try:
        return importlib.import_module(name)
    except Exception as error:  # noqa: BLE001
        raise ModelSourceError(f"model {model!r}: module {name!r} does not import: {_one_line(error)}") from None


def is_file_path(model: str) -> bool:
    return model.rpartition(":")[0].endswith(".py")


def resolve_factory(model: str) -> Callable[..., nn.Module]:
    """The callable an import-path model string names (imported, not called)."""
    where, _, factory_name = model.rpartition(":")
    if not where or not factory_name.isidentifier():
        raise ModelSourceError(
            f"model {model!r}: expected 'package.module:factory' or 'path/to/net.py:factory' (or timm:<name>, torchvision:<name>)"
        )
    module = _module_from_file(where, model) if is_file_path(model) else _module_by_name(where, model)
    factory = vars(module).get(factory_name)
    if not callable(factory):
        raise ModelSourceError(f"model {model!r}: {where} has no callable {factory_name!r}")
    return factory


def _called(model: str, build: Callable[[], object]) -> nn.Module:
    try:
        built = build()
    except ModelSourceError:
        raise
    except Exception as error:  # noqa: BLE001  (the factory's own error, as one line)
        raise ModelSourceError(f"model {model!r}: the factory raised {_one_line(error)}") from None
    if not isinstance(built, nn.Module):
        raise ModelSourceError(f"model {model!r}: the factory returned a {type(built).__name__}, not an nn.Module")
    return built


def _import_path(target: str, shape: Shape, model_args: Mapping[str, Any]) -> nn.Module:
    factory = resolve_factory(target)
    return _called(target, lambda: factory(num_classes=shape.num_classes, in_channels=shape.in_channels,
                                           image_size=shape.image_size, **model_args))


def _timm(name: str, shape: Shape, model_args: Mapping[str, Any]) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ModelSourceError(f"model 'timm:{name}' needs timm: pip install -e \".[timm]\" -c constraints.txt") from None
    if name not in timm.list_models():
        raise ModelSourceError(f"model 'timm:{name}': timm has no model {name!r} (timm.list_models() lists them)")
    return _called(f"timm:{name}", lambda: timm.create_model(
        name, pretrained=False, num_classes=shape.num_classes, in_chans=shape.in_channels, **model_args))


def _torchvision(name: str, shape: Shape, model_args: Mapping[str, Any]) -> nn.Module:
    import torchvision.models

    if name not in torchvision.models.list_models():
        raise ModelSourceError(f"model 'torchvision:{name}': torchvision has no model {name!r} (torchvision.models.list_models())")
    if shape.in_channels != 3:
        raise ModelSourceError(f"model 'torchvision:{name}' takes 3-channel images; the dataset has {shape.in_channels}")
    return _called(f"torchvision:{name}", lambda: torchvision.models.get_model(
        name, weights=None, num_classes=shape.num_classes, **model_args))


_SOURCES.add("timm", _timm)
_SOURCES.add("torchvision", _torchvision)


def create_external(model: str, shape: Shape, model_args: Mapping[str, Any]) -> nn.Module:
    """The model a non-zoo string names, built for `shape` with `model_args`."""
    check_model_args(model_args)
    prefix, _, rest = model.partition(":")
    if prefix in _SOURCES:
        return _SOURCES.get(prefix)(rest, shape, dict(model_args))
    return _import_path(model, shape, dict(model_args))


def check_model_string(model: str, builtin: list[str]) -> None:
    """Spec check of a model string without building it: a zoo name, a known prefix, or an import
    path whose module imports and has the factory."""
    if model in builtin:
        return
    prefix, sep, _ = model.partition(":")
    if not sep:
        raise ModelSourceError(
            f"model: unknown value {model!r}; allowed: {', '.join(builtin)}, or 'package.module:factory', "
            "'path/to/net.py:factory', 'timm:<name>', 'torchvision:<name>'"
        )
    if prefix not in _SOURCES:
        resolve_factory(model)


def absolute_model(model: str) -> str:
    """A file-path model string with its file made absolute (Ray's workers run elsewhere)."""
    if not is_file_path(model):
        return model
    path, _, factory = model.rpartition(":")
    return f"{os.path.abspath(os.path.expanduser(path))}:{factory}"
