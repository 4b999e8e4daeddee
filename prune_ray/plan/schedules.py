"""The one-shot schedules, one registry entry each: units removed per layer for one trial.

- fixed: the spec's ratios as given (per layer, or one for all).
- uniform: one shape for every layer, projected onto the budget.
- searched: a shape weight per layer proposed by Optuna, projected onto the budget.
- conv_fc: two shape weights proposed by Optuna, one shared by the conv layers and one by the fc
  layers (the per-layer-type rates of the thesis source document), projected onto the budget.
- sensitivity: a shape weight per layer from a sensitivity scan (plan.sensitivity), projected
  onto the budget; no search.
- global: one threshold across layers on a per-unit score (weight magnitude for weights; a
  filter's L1 norm over its layer's mean for channels, as torch-pruning's global pruning
  normalises), the threshold chosen by bisection to meet the budget.

(netadapt, the greedy schedule, is its own entry in plan.netadapt.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import torch
import torch.nn as nn

from ..prune import Layer, PruningMethod, ratios_to_counts
from ..prune.unstructured import is_pooled
from . import Schedule, Subject, register_schedule
from .budget import project, project_threshold

if TYPE_CHECKING:
    from ..points import Proposal
    from ..spec import SweepSpec


def shape_key(index: int) -> str:
    """Name of the index-th searched dimension of a proposal."""
    return f"w{index:03d}"


def layer_kind(model: nn.Module, layer: Layer) -> str:
    """'fc' for linear layers (and the `fc` pseudo-layer), else 'conv'."""
    if layer.name in ("conv", "fc", "global"):
        return "fc" if layer.name == "fc" else "conv"
    return "fc" if isinstance(model.get_submodule(layer.name), nn.Linear) else "conv"


def _projected(weights_of):
    """A budgeted plan: the shape weights `weights_of(subject, proposal)` projected onto the budget."""

    def plan(subject: Subject, budget: float, proposal: Proposal) -> dict[str, int]:
        weights = weights_of(subject, proposal)
        target = budget * subject.baseline_resource
        return project(subject.layers, weights, subject.resource_fn(), target, max_ratio=subject.method.max_ratio).removed

    return plan


def _per_layer_weights(subject: Subject, proposal: Proposal) -> dict[str, float]:
    return {layer.name: float(proposal.values.get(shape_key(i), 1.0)) for i, layer in enumerate(subject.layers)}


def _per_kind_weights(subject: Subject, proposal: Proposal) -> dict[str, float]:
    by_kind = {"conv": proposal.values.get(shape_key(0), 1.0), "fc": proposal.values.get(shape_key(1), 1.0)}
    return {layer.name: float(by_kind[layer_kind(subject.model, layer)]) for layer in subject.layers}


def _equal_weights(subject: Subject, proposal: Proposal) -> dict[str, float]:
    return {layer.name: 1.0 for layer in subject.layers}


def _fixed(subject: Subject, ratios: float | Mapping[str, float], proposal: Proposal) -> dict[str, int]:
    return ratios_to_counts(ratios, subject.layers, subject.method.max_ratio)


def _check_fixed(spec: SweepSpec, subject: Subject) -> None:
    for index, entry in enumerate(spec.fixed_ratios):
        try:
            ratios_to_counts(entry, subject.layers, subject.method.max_ratio)
        except ValueError as error:
            raise ValueError(f"fixed_ratios[{index}] for {subject.method.name!r}: {error}") from None


def unit_scores(model: nn.Module, method: PruningMethod, layers: list[Layer]) -> dict[str, torch.Tensor]:
    """Per-unit scores for the global schedule, comparable across layers."""
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
        f"schedule 'global' ranks single weights or channels; method {method.name!r} ({method.granularity}, "
        f"layers {[layer.name for layer in layers][:3]}) has neither: use schedule searched, uniform or fixed"
    )


def _global(subject: Subject, budget: float, proposal: Proposal) -> dict[str, int]:
    scores = unit_scores(subject.model, subject.method, subject.layers)
    target = budget * subject.baseline_resource
    return project_threshold(subject.layers, scores, subject.resource_fn(), target,
                             max_ratio=subject.method.max_ratio).removed


def _check_global(spec: SweepSpec, subject: Subject) -> None:
    unit_scores(subject.model, subject.method, subject.layers)


def _seeded_by_scan(spec: SweepSpec) -> bool:
    return spec.search.seed_with_sensitivity


def _always(spec: SweepSpec) -> bool:
    return True


register_schedule(Schedule("fixed", "the spec's fixed ratios, per layer or one for all", "ratios", plan=_fixed,
                           check=_check_fixed))
register_schedule(Schedule("uniform", "one ratio shape for every layer, projected onto the budget", "budget",
                           plan=_projected(_equal_weights)))
register_schedule(Schedule("searched", "a shape weight per layer proposed by Optuna, projected onto the budget",
                           "budget", plan=_projected(_per_layer_weights), space=lambda subject: len(subject.layers),
                           uses_scan=_seeded_by_scan))
register_schedule(Schedule("conv_fc", "one Optuna-proposed shape weight for conv layers and one for fc layers",
                           "budget", plan=_projected(_per_kind_weights), space=lambda subject: 2))
register_schedule(Schedule("sensitivity", "shape weights from a per-layer sensitivity scan, projected onto the budget",
                           "budget", plan=_projected(_per_layer_weights), uses_scan=_always))
register_schedule(Schedule("global", "one score threshold across layers, chosen to meet the budget", "budget",
                           plan=_global, check=_check_global))
