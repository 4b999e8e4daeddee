"""The `knapsack` schedule: a one-shot allocation from per-layer sensitivity curves (the idea of
HALP, Shen et al. 2022, and of Model Optimizer's FastNAS).

1. Curves: for each layer and each of search.curve_points kept fractions (geometric from 1 - max_ratio to
   1), the baseline with only that layer pruned so: its proxy damage (plan.proxy, forward only, no
   fine-tuning; minus the baseline's own) and the resource it saves (measured on the pruned copy:
   params, MACs, or the latency table's prediction). Cached per baseline, method, metric and proxy
   in `<storage>/sensitivity/`, as the `sensitivity` scan is.
2. A multiple-choice knapsack picks one kept fraction per layer (or none pruned) minimising the
   summed damage while the summed savings reach what the budget asks (dynamic programming over
   the savings discretised in BINS steps, each rounded down).
3. Savings are not exactly additive (removing a conv's channels also removes the next layer's
   inputs), so the chosen kept fractions are projected onto the budget by one scale in log space
   (plan.densities), like `erk` and `searched`: the budget is met as exactly as by every schedule.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd

from ..prune import Calibration
from . import PlanOptions, Proposal, Schedule, Subject, register_schedule
from .densities import project_densities

BINS = 1000  # steps the savings are discretised in (the budget's saving is BINS steps)


def curve_name(subject: Subject, proxy: str, points: int) -> str:
    rounding = f"-r{subject.round_to}" if subject.round_to > 1 else ""
    return f"knapsack-{subject.method.name}-{subject.metric}-{proxy}-{points}{rounding}"


def curve_counts(units: int, max_ratio: float, points: int, round_to: int = 1) -> list[int]:
    """Units removed at each kept fraction of the curve, distinct, ascending (0 excluded)."""
    least = max(1 - max_ratio, 1e-6)
    counts = set()
    for step in range(1, points + 1):
        kept = math.ceil(units * least ** (step / points) - 1e-9)
        kept = min(units, math.ceil(kept / round_to) * round_to) if round_to > 1 else kept
        removed = min(units - kept, int(max_ratio * units + 1e-9))
        if removed > 0:
            counts.add(removed)
    return sorted(counts)


def sensitivity_curves(subject: Subject, points: int) -> pd.DataFrame:
    """Rows (layer, removed, kept, damage, saving): the baseline with only `layer` pruned by `removed`
    units; damage is the proxy minus the baseline's, saving the resource it no longer holds."""
    scorer = subject.scorer
    if scorer is None:
        raise ValueError("schedule 'knapsack' measures sensitivity curves on the trial's data: the subject has no scorer")
    dense = scorer.dense_scores()[scorer.proxy]
    resource_of = subject.resource_fn()
    calibration = Calibration(scorer.recalibration[:64])
    rows = []
    for layer in subject.layers:
        for removed in curve_counts(layer.units, subject.method.max_ratio, points, subject.round_to):
            pruned = subject.method.prune(copy.deepcopy(subject.model), {layer.name: removed}, calibration)
            rows.append({"layer": layer.name, "removed": removed, "kept": 1 - removed / layer.units,
                         "damage": scorer.damage(pruned) - dense,
                         "saving": subject.baseline_resource - resource_of({layer.name: removed})})
    return pd.DataFrame(rows, columns=["layer", "removed", "kept", "damage", "saving"])


def choose(options: list[list[tuple[float, float]]], needed: float, bins: int = BINS) -> list[int]:
    """Multiple-choice knapsack: per layer, the index of one (saving, damage) option, minimising the
    summed damage with the summed savings at least `needed`; savings in steps of needed / bins,
    rounded down (so the chosen savings reach `needed` at least as discretised). When no choice
    reaches it, every layer's largest saving."""
    if needed <= 0:
        return [min(range(len(layer)), key=lambda i: (layer[i][0] > 0, layer[i][1])) for layer in options]
    unit = needed / bins
    best = np.full(bins + 1, np.inf)
    best[0] = 0.0
    back: list[tuple[np.ndarray, np.ndarray]] = []  # per layer: chosen option and previous step, per step
    for layer in options:
        new, option_of, source_of = np.full(bins + 1, np.inf), np.zeros(bins + 1, int), np.zeros(bins + 1, int)
        for index, (saving, damage) in enumerate(layer):
            steps = min(bins, max(0, int(math.floor(saving / unit + 1e-9))))
            candidate, source = np.full(bins + 1, np.inf), np.zeros(bins + 1, int)
            candidate[steps:bins] = best[0:bins - steps] + damage
            source[steps:bins] = np.arange(0, bins - steps)
            low = bins - steps  # every step from `low` on reaches the cap
            at = low + int(np.argmin(best[low:]))
            candidate[bins], source[bins] = best[at] + damage, at
            better = candidate < new
            new[better], option_of[better], source_of[better] = candidate[better], index, source[better]
        best = new
        back.append((option_of, source_of))
    if not np.isfinite(best[bins]):
        return [max(range(len(layer)), key=lambda i: layer[i][0]) for layer in options]
    chosen, step = [], bins
    for option_of, source_of in reversed(back):
        chosen.append(int(option_of[step]))
        step = int(source_of[step])
    return chosen[::-1]


def knapsack_densities(subject: Subject, budget: float, curves: pd.DataFrame) -> dict[str, float]:
    """Per layer, the kept fraction the knapsack chooses for the budget (1: not pruned)."""
    options, kept = [], []
    for layer in subject.layers:
        rows = curves[curves["layer"] == layer.name]
        options.append([(0.0, 0.0), *zip(rows["saving"].astype(float), rows["damage"].astype(float))])
        kept.append([1.0, *rows["kept"].astype(float)])
    needed = subject.baseline_resource * (1 - budget)
    chosen = choose(options, needed)
    return {layer.name: kept[i][choice] for i, (layer, choice) in enumerate(zip(subject.layers, chosen))}


def _plan(subject: Subject, budget: float, proposal: Proposal, options: PlanOptions) -> dict[str, int]:
    scorer = subject.scorer
    if scorer is None:
        raise ValueError("schedule 'knapsack' measures sensitivity curves on the trial's data: the subject has no scorer")
    points = options.curve_points
    curves = scorer.cached(curve_name(subject, scorer.proxy, points), lambda: sensitivity_curves(subject, points))
    densities = knapsack_densities(subject, budget, curves)
    floor = 1 - subject.method.max_ratio
    densities = {name: max(value, floor) for name, value in densities.items()}
    return project_densities(subject.layers, densities, subject.resource_fn(), budget * subject.baseline_resource,
                             max_ratio=subject.method.max_ratio, round_to=subject.round_to).removed


register_schedule(Schedule(
    "knapsack", "one kept fraction per layer from proxy sensitivity curves, by a knapsack under the budget",
    "budget", plan=_plan,
))
