"""Structured pruning: whole output channels removed through torch-pruning's dependency graph.

Coupled layers (a conv and its BatchNorm, the next layer's inputs, residual branches that must
agree) form one group in the graph and are pruned together, so the smaller network stays valid.
Each group is one prunable "layer", named after its root module.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn
import torch_pruning as tp

from ..models import classifier_layer
from . import Layer, register_method

ROOT_TYPES = [nn.Conv2d, nn.Linear]


def _groups(model: nn.Module, example_inputs: torch.Tensor):
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    groups = graph.get_all_groups(ignored_layers=[classifier_layer(model)], root_module_types=ROOT_TYPES)
    order = {module: index for index, module in enumerate(model.modules())}
    by_root = {group[0].dep.target.module: group for group in groups}
    roots = sorted(by_root, key=order.__getitem__)
    return graph, [(root, by_root[root]) for root in roots]


def channel_groups(model: nn.Module, example_inputs: torch.Tensor) -> list[Layer]:
    names = {module: name for name, module in model.named_modules()}
    graph, groups = _groups(model, example_inputs)
    return [Layer(names[root], graph.get_out_channels(root)) for root, _ in groups]


def _remove_channels(
    model: nn.Module,
    removed: Mapping[str, int],
    example_inputs: torch.Tensor,
    importance: tp.importance.Importance,
) -> nn.Module:
    names = {module: name for name, module in model.named_modules()}
    graph, groups = _groups(model, example_inputs)
    for root, group in groups:
        count = removed.get(names[root], 0)
        if count <= 0:
            continue
        # Rank on the current weights: earlier groups may already have removed this layer's inputs.
        current = graph.get_pruning_group(root, group[0].dep.handler, list(range(graph.get_out_channels(root))))
        scores = importance(current)
        weakest = torch.argsort(scores)[:count].tolist()
        graph.get_pruning_group(root, group[0].dep.handler, weakest).prune()
    return model


@register_method(
    "l1_filter",
    granularity="structured",
    paper="Li et al. 2017, Pruning Filters for Efficient ConvNets",
    layers=channel_groups,
    max_ratio=0.95,
)
def l1_filter(model: nn.Module, removed: Mapping[str, int], example_inputs: torch.Tensor) -> nn.Module:
    """Remove the filters with the smallest L1 norm of their own weights (the group's root layer)."""
    importance = tp.importance.GroupMagnitudeImportance(p=1, group_reduction="first", normalizer=None)
    return _remove_channels(model, removed, example_inputs, importance)
