"""Resource model: per-layer shape weights -> per-layer removal counts that meet a budget.

A schedule proposes a shape weight w_i in (0, 1] per layer; the plan removes
floor(max_ratio * min(1, s * w_i) * units_i) units from layer i, and `project` finds the largest
scale s whose plan keeps the resource at most the target (bisection on s, the resource falling
monotonically with s). Channel counts are coarse steps, so a greedy pass then gives back single
units, largest fitting step first, until the resource is within `tolerance` below the target.
The resource is measured on a really pruned copy of the model, never assumed from ratios:
removing a fraction p of channels removes about 1-(1-p)^2 of a conv's MACs. One exception is exact
and cheap: the nonzero parameters a magnitude mask leaves are counted from the weights
(`nonzero_removed_counter`); the trial measures the pruned model itself against the budget anyway.

Rounding (`round_to` N, torch-pruning's round_to, for vectorised CPU kernels and tensor cores):
every plan a projection measures keeps a multiple of N units per layer, or all of them (kept
counts rounded up, so a rounded plan never removes more than asked), and give-backs return a
layer to its next multiple of N; the projection then meets the budget on rounded plans only.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn as nn

from ..measure import resource
from ..prune import Calibration, Layer, PruningMethod, max_counts
from ..prune.unstructured import nonzero_removed_counter
from .latency import LatencyTable, predict_ms

ResourceFn = Callable[[Mapping[str, int]], float]  # units removed per layer -> absolute resource


class BudgetUnreachableError(ValueError):
    """Even the largest allowed per-layer ratios leave more resource than the budget allows."""


@dataclass(frozen=True)
class Projection:
    removed: dict[str, int]  # units removed per layer
    ratios: dict[str, float]  # removed / units per layer, as achieved
    resource: float  # absolute resource of the pruned model
    target: float  # absolute resource the budget allows


def model_resource(model: nn.Module, example_inputs: torch.Tensor, metric: str, table: LatencyTable | None = None) -> float:
    """The budgeted quantity of a model: MACs or nonzero parameters (measure.resource), or for
    'latency' its latency predicted by the lookup table (plan.latency), in ms."""
    if metric != "latency":
        return resource(model, example_inputs, metric)
    if table is None:
        raise ValueError("budget metric 'latency' needs the model's latency lookup table")
    return predict_ms(table, model)


def measured_resource_fn(
    model: nn.Module, method: PruningMethod, example_inputs: torch.Tensor, metric: str, table: LatencyTable | None = None
) -> ResourceFn:
    """Resource of `model` pruned by `method` with the given counts, measured on a pruned copy
    (counted, for the nonzero parameters a magnitude mask leaves; latency: predicted from the copy's
    shapes by `table`)."""
    counter = nonzero_removed_counter(model, method) if metric == "params" else None
    if counter is not None:
        dense = resource(model, example_inputs, metric)
        return lambda removed: dense - counter(removed)
    cache: dict[tuple[tuple[str, int], ...], float] = {}
    prune = method.shape_prune or method.prune  # same shapes and counts, no gradients or decompositions
    calibration = Calibration(example_inputs)

    def resource_of(removed: Mapping[str, int]) -> float:
        key = tuple(sorted(removed.items()))
        if key not in cache:
            pruned = prune(copy.deepcopy(model), removed, calibration)
            cache[key] = model_resource(pruned, example_inputs, metric, table)
        return cache[key]

    return resource_of


def positive_finite(values: Mapping[str, float], what: str) -> None:
    bad = {name: v for name, v in values.items() if not (v > 0 and math.isfinite(v))}
    if bad:
        raise ValueError(f"{what} must be positive and finite, got {bad}")


def _check_reachable(floor: float, target: float, max_ratio: float) -> None:
    if floor > target:
        raise BudgetUnreachableError(
            f"budget unreachable: removing {max_ratio:.0%} of every layer still leaves {floor:.4g} > target {target:.4g}"
        )


def _boundary(inside: int, outside: int, holds: Callable[[int], bool]) -> int:
    """The index nearest `outside` where `holds` is still true, given holds(inside) and a single
    flip between `inside` and `outside` (either may be the larger index)."""
    while abs(outside - inside) > 1:
        middle = (inside + outside) // 2
        if holds(middle):
            inside = middle
        else:
            outside = middle
    return inside


def rounded_removal(units: int, removed: int, round_to: int) -> int:
    """Units removed once the kept count is rounded up to a multiple of `round_to` (at most all)."""
    return units - min(units, math.ceil((units - removed) / round_to) * round_to)


def rounded(layers: list[Layer], removed: Mapping[str, int], round_to: int) -> dict[str, int]:
    """A plan with every layer keeping a multiple of `round_to` units, or all of them."""
    return {layer.name: rounded_removal(layer.units, removed[layer.name], round_to) for layer in layers}


def _one_back(units: int, removed: int, round_to: int) -> int:
    """Units removed after giving one step back: the layer keeps its next multiple of round_to (or all)."""
    kept = units - removed
    return units - min(units, (kept // round_to + 1) * round_to)


def plan(layers: list[Layer], weights: Mapping[str, float], scale: float, max_ratio: float,
         round_to: int = 1) -> dict[str, int]:
    return rounded(layers, {
        layer.name: math.floor(max_ratio * min(1.0, scale * weights[layer.name]) * layer.units + 1e-9)
        for layer in layers
    }, round_to)


def largest_fitting(plan_at: Callable[[float], dict[str, int]], fitting: float, missing: float, resource_of: ResourceFn,
                    target: float, tolerance: float, steps: int = 40) -> dict[str, int]:
    """Bisection on a monotone scale between a value whose plan fits the target and one whose plan
    does not (either may be the larger): the plan nearest `missing` that still fits; it stops once a
    plan is within `tolerance` below the target (more halving would only move single units)."""
    for _ in range(steps):
        if abs(missing - fitting) <= 1e-9 * max(1.0, abs(fitting)):
            break
        middle = (fitting + missing) / 2
        value = resource_of(plan_at(middle))
        if value <= target:
            fitting = middle
            if value >= target * (1 - tolerance):
                break
        else:
            missing = middle
    return plan_at(fitting)


def project_between(
    layers: list[Layer],
    plan_at: Callable,
    most: float,
    least: float,
    resource_of: ResourceFn,
    target: float,
    *,
    max_ratio: float,
    tolerance: float,
    round_to: int,
    discrete: bool = False,
    most_plan: Mapping[str, int] | None = None,
) -> Projection:
    """The one skeleton of every projection onto a budget, along a monotone position (a scale, or
    an index into sorted scores) whose plans `plan_at` run from `most` pruned to `least`: the budget
    must be reachable at `most` (its plan, or `most_plan` when given; BudgetUnreachableError if
    not); the plan at `least` when it fits, else the fitting plan nearest `least` (bisection:
    `largest_fitting` on a continuous position, `_boundary` on a discrete one); then single units
    (or steps of round_to) given back (give_back)."""
    _check_reachable(resource_of(plan_at(most) if most_plan is None else most_plan), target, max_ratio)
    if resource_of(plan_at(least)) <= target:
        removed = plan_at(least)
    elif discrete:
        removed = plan_at(_boundary(most, least, lambda position: resource_of(plan_at(position)) <= target))
    else:
        removed = largest_fitting(plan_at, most, least, resource_of, target, tolerance)
    removed, achieved = give_back(layers, removed, resource_of(removed), target, resource_of, tolerance, round_to=round_to)
    units = {layer.name: layer.units for layer in layers}
    return Projection(removed, {name: count / units[name] for name, count in removed.items()}, achieved, target)


def project(
    layers: list[Layer],
    weights: Mapping[str, float],
    resource_of: ResourceFn,
    target: float,
    *,
    max_ratio: float,
    tolerance: float = 0.01,
    round_to: int = 1,
) -> Projection:
    """Largest plan of the weights' shape whose resource is <= target (see module docstring)."""
    positive_finite(weights, "shape weights")
    most = 1.0 / min(weights[layer.name] for layer in layers)  # every layer at max_ratio

    def plan_at(scale: float) -> dict[str, int]:
        return plan(layers, weights, scale, max_ratio, round_to)

    return project_between(layers, plan_at, most, 0.0, resource_of, target, max_ratio=max_ratio, tolerance=tolerance,
                           round_to=round_to)


def give_back(
    layers: list[Layer],
    removed: dict[str, int],
    achieved: float,
    target: float,
    resource_of: ResourceFn,
    tolerance: float,
    max_rounds: int = 6,
    round_to: int = 1,
) -> tuple[dict[str, int], float]:
    """Return units to layers while the resource stays <= target, until within `tolerance` of it.

    Each round measures what giving back one unit (or one step to the next multiple of round_to)
    costs in each layer (one pruned copy per layer), plans a sequence of give-backs that fills the
    gap with the biggest steps first, and keeps the longest prefix of that sequence whose measured
    resource still fits (binary search, since the resource only grows along the sequence).
    """
    removed = dict(removed)
    units = {layer.name: layer.units for layer in layers}
    for _ in range(max_rounds):
        if achieved >= target * (1 - tolerance):
            break
        step = {}
        for layer in layers:
            if removed[layer.name] > 0:
                value = resource_of({**removed, layer.name: _one_back(layer.units, removed[layer.name], round_to)})
                if achieved < value <= target:
                    step[layer.name] = value - achieved
        if not step:
            break
        sequence: list[str] = []
        room = target - achieved
        for name in sorted(step, key=step.__getitem__, reverse=True):
            count = min(math.ceil(removed[name] / round_to), int(room // step[name]))
            sequence += [name] * count
            room -= count * step[name]

        def after(prefix: int) -> dict[str, int]:
            result = dict(removed)
            for name in sequence[:prefix]:
                result[name] = _one_back(units[name], result[name], round_to)
            return result

        # a single give-back fits by construction; the whole sequence may not
        longest = _boundary(1, len(sequence) + 1, lambda prefix: resource_of(after(prefix)) <= target)
        removed = after(longest)
        achieved = resource_of(removed)
    return removed, achieved



def project_threshold(
    layers: list[Layer],
    scores: Mapping[str, torch.Tensor],
    resource_of: ResourceFn,
    target: float,
    *,
    max_ratio: float,
    tolerance: float = 0.01,
    round_to: int = 1,
) -> Projection:
    """One threshold across layers: remove every unit scoring below t (at most max_ratio of a
    layer), with the smallest t whose resource is <= target (bisection over the sorted scores),
    then give single units back as `project` does."""
    caps = max_counts(layers, max_ratio)
    ordered = {layer.name: torch.sort(scores[layer.name].flatten().float()).values for layer in layers}
    merged = torch.sort(torch.cat(list(ordered.values()))).values

    def plan_at(position: int) -> dict[str, int]:
        if position >= len(merged):
            return rounded(layers, caps, round_to)
        threshold = merged[position]
        removed = {name: min(caps[name], int(torch.searchsorted(values, threshold))) for name, values in ordered.items()}
        return rounded(layers, removed, round_to)

    return project_between(layers, plan_at, len(merged), 0, resource_of, target, max_ratio=max_ratio,
                           tolerance=tolerance, round_to=round_to, discrete=True)

