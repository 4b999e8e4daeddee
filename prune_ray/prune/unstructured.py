"""Unstructured pruning: masks on individual weights (torch.nn.utils.prune), kept through training.

Pruned weights stay exactly zero while fine-tuning: outside training the mask multiplies the
weight in every forward pass (torch's forward pre-hook); inside the training loop
(`plain_masked_weights`) the hooks are set aside, the masked entries zeroed once and zeroed again
by one `torch._foreach_mul_` after each optimiser step. `make_masks_permanent` folds them in at the end.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Mapping

import torch
import torch.nn as nn
import torch.nn.utils.prune as torch_prune

from . import Calibration, Layer, PruneFn, PruningMethod, register_method

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


# Pseudo-layers of the pooled methods: one threshold over all weights of these module types.
POOLS: dict[str, type | tuple[type, ...]] = {"global": PRUNABLE_TYPES, "conv": nn.Conv2d, "fc": nn.Linear}


def global_layer(model: nn.Module, example_inputs: torch.Tensor | None = None) -> list[Layer]:
    """One pseudo-layer holding every conv and linear weight: one threshold for all of them."""
    return [Layer("global", sum(m.weight.numel() for m in _modules_of(model, POOLS["global"])))]


def conv_fc_layers(model: nn.Module, example_inputs: torch.Tensor | None = None) -> list[Layer]:
    """Two pseudo-layers, all conv weights and all fc weights: a threshold for each."""
    groups = [(name, _modules_of(model, POOLS[name])) for name in ("conv", "fc")]
    return [Layer(name, sum(m.weight.numel() for m in modules)) for name, modules in groups if modules]


def is_pooled(method: PruningMethod) -> bool:
    """Whether the method's layers are the pseudo-layers of POOLS rather than modules (a model's
    own layer may be called `fc`, so names alone cannot tell)."""
    return method.layers in (global_layer, conv_fc_layers)


def mask_smallest(modules: list[nn.Module], count: int) -> None:
    """Mask the `count` weights of smallest magnitude that are still unmasked across `modules`, as
    torch.nn.utils.prune's L1Unstructured does (weight = weight_orig * weight_mask, a forward
    pre-hook), on top of the masks a module already has (the next cycle of iterative pruning).
    One k-th-value selection, linear in the weights (L1Unstructured's topk costs several times
    more on a large layer); ties at the threshold are masked in order of position."""
    masks = [getattr(m, "weight_mask", None) for m in modules]
    weights = [(m.weight_orig if mask is not None else m.weight).detach() for m, mask in zip(modules, masks)]
    scores = torch.cat([w.abs().flatten() for w in weights])
    alive = torch.cat([(torch.ones_like(w) if mask is None else mask).flatten() for w, mask in zip(weights, masks)])
    masked = scores.numel() - int(alive.count_nonzero())
    if count > scores.numel() - masked:
        raise ValueError(f"cannot mask {count} weights: only {scores.numel() - masked} are unmasked")
    scores[alive == 0] = -1.0  # below every magnitude: the masked weights stay masked
    below = count + masked  # scores to mask, counting those already masked
    threshold = torch.kthvalue(scores, below).values
    keep = scores > threshold
    ties = (scores == threshold).nonzero().flatten()
    keep[ties[below - int((scores < threshold).sum()):]] = True
    for module, mask, piece in zip(modules, masks, keep.split([w.numel() for w in weights])):
        piece = piece.view_as(module.weight).to(module.weight.dtype)
        if mask is None:
            torch_prune.custom_from_mask(module, "weight", piece)
        else:
            mask.copy_(piece)
            module.weight = module.weight_orig * mask  # as the pre-hook will before the next forward


def _by_magnitude(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
    """In each named layer, mask `removed[layer]` more weights, smallest magnitude first."""
    for name, count in removed.items():
        if count > 0:
            mask_smallest([model.get_submodule(name)], int(count))
    return model


def _at_random(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
    """In each named layer, mask `removed[layer]` more weights chosen at random (seeded by torch)."""
    modules = dict(model.named_modules())
    for name, count in removed.items():
        if count > 0:
            torch_prune.random_unstructured(modules[name], "weight", amount=int(count))
    return model


def _pooled(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
    """Per pseudo-layer, mask `removed[pool]` weights of smallest magnitude across all its modules."""
    for pool, count in removed.items():
        if count > 0:
            mask_smallest(_modules_of(model, POOLS[pool]), int(count))
    return model


def _unstructured(name: str, paper: str, ratio_meaning: str, layers, prune: PruneFn, records_thresholds: bool) -> None:
    register_method(name, granularity="unstructured", paper=paper, ratio_meaning=ratio_meaning, layers=layers,
                    max_ratio=MAX_RATIO, records_thresholds=records_thresholds)(prune)


_unstructured(
    "magnitude", "Han et al. 2015, Learning both Weights and Connections",
    "fraction of each conv/linear layer's weights masked, smallest magnitude first",
    weight_layers, _by_magnitude, records_thresholds=True,
)
_unstructured(
    "magnitude_global", "Han et al. 2015; global threshold as in Frankle & Carbin 2019",
    "fraction of all conv/linear weights masked under one magnitude threshold",
    global_layer, _pooled, records_thresholds=True,
)
_unstructured(
    "conv_fc", "per-layer-type magnitude pruning (Han et al. 2015, separate conv and fc rates)",
    "fraction of all conv weights (pseudo-layer 'conv') and of all fc weights ('fc') masked",
    conv_fc_layers, _pooled, records_thresholds=True,
)
_unstructured(
    "random", "random pruning baseline (e.g. Liu et al. 2019, Rethinking the Value of Network Pruning)",
    "fraction of each conv/linear layer's weights masked at random (seeded by torch)",
    weight_layers, _at_random, records_thresholds=False,
)


def nonzero_removed_counter(model: nn.Module, method: PruningMethod) -> Callable[[Mapping[str, int]], int] | None:
    """How many nonzero weights a plan of `method` masks in `model`, counted without pruning a copy.

    The magnitude methods mask the smallest |w| of a layer (or pool) first, so its exact zeros go
    first: removing r weights from a layer holding z zeros removes max(0, r - z) nonzero ones. None
    for a method that chooses otherwise (random) or a model already masked: measure those on a copy.
    """
    if any(hasattr(module, "weight_mask") for module in model.modules()):
        return None
    if method.prune is _by_magnitude:
        modules_of = lambda name: [model.get_submodule(name)]  # noqa: E731
    elif method.prune is _pooled:
        modules_of = lambda name: _modules_of(model, POOLS[name])  # noqa: E731
    else:
        return None
    zeros: dict[str, int] = {}

    def removed_nonzero(removed: Mapping[str, int]) -> int:
        for name in removed.keys() - zeros.keys():
            zeros[name] = sum(int((module.weight == 0).sum()) for module in modules_of(name))
        return sum(max(0, int(count) - zeros[name]) for name, count in removed.items())

    return removed_nonzero


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


def _is_mask_hook(hook: object) -> bool:
    return isinstance(hook, torch_prune.BasePruningMethod)


@contextlib.contextmanager
def plain_masked_weights(model: nn.Module) -> Iterator[Callable[[], None] | None]:
    """Inside: every masked weight (torch.nn.utils.prune's `weight_orig` x `weight_mask`) is a plain
    parameter `weight` again, its masked entries zero and no forward pre-hook multiplying it; yields
    `reapply`, to be called after each optimiser step (one `torch._foreach_mul_` over all masked
    weights; None when nothing is masked). The step sees a plain network (no extra ops per layer, one
    graph for torch.compile) and computes the same function: the masked entries are zero in every
    forward, and the other entries get the same gradients.

    On leaving, the reparametrisation comes back as it was (parameter order, hooks, `weight`), and
    the masked entries of `weight_orig` their values from before (the optimiser moved them, the mask
    zeroed them): what reads them later (magnitude_thresholds: the magnitudes at pruning) reads the
    values the pruning saw. Call it around the training batches only: pruning and evaluation expect the
    hooks in place."""
    entries = []
    for module in model.modules():
        names = [hook._tensor_name for hook in module._forward_pre_hooks.values() if _is_mask_hook(hook)]
        entries += [(module, name) for name in names]
    if not entries:
        yield None
        return
    saved = []
    with torch.no_grad():
        for module, name in entries:
            orig, mask = module._parameters[f"{name}_orig"], getattr(module, f"{name}_mask")
            hidden = orig * (1 - mask)  # the masked entries' values, zero elsewhere
            orig.mul_(mask)
            order, hooks = list(module._parameters), dict(module._forward_pre_hooks)
            for key in [key for key, hook in hooks.items() if _is_mask_hook(hook)]:
                del module._forward_pre_hooks[key]
            delattr(module, name)  # the plain tensor the pre-hook last computed
            module._parameters[name] = module._parameters.pop(f"{name}_orig")
            saved.append((module, name, hidden, order, hooks))
    weights = [module._parameters[name] for module, name in entries]
    masks = [getattr(module, f"{name}_mask") for module, name in entries]

    @torch.no_grad()
    def reapply() -> None:
        torch._foreach_mul_(weights, masks)

    try:
        yield reapply
    finally:
        with torch.no_grad():
            for module, name, hidden, order, hooks in saved:
                orig = module._parameters.pop(name)
                orig.mul_(getattr(module, f"{name}_mask")).add_(hidden)
                module._parameters[f"{name}_orig"] = orig
                parameters = dict(module._parameters)
                module._parameters.clear()
                module._parameters.update((key, parameters[key]) for key in order)
                module._forward_pre_hooks.clear()
                module._forward_pre_hooks.update(hooks)
                setattr(module, name, orig * getattr(module, f"{name}_mask"))  # as the pre-hook computes it
