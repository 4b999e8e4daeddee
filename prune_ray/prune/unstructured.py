"""Unstructured pruning: masks on individual weights (torch.nn.utils.prune), kept through training.

Pruned weights stay exactly zero while fine-tuning (the mask multiplies the weight in every
forward pass); `make_masks_permanent` folds them in at the end.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.utils.prune as torch_prune

from . import Calibration, Layer, register_method

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)
MAX_RATIO = 0.99


def weight_layers(model: nn.Module, example_inputs: torch.Tensor | None = None) -> list[Layer]:
    """Every Conv2d and Linear weight, the classifier included (as Han et al. 2015 prune it)."""
    return [
        Layer(name, module.weight.numel())
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_TYPES)
    ]


def _modules_of(model: nn.Module, kind: type | tuple[type, ...]) -> list[nn.Module]:
    return [module for module in model.modules() if isinstance(module, kind)]


def global_layer(model: nn.Module, example_inputs: torch.Tensor | None = None) -> list[Layer]:
    """One pseudo-layer holding every conv and linear weight: one threshold for all of them."""
    return [Layer("global", sum(m.weight.numel() for m in _modules_of(model, PRUNABLE_TYPES)))]


def conv_fc_layers(model: nn.Module, example_inputs: torch.Tensor | None = None) -> list[Layer]:
    """Two pseudo-layers, all conv weights and all fc weights: a threshold for each."""
    groups = [("conv", _modules_of(model, nn.Conv2d)), ("fc", _modules_of(model, nn.Linear))]
    return [Layer(name, sum(m.weight.numel() for m in modules)) for name, modules in groups if modules]


@register_method(
    "magnitude",
    granularity="unstructured",
    paper="Han et al. 2015, Learning both Weights and Connections",
    ratio_meaning="fraction of each conv/linear layer's weights masked, smallest magnitude first",
    layers=weight_layers,
    max_ratio=MAX_RATIO,
    records_thresholds=True,
)
def magnitude(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
    """Layer-wise: in each layer, mask the `removed[layer]` weights of smallest magnitude."""
    modules = dict(model.named_modules())
    for name, count in removed.items():
        if count > 0:
            torch_prune.l1_unstructured(modules[name], "weight", amount=int(count))
    return model


def _global_magnitude(modules: list[nn.Module], count: int) -> None:
    if count > 0:
        torch_prune.global_unstructured(
            [(module, "weight") for module in modules], pruning_method=torch_prune.L1Unstructured, amount=int(count)
        )


@register_method(
    "magnitude_global",
    granularity="unstructured",
    paper="Han et al. 2015; global threshold as in Frankle & Carbin 2019",
    ratio_meaning="fraction of all conv/linear weights masked under one magnitude threshold",
    layers=global_layer,
    max_ratio=MAX_RATIO,
    records_thresholds=True,
)
def magnitude_global(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
    _global_magnitude(_modules_of(model, PRUNABLE_TYPES), removed.get("global", 0))
    return model


@register_method(
    "conv_fc",
    granularity="unstructured",
    paper="per-layer-type magnitude pruning (Han et al. 2015, separate conv and fc rates)",
    ratio_meaning="fraction of all conv weights (pseudo-layer 'conv') and of all fc weights ('fc') masked",
    layers=conv_fc_layers,
    max_ratio=MAX_RATIO,
    records_thresholds=True,
)
def conv_fc(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
    _global_magnitude(_modules_of(model, nn.Conv2d), removed.get("conv", 0))
    _global_magnitude(_modules_of(model, nn.Linear), removed.get("fc", 0))
    return model


@register_method(
    "random",
    granularity="unstructured",
    paper="random pruning baseline (e.g. Liu et al. 2019, Rethinking the Value of Network Pruning)",
    ratio_meaning="fraction of each conv/linear layer's weights masked at random (seeded by torch)",
    layers=weight_layers,
    max_ratio=MAX_RATIO,
)
def random_weights(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
    modules = dict(model.named_modules())
    for name, count in removed.items():
        if count > 0:
            torch_prune.random_unstructured(modules[name], "weight", amount=int(count))
    return model


def magnitude_thresholds(model: nn.Module) -> tuple[float | None, float | None]:
    """(conv, fc): the largest magnitude among masked weights of conv and of linear layers, as the
    ratio-grid tables report them; None where nothing of that type is masked. Call before
    make_masks_permanent (it reads the masks)."""
    largest: dict[type, float | None] = {nn.Conv2d: None, nn.Linear: None}
    for module in model.modules():
        mask = getattr(module, "weight_mask", None)
        if mask is None or not isinstance(module, PRUNABLE_TYPES):
            continue
        pruned = module.weight_orig.detach().abs()[mask == 0]
        if pruned.numel():
            kind = nn.Conv2d if isinstance(module, nn.Conv2d) else nn.Linear
            value = float(pruned.max())
            largest[kind] = value if largest[kind] is None else max(largest[kind], value)
    return largest[nn.Conv2d], largest[nn.Linear]


def make_masks_permanent(model: nn.Module) -> nn.Module:
    """Fold masks into the weights (weight = weight_orig * mask) and drop the reparametrisation."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
    return model
