"""Resource model: per-layer shape weights -> per-layer removal counts that meet a budget.

A schedule proposes a shape weight w_i in (0, 1] per layer; the plan removes
floor(max_ratio * min(1, s * w_i) * units_i) units from layer i, and `project` finds the largest
scale s whose plan keeps the resource at most the target (bisection on s, the resource falling
monotonically with s). Channel counts are coarse steps, so a greedy pass then gives back single
units, largest fitting step first, until the resource is within `tolerance` below the target.
The resource is always measured on a really pruned copy of the model, never assumed from ratios:
removing a fraction p of channels removes about 1-(1-p)^2 of a conv's MACs.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn as nn

from .measure import resource
from .prune import Layer, PruningMethod

ResourceFn = Callable[[Mapping[str, int]], float]  # units removed per layer -> absolute resource


class BudgetUnreachableError(ValueError):
    """Even the largest allowed per-layer ratios leave more resource than the budget allows."""


@dataclass(frozen=True)
class Projection:
    removed: dict[str, int]  # units removed per layer
    ratios: dict[str, float]  # removed / units per layer, as achieved
    resource: float  # absolute resource of the pruned model
    target: float  # absolute resource the budget allows


def measured_resource_fn(
    model: nn.Module, method: PruningMethod, example_inputs: torch.Tensor, metric: str
) -> ResourceFn:
    """Resource of `model` pruned by `method` with the given counts, measured on a pruned copy."""
    cache: dict[tuple[tuple[str, int], ...], float] = {}

    def resource_of(removed: Mapping[str, int]) -> float:
        key = tuple(sorted(removed.items()))
        if key not in cache:
            pruned = method.prune(copy.deepcopy(model), removed, example_inputs)
            cache[key] = resource(pruned, example_inputs, metric)
        return cache[key]

    return resource_of


def plan(layers: list[Layer], weights: Mapping[str, float], scale: float, max_ratio: float) -> dict[str, int]:
    return {
        layer.name: math.floor(max_ratio * min(1.0, scale * weights[layer.name]) * layer.units + 1e-9)
        for layer in layers
    }


def project(
    layers: list[Layer],
    weights: Mapping[str, float],
    resource_of: ResourceFn,
    target: float,
    *,
    max_ratio: float,
    tolerance: float = 0.01,
    bisection_steps: int = 40,
) -> Projection:
    """Largest plan of the weights' shape whose resource is <= target (see module docstring)."""
    bad = {name: w for name, w in weights.items() if not (w > 0 and math.isfinite(w))}
    if bad:
        raise ValueError(f"shape weights must be positive and finite, got {bad}")
    low, high = 0.0, 1.0 / min(weights[layer.name] for layer in layers)  # high: every layer at max
    if resource_of(plan(layers, weights, high, max_ratio)) > target:
        floor = resource_of(plan(layers, weights, high, max_ratio))
        raise BudgetUnreachableError(
            f"budget unreachable: removing {max_ratio:.0%} of every layer still leaves "
            f"{floor:.4g} > target {target:.4g}"
        )
    if resource_of(plan(layers, weights, low, max_ratio)) <= target:
        high = low  # nothing needs removing
    for _ in range(bisection_steps):
        if high - low <= 1e-9 * high:
            break
        middle = (low + high) / 2
        if resource_of(plan(layers, weights, middle, max_ratio)) <= target:
            high = middle
        else:
            low = middle
    removed = plan(layers, weights, high, max_ratio)
    achieved = resource_of(removed)
    # Give back single units while some fit under the target; the biggest step that fits first.
    while achieved < target * (1 - tolerance):
        best: tuple[float, str] | None = None
        for layer in layers:
            if removed[layer.name] == 0:
                continue
            trial = {**removed, layer.name: removed[layer.name] - 1}
            value = resource_of(trial)
            if value <= target and (best is None or value > best[0]):
                best = (value, layer.name)
        if best is None:
            break
        achieved, name = best
        removed[name] -= 1
    units = {layer.name: layer.units for layer in layers}
    return Projection(
        removed=removed,
        ratios={name: count / units[name] for name, count in removed.items()},
        resource=achieved,
        target=target,
    )
