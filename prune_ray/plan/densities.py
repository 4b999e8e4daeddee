"""Allocations as per-layer densities (kept fractions of units), and their projection onto a budget in log space.

An allocation gives each layer a kept fraction k_i. `project_densities` finds one scale c (in log
space) so that the model pruned to d_i(c) = clamp(k_i * exp(c), min_density_i, 1) meets the budget
on the measured resource, the largest such c (bisection: the resource rises monotonically with c),
then gives single units back as every projection does. Used by `erk` (Erdős–Rényi-Kernel densities),
`knapsack` (the kept fractions its knapsack chose) and `searched` (a prior's kept fractions times
exp(theta_i)): with no layer pinned at a bound the ratios between layers are kept exactly, and a
layer can never be driven past its minimum density.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch.nn as nn

from ..prune import Layer, max_counts
from .budget import Projection, ResourceFn, positive_finite, project_between, rounded


def densities_of(layers: list[Layer], removed: Mapping[str, int]) -> dict[str, float]:
    """Kept fraction per layer of a plan of units removed."""
    return {layer.name: 1 - removed[layer.name] / layer.units for layer in layers}


def counts_at(layers: list[Layer], densities: Mapping[str, float], scale: float, caps: Mapping[str, int],
              round_to: int = 1) -> dict[str, int]:
    """Units removed per layer when each keeps d_i * exp(scale), at most 1 (caps: most removable),
    the kept counts rounded up to multiples of round_to."""
    removed = {}
    for layer in layers:
        kept = min(1.0, densities[layer.name] * math.exp(scale))
        removed[layer.name] = min(caps[layer.name], max(0, math.floor((1 - kept) * layer.units + 1e-9)))
    return rounded(layers, removed, round_to)


def project_densities(
    layers: list[Layer],
    densities: Mapping[str, float],
    resource_of: ResourceFn,
    target: float,
    *,
    max_ratio: float,
    tolerance: float = 0.01,
    round_to: int = 1,
) -> Projection:
    """The largest log-scale c whose plan d_i * exp(c) (each layer within [1 - max_ratio, 1])
    has a measured resource <= target; then single units given back (see module docstring)."""
    positive_finite(densities, "densities")
    caps = max_counts(layers, max_ratio)
    at_caps = math.log((1 - max_ratio) / max(densities[layer.name] for layer in layers)) - 1e-6  # every layer at its cap
    whole = math.log(1.0 / min(densities[layer.name] for layer in layers))  # every layer whole

    def plan_at(scale: float) -> dict[str, int]:
        return counts_at(layers, densities, scale, caps, round_to)

    return project_between(layers, plan_at, at_caps, whole, resource_of, target, max_ratio=max_ratio, tolerance=tolerance,
                           round_to=round_to, most_plan=rounded(layers, caps, round_to))


def erk_densities(model: nn.Module, layers: list[Layer]) -> dict[str, float]:
    """Erdős–Rényi-Kernel (Evci et al. 2020): a layer's density proportional to the sum of its
    weight's dimensions over their product, so small layers (first conv, classifier) stay dense."""
    raw = {}
    for layer in layers:
        shape = model.get_submodule(layer.name).weight.shape
        raw[layer.name] = sum(shape) / math.prod(shape)
    top = max(raw.values())
    return {name: value / top for name, value in raw.items()}
