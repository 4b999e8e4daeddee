"""One-shot allocations under a budget that look at the weights: one threshold across layers on a
comparable per-unit score (`global`, `lamp`), or densities from the layers' shapes (`erk`).

- global: weight magnitude for weights; a filter's L1 norm over its layer's mean for channels, as
  torch-pruning's global pruning normalises.
- lamp (Lee et al., ICLR 2021): a unit's score is its squared magnitude over the sum of the squared
  magnitudes of the units of its layer that are at least as large; one threshold across layers.
  Every layer's largest unit scores 1, so no layer is emptied. For channels the same normalisation
  of the filters' L1 norms (a LAMP-style channel score).
- erk (Evci et al. 2020): Erdős–Rényi-Kernel densities, each layer's proportional to the sum of its
  weight's dimensions over their product, scaled to the budget (plan.densities); weights only.

Each threshold is chosen by bisection on the measured resource of pruned copies, then single units
are given back, so every allocation meets the budget as exactly as the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from ..prune import Layer, PruningMethod
from ..prune.unstructured import is_pooled
from . import PlanOptions, Proposal, Schedule, Subject, register_schedule
from .budget import project_threshold
from .densities import erk_densities, project_densities

if TYPE_CHECKING:
    from ..spec_types import SweepSpec


def unit_scores(model: nn.Module, method: PruningMethod, layers: list[Layer], schedule: str = "global") -> dict[str, torch.Tensor]:
    """Per-unit scores comparable across layers: |w| per weight, or L1 norm / layer mean per channel."""
    if method.granularity == "unstructured" and not is_pooled(method):
        return {layer.name: model.get_submodule(layer.name).weight.detach().abs().flatten() for layer in layers}
    if method.granularity == "structured":
        scores = {}
        for layer in layers:
            weight = model.get_submodule(layer.name).weight.detach()
            norms = weight.abs().flatten(1).sum(dim=1)
            scores[layer.name] = norms / norms.mean().clamp_min(1e-12)
        return scores
    raise ValueError(
        f"schedule {schedule!r} ranks single weights or channels; method {method.name!r} ({method.granularity}, "
        f"layers {[layer.name for layer in layers][:3]}) has neither: use schedule searched, uniform or fixed"
    )


def lamp_scores(model: nn.Module, method: PruningMethod, layers: list[Layer]) -> dict[str, torch.Tensor]:
    """LAMP scores (module docstring) of every unit, in the units' own order."""
    scores = {}
    for name, magnitude in unit_scores(model, method, layers, "lamp").items():
        squared = magnitude.double().flatten() ** 2
        ordered, order = torch.sort(squared)
        at_least = torch.flip(torch.cumsum(torch.flip(ordered, [0]), 0), [0])  # sum over units >= this one
        lamp = torch.empty_like(ordered)
        lamp[order] = ordered / at_least.clamp_min(1e-300)
        scores[name] = lamp
    return scores


def _threshold_plan(score_fn):
    def plan(subject: Subject, budget: float, proposal: Proposal, options: PlanOptions) -> dict[str, int]:
        scores = score_fn(subject.model, subject.method, subject.layers)
        return project_threshold(subject.layers, scores, subject.resource_fn(), budget * subject.baseline_resource,
                                 max_ratio=subject.method.max_ratio, round_to=subject.round_to).removed

    return plan


def _check_scores(schedule: str):
    def check(spec: SweepSpec, subject: Subject) -> None:
        unit_scores(subject.model, subject.method, subject.layers, schedule)

    return check


def _erk(subject: Subject, budget: float, proposal: Proposal, options: PlanOptions) -> dict[str, int]:
    densities = erk_densities(subject.model, subject.layers)
    return project_densities(subject.layers, densities, subject.resource_fn(), budget * subject.baseline_resource,
                             max_ratio=subject.method.max_ratio, round_to=subject.round_to).removed


def _check_erk(spec: SweepSpec, subject: Subject) -> None:
    method = subject.method
    if method.granularity != "unstructured" or is_pooled(method):
        raise ValueError(f"schedule 'erk' sets the weight density of each layer; method {method.name!r} "
                         f"({method.granularity}) does not prune single weights per layer: use lamp, global or uniform")


register_schedule(Schedule("global", "one score threshold across layers, chosen to meet the budget", "budget",
                           plan=_threshold_plan(unit_scores), check=_check_scores("global")))
register_schedule(Schedule("lamp", "one threshold on layer-adaptive magnitude scores (LAMP), chosen to meet the budget",
                           "budget", plan=_threshold_plan(lamp_scores), check=_check_scores("lamp")))
register_schedule(Schedule("erk", "Erdős–Rényi-Kernel layer densities scaled to the budget (weights only)", "budget",
                           plan=_erk, check=_check_erk))
