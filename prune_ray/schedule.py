"""Schedules: how many units each layer loses. Methods then decide which units.

- fixed: the spec's ratios as given (per layer, or one for all).
- sensitivity: a shape weight per layer from a sensitivity scan (prune_ray.sensitivity), projected
  onto the budget; no search.
- uniform: one shape for every layer, projected onto the budget.
- searched: a shape weight per layer proposed by Optuna, projected onto the budget.
- conv_fc: two shape weights proposed by Optuna, one shared by the conv layers and one by the fc
  layers (the per-layer-type rates of the thesis seed), projected onto the budget.
- netadapt: greedy single-layer steps with short fine-tunes (prune_ray.netadapt); the trial runs
  them itself, and `plan_removal` refuses it.
- global: one threshold across layers on a per-unit score (weight magnitude for weights; a
  filter's L1 norm over its layer's mean for channels, as torch-pruning's global pruning
  normalises), the threshold chosen by bisection to meet the budget.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from .budget import measured_resource_fn, project, project_threshold
from .prune import Layer, PruningMethod, ratios_to_counts
from .prune.unstructured import is_pooled

SCHEDULES = ("searched", "uniform", "conv_fc", "global", "sensitivity", "fixed", "netadapt")
SEARCHED = ("searched", "conv_fc")  # schedules whose shape weights Optuna proposes


KEEP_KEY = "keep"  # frontier searches (no budget): the proposed kept fraction, beside the shape weights


def shape_key(index: int) -> str:
    return f"w{index:03d}"


def layer_kind(model: nn.Module, layer: Layer) -> str:
    """'fc' for linear layers (and the `fc` pseudo-layer), else 'conv'."""
    if layer.name in ("conv", "fc", "global"):
        return "fc" if layer.name == "fc" else "conv"
    return "fc" if isinstance(model.get_submodule(layer.name), nn.Linear) else "conv"


def searched_dimensions(schedule: str, layers: list[Layer]) -> int:
    """How many shape weights Optuna proposes for this schedule and these layers."""
    return 2 if schedule == "conv_fc" else len(layers)


def shape_weights(schedule: str, model: nn.Module, layers: list[Layer], shape: Mapping[str, float]) -> dict[str, float]:
    if schedule == "conv_fc":
        by_kind = {"conv": shape.get(shape_key(0), 1.0), "fc": shape.get(shape_key(1), 1.0)}
        return {layer.name: float(by_kind[layer_kind(model, layer)]) for layer in layers}
    if schedule in ("searched", "sensitivity"):  # sensitivity: the scan's weights, as a fixed shape
        return {layer.name: float(shape.get(shape_key(i), 1.0)) for i, layer in enumerate(layers)}
    return {layer.name: 1.0 for layer in layers}  # uniform


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


def plan_removal(
    schedule: str,
    model: nn.Module,
    method: PruningMethod,
    layers: list[Layer],
    point: float | Mapping[str, float],
    shape: Mapping[str, float],
    example: torch.Tensor,
    metric: str,
    baseline_resource: float,
) -> dict[str, int]:
    """Units to remove per layer for one trial (`layers`: method.layers of `model`). `point` is the
    fixed schedule's ratio(s), and every other schedule's budget (fraction of the resource kept)."""
    if schedule == "netadapt":
        raise ValueError("schedule 'netadapt' prunes step by step with fine-tuning (prune_ray.netadapt), not in one plan")
    if schedule == "fixed":
        return ratios_to_counts(point, layers, method.max_ratio)
    target = point * baseline_resource
    resource_of = measured_resource_fn(model, method, example, metric)
    if schedule == "global":
        scores = unit_scores(model, method, layers)
        return project_threshold(layers, scores, resource_of, target, max_ratio=method.max_ratio).removed
    weights = shape_weights(schedule, model, layers, shape)
    return project(layers, weights, resource_of, target, max_ratio=method.max_ratio).removed
