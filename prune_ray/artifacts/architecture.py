"""How a pruned model's architecture differs from a fresh registry model, as plain JSON, and back.

One entry per granularity of the method registry (a registry, not a branch on method names):
- unstructured: no change (the masks live with the tensors, see `tensors`);
- structured: per torch-pruning channel group (named by its root module) the output channels
  removed; replaying it removes that many channels of the group on a fresh model through the same
  dependency graph, so every coupled layer (BatchNorm, next layer's inputs, residual partners)
  shrinks with it. Which channels go does not matter: the saved weights replace them all;
- lowrank: each factorised conv's replacement, the Conv2d layers of its sequence with their
  constructor arguments, and their ranks (the inner layers' output channels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from ..prune.structured import dependency_groups
from ..registry import Registry

Description = dict[str, Any]
# (fresh model, pruned model, example inputs) -> what changed
DescribeFn = Callable[[nn.Module, nn.Module, torch.Tensor], Description]
# (fresh model, description, example inputs) -> the fresh model made into the pruned shape
RebuildFn = Callable[[nn.Module, Description, torch.Tensor], nn.Module]


@dataclass(frozen=True)
class Architecture:
    describe: DescribeFn
    rebuild: RebuildFn


_ARCHITECTURES: Registry[Architecture] = Registry("granularity")


def architecture_of(granularity: str) -> Architecture:
    return _ARCHITECTURES.get(granularity)


# ---------------------------------------------------------------- unstructured: same shapes


def _unchanged(fresh: nn.Module, pruned: nn.Module, example: torch.Tensor) -> Description:
    return {}


def _as_is(fresh: nn.Module, description: Description, example: torch.Tensor) -> nn.Module:
    return fresh


_ARCHITECTURES.add("unstructured", Architecture(_unchanged, _as_is))


# ---------------------------------------------------------------- structured: channels per group


def _out_channels(module: nn.Module) -> int:
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features


def _channel_groups(fresh: nn.Module, pruned: nn.Module, example: torch.Tensor) -> Description:
    names = {module: name for name, module in fresh.named_modules()}
    graph, groups = dependency_groups(fresh, example)
    entries = []
    for root, _ in groups:
        channels = graph.get_out_channels(root)
        removed = channels - _out_channels(pruned.get_submodule(names[root]))
        if removed > 0:
            entries.append({"root": names[root], "channels": channels, "removed": removed})
    return {"groups": entries}


def _remove_channels(fresh: nn.Module, description: Description, example: torch.Tensor) -> nn.Module:
    names = {module: name for name, module in fresh.named_modules()}
    graph, groups = dependency_groups(fresh, example)
    by_root = {names[root]: (root, group) for root, group in groups}
    plans = []
    for entry in description["groups"]:
        if entry["root"] not in by_root:
            raise ValueError(f"channel group {entry['root']!r} is not a prunable group of the model")
        root, group = by_root[entry["root"]]
        channels, removed = graph.get_out_channels(root), int(entry["removed"])
        if channels != int(entry["channels"]) or not 0 < removed < channels:
            raise ValueError(f"channel group {entry['root']!r}: {removed} of {entry['channels']} removed, model has {channels}")
        plans.append((root, group[0].dep.handler, list(range(channels - removed, channels))))
    for root, handler, indices in plans:
        graph.get_pruning_group(root, handler, indices).prune()
    return fresh


_ARCHITECTURES.add("structured", Architecture(_channel_groups, _remove_channels))


# ---------------------------------------------------------------- lowrank: factorised convs


def _conv_arguments(conv: nn.Conv2d) -> dict[str, Any]:
    return {
        "in_channels": conv.in_channels, "out_channels": conv.out_channels, "kernel_size": list(conv.kernel_size),
        "stride": list(conv.stride), "padding": conv.padding if isinstance(conv.padding, str) else list(conv.padding),
        "dilation": list(conv.dilation), "groups": conv.groups, "bias": conv.bias is not None,
        "padding_mode": conv.padding_mode,
    }


def _conv(arguments: dict[str, Any]) -> nn.Conv2d:
    padding = arguments["padding"]
    return nn.Conv2d(
        int(arguments["in_channels"]), int(arguments["out_channels"]), tuple(arguments["kernel_size"]),
        stride=tuple(arguments["stride"]), padding=padding if isinstance(padding, str) else tuple(padding),
        dilation=tuple(arguments["dilation"]), groups=int(arguments["groups"]), bias=bool(arguments["bias"]),
        padding_mode=str(arguments["padding_mode"]),
    )


def _factorised(fresh: nn.Module, pruned: nn.Module, example: torch.Tensor) -> Description:
    layers = []
    for name, module in fresh.named_modules():
        replacement = pruned.get_submodule(name) if isinstance(module, nn.Conv2d) else None
        if isinstance(replacement, nn.Sequential):
            convs = [_conv_arguments(layer) for layer in replacement]
            layers.append({"name": name, "ranks": [conv["out_channels"] for conv in convs[:-1]], "convs": convs})
    return {"layers": layers}


def _refactorise(fresh: nn.Module, description: Description, example: torch.Tensor) -> nn.Module:
    for layer in description["layers"]:
        original = fresh.get_submodule(layer["name"])
        if not isinstance(original, nn.Conv2d):
            raise ValueError(f"factorised layer {layer['name']!r} is a {type(original).__name__} in the model, not a Conv2d")
        fresh.set_submodule(layer["name"], nn.Sequential(*(_conv(arguments) for arguments in layer["convs"])))
    return fresh


_ARCHITECTURES.add("lowrank", Architecture(_factorised, _refactorise))
