"""Structured pruning: whole output channels removed through torch-pruning's dependency graph.

Coupled layers (a conv and its BatchNorm, the next layer's inputs, residual branches that must
agree, concatenations) form one group in the graph and are pruned together, so the smaller network
stays valid. Each group is one prunable "layer", named after its root module.

Every group's channel scores are computed once, on the unpruned model (Li et al.'s "independent"
strategy): removing a group's output channels never renumbers another group's output channels.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import classifier_layer
from . import Calibration, Layer, UnsupportedModelError, register_method


def _torch_pruning():
    """torch-pruning, imported without the `import timm` of its FLOP counter (torch_pruning.utils.
    op_counter, which this package never calls): timm pulls in torchvision.models and torch._dynamo,
    seconds of CPU in every process that prunes (each Ray trial). A timm already imported stays;
    a later `import timm` (models "timm:<name>") imports it for real."""
    if "timm" in sys.modules:
        return importlib.import_module("torch_pruning")
    sys.modules["timm"] = None  # makes `import timm` raise ImportError
    try:
        return importlib.import_module("torch_pruning")
    finally:
        del sys.modules["timm"]


tp = _torch_pruning()

ROOT_TYPES = [nn.Conv2d, nn.Linear]
MAX_RATIO = 0.95  # floor(0.95 * channels) < channels: every layer keeps at least one channel
Group = list  # a torch-pruning group: [(dependency, indices), ...]


def dependency_groups(model: nn.Module, example_inputs: torch.Tensor) -> tuple[tp.DependencyGraph, list[tuple[nn.Module, Group]]]:
    """The graph and its prunable groups as (root module, group), in module order (the classifier's
    outputs stay); the saved models (artifacts) replay removals on these same groups."""
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    groups = graph.get_all_groups(ignored_layers=[classifier_layer(model)], root_module_types=ROOT_TYPES)
    order = {module: index for index, module in enumerate(model.modules())}
    by_root = {group[0].dep.target.module: group for group in groups}
    return graph, [(root, by_root[root]) for root in sorted(by_root, key=order.__getitem__)]


def _has_batchnorm(group: Group) -> bool:
    return any(isinstance(dep.target.module, nn.modules.batchnorm._BatchNorm) for dep, _ in group)


def _layers(model: nn.Module, example_inputs: torch.Tensor, keep: Callable[[Group], bool]) -> list[Layer]:
    names = {module: name for name, module in model.named_modules()}
    graph, groups = dependency_groups(model, example_inputs)
    return [Layer(names[root], graph.get_out_channels(root)) for root, group in groups if keep(group)]


def channel_groups(model: nn.Module, example_inputs: torch.Tensor) -> list[Layer]:
    return _layers(model, example_inputs, keep=lambda group: True)


def batchnorm_groups(model: nn.Module, example_inputs: torch.Tensor) -> list[Layer]:
    """Only groups with a BatchNorm: network slimming ranks channels by BN scale."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise UnsupportedModelError(
            f"slimming ranks channels by BatchNorm scale, and {type(model).__name__} has no BatchNorm layer; "
            "use a _bn model or another structured method"
        )
    return _layers(model, example_inputs, keep=_has_batchnorm)


def remove_channels(
    model: nn.Module,
    removed: Mapping[str, int],
    calibration: Calibration,
    importance: Callable[[Group], torch.Tensor | None],
) -> nn.Module:
    """Remove `removed[name]` output channels, lowest score first, from each named group."""
    names = {module: name for name, module in model.named_modules()}
    graph, groups = dependency_groups(model, calibration.inputs[:1])  # tracing needs shapes only
    plans = []
    for root, group in groups:
        count = removed.get(names[root], 0)
        if count > 0:
            scores = importance(group)
            if scores is None:
                raise UnsupportedModelError(f"{type(importance).__name__} cannot score layer {names[root]!r}")
            plans.append((root, group[0].dep.handler, torch.argsort(scores)[:count].tolist()))
    for root, handler, weakest in plans:
        graph.get_pruning_group(root, handler, weakest).prune()
    return model


def _with_importance(importance_factory: Callable[[], tp.importance.Importance]):
    def prune(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
        return remove_channels(model, removed, calibration, importance_factory())

    return prune


_by_l1 = _with_importance(lambda: tp.importance.GroupMagnitudeImportance(p=1, group_reduction="first", normalizer=None))


def _position(group: Group) -> torch.Tensor:
    """Channel scores by position (the first channels go first): no weights read, nothing computed."""
    return torch.arange(len(group[0].idxs), dtype=torch.float32)


def _by_position(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
    """Every structured method's stand-in for measuring a plan: channel counts alone decide the pruned
    shapes (and so MACs, parameters and latency), so any ranking serves, and this one costs nothing.
    (Scoring every group by L1 norm took half of a vgg16_bn budget projection's 3.6 s.)"""
    return remove_channels(model, removed, calibration, _position)


def _structured(name: str, paper: str, ranking: str, layers=channel_groups):
    return register_method(
        name,
        granularity="structured",
        paper=paper,
        ratio_meaning=f"fraction of each channel group's output channels removed, {ranking}",
        layers=layers,
        max_ratio=MAX_RATIO,
        shape_prune=_by_position,
    )


@_structured("l1_filter", "Li et al. 2017, Pruning Filters for Efficient ConvNets", "smallest filter L1 norm first")
def l1_filter(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
    """Filters with the smallest L1 norm of the group root's own weights go first."""
    return _by_l1(model, removed, calibration)


@_structured("l2_filter", "Li et al. 2017 (L2 variant)", "smallest filter L2 norm first")
def l2_filter(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
    importance = tp.importance.GroupMagnitudeImportance(p=2, group_reduction="first", normalizer=None)
    return remove_channels(model, removed, calibration, importance)


@_structured(
    "fpgm", "He et al. 2019, Filter Pruning via Geometric Median", "filters nearest the geometric median first"
)
def fpgm(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
    importance = tp.importance.FPGMImportance(p=2, group_reduction="first", normalizer=None)
    return remove_channels(model, removed, calibration, importance)


@_structured(
    "slimming",
    "Liu et al. 2017, Network Slimming (train with recipe bn_l1 > 0 for the sparsity penalty)",
    "smallest BatchNorm scale |gamma| first",
    layers=batchnorm_groups,
)
def slimming(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
    return remove_channels(model, removed, calibration, tp.importance.BNScaleImportance(normalizer=None))


@_structured(
    "taylor", "Molchanov et al. 2019, Importance Estimation for Neural Network Pruning", "smallest |weight x gradient| first"
)
def taylor(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
    if calibration.targets is None:
        raise ValueError("taylor needs labelled calibration data: pass targets with the example inputs")
    model.zero_grad(set_to_none=True)
    was_training = model.training
    model.eval()  # BN in eval mode: the gradient of the loss the deployed network will see
    F.cross_entropy(model(calibration.inputs), calibration.targets).backward()
    model.train(was_training)
    pruned = remove_channels(model, removed, calibration, tp.importance.GroupTaylorImportance(normalizer=None))
    pruned.zero_grad(set_to_none=True)
    return pruned


@_structured("random_filter", "random channel pruning baseline", "at random (seeded by torch)")
def random_filter(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
    return remove_channels(model, removed, calibration, tp.importance.RandomImportance())
