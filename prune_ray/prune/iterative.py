"""When pruning happens relative to fine-tuning: once, in prune/retrain cycles, or gradually.

- oneshot: prune to the final counts, then fine-tune.
- cycles (Han et al. 2015): n steps of equal size to the final counts, each followed by a full
  fine-tuning run (finetune.epochs each, so n x epochs in all).
- agp (Zhu & Gupta 2017): during one fine-tuning run, prune at the start of each of the first n
  epochs, following s_k = s_final * (1 - (1 - k/n)^3); masks only (parameters are not replaced
  mid-training), so unstructured methods only.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
import torch.nn as nn

from ..data import Dataset
from ..train import EpochStats, TrainRecipe, evaluate, recalibrate_batchnorm, train
from . import Calibration, PruningMethod

ITERATIVE = ("oneshot", "cycles", "agp")


def cumulative_counts(final: Mapping[str, int], steps: int, mode: str) -> list[dict[str, int]]:
    """Units removed per layer after each of `steps` pruning steps; the last equals `final`."""
    if mode == "agp":
        fraction = [1 - (1 - k / steps) ** 3 for k in range(1, steps + 1)]
    else:
        fraction = [k / steps for k in range(1, steps + 1)]
    return [{name: math.floor(count * f + 1e-9) for name, count in final.items()} for f in fraction]


def increments(final: Mapping[str, int], steps: int, mode: str) -> list[dict[str, int]]:
    """What each step removes on top of the earlier steps (methods prune relative to the current
    model: masks combine with the existing ones, removed channels are already gone)."""
    previous = dict.fromkeys(final, 0)
    out = []
    for counts in cumulative_counts(final, steps, mode):
        out.append({name: counts[name] - previous[name] for name in final})
        previous = counts
    return out


@dataclass
class Outcome:
    model: nn.Module  # structured steps return new modules, so the caller takes this one
    history: list[EpochStats] = field(default_factory=list)


@dataclass(frozen=True)
class Cadence:
    mode: str = "oneshot"  # one of ITERATIVE
    steps: int = 1  # pruning steps (oneshot: 1)


def _ignore(*args) -> None:
    return None


@dataclass(frozen=True)
class FineTune:
    """How the pruned model is fine-tuned, and who hears about it."""

    data: Dataset
    recipe: TrainRecipe
    seed: int
    on_epoch: Callable[[EpochStats], None] = _ignore
    # hears (top1, top5, top1 after BatchNorm recalibration or None) after each pruning step at once,
    # so a run that later diverges still reports it
    on_pruned: Callable[[float, float, "float | None"], None] = _ignore
    # examples on which BatchNorm statistics are re-estimated after each pruning step (None: not)
    recalibration: torch.Tensor | None = None


def evaluate_pruned(model: nn.Module, tuning: FineTune) -> None:
    """Tell tuning.on_pruned the accuracy right after pruning, and after BatchNorm recalibration
    (EagleEye); without BatchNorm the two are one. The model itself is recalibrated only when
    fine-tuning follows (it starts from the new statistics); with no fine-tuning a copy is, so a
    recipe that prunes without retraining reports its model exactly as pruned."""
    data = tuning.data
    top1, top5 = evaluate(model, data.val_x, data.val_y)
    if tuning.recalibration is None:
        tuning.on_pruned(top1, top5, None)
        return
    recalibrated = model if tuning.recipe.epochs > 0 else copy.deepcopy(model)
    top1_bn = top1
    if recalibrate_batchnorm(recalibrated, tuning.recalibration):
        top1_bn, _ = evaluate(recalibrated, data.val_x, data.val_y)
    tuning.on_pruned(top1, top5, top1_bn)


def prune_and_finetune(
    model: nn.Module, method: PruningMethod, final: Mapping[str, int], cadence: Cadence, tuning: FineTune,
    calibration: Calibration,
) -> Outcome:
    """Prune `model` to the `final` units removed per layer, in the cadence's steps, fine-tuning."""
    mode, steps, data, recipe = cadence.mode, cadence.steps, tuning.data, tuning.recipe
    # recipe.distill: the model as it enters, before any pruning, teaches every fine-tuning run
    teacher = copy.deepcopy(model).requires_grad_(False) if recipe.distill > 0 and recipe.epochs > 0 else None
    if mode == "oneshot" and steps != 1:
        raise ValueError(f"iterative 'oneshot' prunes in 1 step, got prune_steps {steps}")
    deltas = increments(final, steps, mode)
    if mode == "agp":

        def before_epoch(epoch: int) -> None:
            if epoch <= steps:
                method.prune(model, deltas[epoch - 1], calibration)
                if epoch == steps:  # masks pruned while training: no recalibration to measure
                    tuning.on_pruned(*evaluate(model, data.val_x, data.val_y), None)

        if recipe.epochs < steps:
            raise ValueError(f"agp needs at least prune_steps={steps} fine-tuning epochs, got {recipe.epochs}")
        history = train(model, data, recipe, seed=tuning.seed, on_epoch=tuning.on_epoch, before_epoch=before_epoch,
                        teacher=teacher)
        return Outcome(model, history)

    history: list[EpochStats] = []
    for index, delta in enumerate(deltas):
        model = method.prune(model, delta, calibration)
        evaluate_pruned(model, tuning)
        history += train(model, data, recipe, seed=tuning.seed + index, on_epoch=tuning.on_epoch,
                         first_epoch=len(history) + 1, teacher=teacher)
    return Outcome(model, history)
