"""Pruning-method registry (ShrinkBench's idea: a method is one small function of a model).

A method is registered with the layers it can prune and a function that removes a given number of
units per layer: weights for unstructured methods (masks), output channels for structured ones
(physically removed). Ratios are fractions of units removed; `apply_pruning` turns them into counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn as nn

from ..registry import Registry

GRANULARITIES = ("unstructured", "structured")


@dataclass(frozen=True)
class Layer:
    name: str  # module name in model.named_modules()
    units: int  # prunable units: weights (unstructured) or output channels (structured)


# (model, example_inputs) -> the layers the method prunes, in module order
LayersFn = Callable[[nn.Module, torch.Tensor], list[Layer]]
# (model, units removed per layer name, example_inputs) -> pruned model (may be a new module)
PruneFn = Callable[[nn.Module, Mapping[str, int], torch.Tensor], nn.Module]


@dataclass(frozen=True)
class PruningMethod:
    name: str
    granularity: str  # one of GRANULARITIES
    paper: str  # where the method comes from
    layers: LayersFn
    prune: PruneFn
    max_ratio: float  # largest per-layer fraction of units it may remove (keeps layers alive)

    @property
    def default_metric(self) -> str:
        """Structured pruning saves compute; masks only save (sparse) storage."""
        return "macs" if self.granularity == "structured" else "params"


_METHODS: Registry[PruningMethod] = Registry("pruning method")


def register_method(
    name: str, *, granularity: str, paper: str, layers: LayersFn, max_ratio: float
) -> Callable[[PruneFn], PruneFn]:
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity {granularity!r}; allowed: {', '.join(GRANULARITIES)}")

    def decorate(fn: PruneFn) -> PruneFn:
        _METHODS.add(name, PruningMethod(name, granularity, paper, layers, fn, max_ratio))
        return fn

    return decorate


def list_methods() -> list[str]:
    return _METHODS.names()


def get_method(name: str) -> PruningMethod:
    return _METHODS.get(name)


def ratios_to_counts(
    ratios: float | Mapping[str, float], layers: list[Layer], max_ratio: float = 1.0
) -> dict[str, int]:
    """Units to remove per layer: round(ratio * units), as torch.nn.utils.prune rounds amounts."""
    names = [layer.name for layer in layers]
    if isinstance(ratios, (int, float)):
        ratios = dict.fromkeys(names, float(ratios))
    unknown = sorted(set(ratios) - set(names))
    if unknown:
        raise ValueError(f"unknown layer {unknown[0]!r}; prunable layers: {', '.join(names)}")
    counts = {}
    for layer in layers:
        ratio = ratios.get(layer.name, 0.0)
        if not 0.0 <= ratio <= max_ratio:
            raise ValueError(f"ratio {ratio} for layer {layer.name!r} is outside [0, {max_ratio}]")
        counts[layer.name] = round(ratio * layer.units)
    return counts


def apply_pruning(
    model: nn.Module,
    method: str,
    ratios: float | Mapping[str, float],
    example_inputs: torch.Tensor,
) -> nn.Module:
    """Prune `model` with `method`; `ratios` is one fraction for every layer or one per layer name."""
    spec = get_method(method)
    layers = spec.layers(model, example_inputs)
    return spec.prune(model, ratios_to_counts(ratios, layers, spec.max_ratio), example_inputs)


from . import structured, unstructured  # noqa: E402,F401  (registers the built-in methods)
