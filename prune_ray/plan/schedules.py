"""The one-shot schedules that follow a given shape, one registry entry each.

- fixed: the spec's ratios as given (per layer, or one for all).
- uniform: the same removed ratio for every layer, projected onto the budget.
- layer_type: two shape weights proposed by Optuna, one shared by the conv layers and one by the fc
  layers (the per-layer-type rates of the thesis source document), projected onto the budget.

(global, lamp and erk look at the weights: plan.allocations; knapsack at per-layer sensitivity
curves: plan.knapsack; searched: plan.searched; race: plan.race; netadapt, the greedy schedule:
plan.netadapt.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import torch.nn as nn

from ..prune import Layer, ratios_to_counts
from . import Dimension, PlanOptions, Proposal, Schedule, Subject, register_schedule
from .budget import project, rounded

if TYPE_CHECKING:
    from ..spec_types import SweepSpec


def shape_key(index: int) -> str:
    """Name of the index-th value of a shape-weight or per-layer proposal."""
    return f"w{index:03d}"


def layer_kind(model: nn.Module, layer: Layer) -> str:
    """'fc' for linear layers (and the `fc` pseudo-layer), else 'conv'."""
    if layer.name in ("conv", "fc", "global"):
        return "fc" if layer.name == "fc" else "conv"
    return "fc" if isinstance(model.get_submodule(layer.name), nn.Linear) else "conv"


def _projected(weights_of):
    """A budgeted plan: the shape weights `weights_of(subject, proposal)` projected onto the budget."""

    def plan(subject: Subject, budget: float, proposal: Proposal, options: PlanOptions) -> dict[str, int]:
        weights = weights_of(subject, proposal)
        target = budget * subject.baseline_resource
        return project(subject.layers, weights, subject.resource_fn(), target, max_ratio=subject.method.max_ratio,
                       round_to=subject.round_to).removed

    return plan


def _per_kind_weights(subject: Subject, proposal: Proposal) -> dict[str, float]:
    by_kind = {"conv": proposal.values.get(shape_key(0), 1.0), "fc": proposal.values.get(shape_key(1), 1.0)}
    return {layer.name: float(by_kind[layer_kind(subject.model, layer)]) for layer in subject.layers}


def _equal_weights(subject: Subject, proposal: Proposal) -> dict[str, float]:
    return {layer.name: 1.0 for layer in subject.layers}


def _layer_type_space(subject: Subject, options: PlanOptions) -> dict[str, Dimension]:
    return {shape_key(i): Dimension(options.min_shape_weight, 1.0) for i in range(2)}


def _fixed(subject: Subject, ratios: float | Mapping[str, float], proposal: Proposal, options: PlanOptions) -> dict[str, int]:
    return rounded(subject.layers, ratios_to_counts(ratios, subject.layers, subject.method.max_ratio), subject.round_to)


def _check_fixed(spec: SweepSpec, subject: Subject) -> None:
    for index, entry in enumerate(spec.fixed_ratios):
        try:
            ratios_to_counts(entry, subject.layers, subject.method.max_ratio)
        except ValueError as error:
            raise ValueError(f"fixed_ratios[{index}] for {subject.method.name!r}: {error}") from None


register_schedule(Schedule("fixed", "the spec's fixed ratios, per layer or one for all", "ratios", plan=_fixed,
                           check=_check_fixed))
register_schedule(Schedule("uniform", "the same removed ratio for every layer, projected onto the budget", "budget",
                           plan=_projected(_equal_weights)))
register_schedule(Schedule("layer_type", "one Optuna-proposed shape weight for conv layers and one for fc layers",
                           "budget", plan=_projected(_per_kind_weights), space=_layer_type_space))
