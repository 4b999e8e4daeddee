"""Pruning-method registry (ShrinkBench's idea: a method is one small function of a model).

A method is registered with the layers it can prune and a function that removes a given number of
units per layer: weights for unstructured methods (masks), output channels for structured ones
(physically removed), percent of a layer's parameters for low-rank ones (factorised). Ratios are
fractions of units removed; `apply_pruning` turns them into counts.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn as nn

from ..budget_metrics import auto_metric
from ..registry import Registry

GRANULARITIES = ("unstructured", "structured", "lowrank")


class UnsupportedModelError(ValueError):
    """The method cannot prune this model; the message says why."""


@dataclass(frozen=True)
class Layer:
    name: str  # module name in model.named_modules(), or a pseudo-layer ("global", "conv", "fc")
    units: int  # prunable units: weights, output channels, or percent of the layer's parameters


@dataclass(frozen=True)
class Calibration:
    """What a method may look at besides the weights: an example batch (traced by torch-pruning)
    and, for gradient-based importance, its labels."""

    inputs: torch.Tensor
    targets: torch.Tensor | None = None


# (model, example_inputs) -> the layers the method prunes, in module order
LayersFn = Callable[[nn.Module, torch.Tensor], list[Layer]]
# (model, units removed per layer name, calibration) -> pruned model (may be a new module)
PruneFn = Callable[[nn.Module, Mapping[str, int], Calibration], nn.Module]


@dataclass(frozen=True)
class PruningMethod:
    name: str
    granularity: str  # one of GRANULARITIES
    paper: str  # where the method comes from
    ratio_meaning: str  # what "ratio 0.5" removes, for the README and errors
    layers: LayersFn
    prune: PruneFn
    max_ratio: float  # largest per-layer fraction of units it may remove (keeps layers alive)
    # A fast stand-in giving the same shapes and nonzero counts (no gradients, no decomposition),
    # used to measure the resource of candidate plans while searching; None: use `prune`.
    shape_prune: PruneFn | None = None
    records_thresholds: bool = False  # report the largest pruned magnitude of conv and fc layers

    @property
    def default_metric(self) -> str:
        """The budget metric `auto` means for this method (`auto_metric` of its granularity)."""
        return auto_metric(self.granularity)


_METHODS: Registry[PruningMethod] = Registry("pruning method")


def register_method(
    name: str,
    *,
    granularity: str,
    paper: str,
    ratio_meaning: str,
    layers: LayersFn,
    max_ratio: float,
    shape_prune: PruneFn | None = None,
    records_thresholds: bool = False,
) -> Callable[[PruneFn], PruneFn]:
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity {granularity!r}; allowed: {', '.join(GRANULARITIES)}")

    def decorate(fn: PruneFn) -> PruneFn:
        _METHODS.add(
            name,
            PruningMethod(name, granularity, paper, ratio_meaning, layers, fn, max_ratio, shape_prune, records_thresholds),
        )
        return fn

    return decorate


def list_methods() -> list[str]:
    return _METHODS.names()


def get_method(name: str) -> PruningMethod:
    return _METHODS.get(name)


def max_counts(layers: list[Layer], max_ratio: float) -> dict[str, int]:
    """The most units each layer may lose: floor(max_ratio * units), so every layer keeps one unit
    at least (rounding 0.95 x 6 channels up would remove all six)."""
    return {layer.name: math.floor(max_ratio * layer.units + 1e-9) for layer in layers}


def ratios_to_counts(
    ratios: float | Mapping[str, float], layers: list[Layer], max_ratio: float = 1.0
) -> dict[str, int]:
    """Units to remove per layer: round(ratio * units), as torch.nn.utils.prune rounds amounts,
    capped by `max_counts`."""
    names = [layer.name for layer in layers]
    if isinstance(ratios, (int, float)):
        ratios = dict.fromkeys(names, float(ratios))
    unknown = sorted(set(ratios) - set(names))
    if unknown:
        raise ValueError(f"unknown layer {unknown[0]!r}; prunable layers: {', '.join(names)}")
    counts, most = {}, max_counts(layers, max_ratio)
    for layer in layers:
        ratio = ratios.get(layer.name, 0.0)
        if not 0.0 <= ratio <= max_ratio:
            raise ValueError(f"ratio {ratio} for layer {layer.name!r} is outside [0, {max_ratio}]")
        counts[layer.name] = min(round(ratio * layer.units), most[layer.name])
    return counts


def apply_pruning(
    model: nn.Module,
    method: str,
    ratios: float | Mapping[str, float],
    example_inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
) -> nn.Module:
    """Prune `model` with `method`; `ratios` is one fraction for every layer or one per layer name.
    `targets` (labels of `example_inputs`) are needed by gradient-based methods (taylor)."""
    spec = get_method(method)
    layers = spec.layers(model, example_inputs)
    counts = ratios_to_counts(ratios, layers, spec.max_ratio)
    return spec.prune(model, counts, Calibration(example_inputs, targets))


def _prunes(method: PruningMethod, model: nn.Module, counts: Mapping[str, int], example: torch.Tensor) -> Exception | None:
    """The error of pruning a copy of `model` by `counts` (the fast stand-in) and running it, or None."""
    prune = method.shape_prune or method.prune
    try:
        pruned = prune(copy.deepcopy(model), counts, Calibration(example))
        with torch.no_grad():
            pruned.eval()(example)
    except Exception as error:  # noqa: BLE001  (whatever breaks, it is reported with the layer)
        return error
    return None


def check_prunable(method: PruningMethod, model: nn.Module, layers: list[Layer], example: torch.Tensor) -> None:
    """Prune one unit of every layer of a copy and run it; if that breaks, find the first layer that
    breaks alone. UnsupportedModelError names the method, the layer and the error, in one line,
    so a model a method cannot handle fails before a sweep starts, never in its trials."""
    counts = {layer.name: 1 for layer in layers if layer.units > 1}
    error = _prunes(method, model, counts, example)
    if error is None:
        return
    for name in counts:
        alone = _prunes(method, model, {name: 1}, example)
        if alone is not None:
            error = alone
            break
    else:
        name = ", ".join(counts)
    first = (str(error).strip().splitlines() or [""])[0]
    raise UnsupportedModelError(
        f"method {method.name!r} cannot prune layer {name!r} of {type(model).__name__}: {type(error).__name__}: {first}"
    )


from . import lowrank_methods, structured, unstructured  # noqa: E402,F401  (registers the built-in methods)
