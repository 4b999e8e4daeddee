"""Unstructured pruning: masks on individual weights (torch.nn.utils.prune), kept through training."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.utils.prune as torch_prune

from . import Layer, register_method

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)


def weight_layers(model: nn.Module, example_inputs: torch.Tensor) -> list[Layer]:
    """Every Conv2d and Linear weight, the classifier included (as Han et al. 2015 prune it)."""
    return [
        Layer(name, module.weight.numel())
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_TYPES)
    ]


@register_method(
    "magnitude",
    granularity="unstructured",
    paper="Han et al. 2015, Learning both Weights and Connections",
    layers=weight_layers,
    max_ratio=0.99,
)
def magnitude(model: nn.Module, removed: Mapping[str, int], example_inputs: torch.Tensor) -> nn.Module:
    """Layer-wise: in each layer, mask the `removed[layer]` weights of smallest magnitude."""
    modules = dict(model.named_modules())
    for name, count in removed.items():
        if count > 0:
            torch_prune.l1_unstructured(modules[name], "weight", amount=int(count))
    return model


def make_masks_permanent(model: nn.Module) -> nn.Module:
    """Fold masks into the weights (weight = weight_orig * mask) and drop the reparametrisation."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
    return model
