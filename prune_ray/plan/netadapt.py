"""NetAdapt (Yang et al. 2018): shrink a network in steps, pruning one layer per step.

Each step must cut the resource by a fixed fraction of the baseline's. Every layer proposes the
fewest units whose removal alone meets the step's target; each proposal is pruned and briefly
fine-tuned, and the most accurate one becomes the next model. The short fine-tunes are
independent, so a caller may run them in parallel (as Ray tasks) through its own `short_tune`;
this module is the Ray-free core and `local_short_tune` runs them one after another.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn as nn

from ..data import Dataset
from ..prune import Calibration, PruningMethod, max_counts
from ..train import RECALIBRATION_EXAMPLES, TrainRecipe, evaluate, recalibrate_batchnorm, train
from . import Adapted, Schedule, Subject, register_schedule
from .budget import (
    BudgetUnreachableError, _boundary, _check_reachable, measured_resource_fn, model_resource, rounded, rounded_removal,
)
from .latency import LatencyTable

if TYPE_CHECKING:
    from ..spec_types import SweepSpec


@dataclass(frozen=True)
class Candidate:
    layer: str  # layer name, as in method.layers
    removed: int  # units removed from `layer` on top of the current model
    resource: float  # absolute resource of the current model pruned so (measured on a pruned copy)

    @property
    def counts(self) -> dict[str, int]:
        """Units removed per layer (plan.race's candidates are whole plans)."""
        return {self.layer: self.removed}


@dataclass(frozen=True)
class CandidateOutcome:
    top1: float  # validation top-1 after the short fine-tune
    fetch: Callable[[], nn.Module]  # the pruned, fine-tuned model; lazy, so only the winner travels
    process: int = 0  # the Ray worker process that fine-tuned it (0: the trial's own process)


@dataclass(frozen=True)
class Step:
    index: int  # 1-based
    layer: str  # the winning candidate's layer
    removed: int  # units it removed in this step
    resource_keep: float  # resource of the model after this step / baseline resource
    top1: float  # the winner's validation top-1 after its short fine-tune
    candidates: int  # layers tried in the step
    task_processes: int  # Ray worker processes that fine-tuned them (0: the trial itself)


@dataclass
class NetAdaptResult:
    model: nn.Module
    removed: dict[str, int]  # cumulative units removed per layer of the original model (0: untouched)
    steps: list[Step]


# (current model, candidates) -> one outcome per candidate, in the same order
ShortTune = Callable[[nn.Module, list[Candidate]], list[CandidateOutcome]]


def short_tune_candidate(
    model: nn.Module,
    method: PruningMethod,
    candidate: Candidate,
    data: Dataset,
    recipe: TrainRecipe,
    calibration: Calibration,
    seed: int,
) -> tuple[float, nn.Module]:
    """(validation top-1, model) of a copy of `model` pruned as `candidate` says (its `counts`: one
    layer's for netadapt, a whole plan for the race) and fine-tuned for recipe.epochs (0: candidates
    are ranked by their accuracy right after pruning). Before fine-tuning, its BatchNorm statistics
    are re-estimated, as the trial's own fine-tune starts (prune.iterative.evaluate_pruned); with
    recipe.distill > 0 it distils from `model` as it was before this pruning, as the trial does."""
    pruned = method.prune(copy.deepcopy(model), candidate.counts, calibration)
    if recipe.epochs > 0:
        recalibrate_batchnorm(pruned, data.train_head(RECALIBRATION_EXAMPLES)[0])
    teacher = copy.deepcopy(model).requires_grad_(False) if recipe.distill > 0 else None
    train(pruned, data, recipe, seed=seed, validate=False, teacher=teacher)
    top1, _ = evaluate(pruned, data.val_x, data.val_y)
    return top1, pruned


def local_short_tune(
    method: PruningMethod, data: Dataset, recipe: TrainRecipe, calibration: Calibration, seed: int
) -> ShortTune:
    """Candidates fine-tuned one after another in this process (no Ray; tests, small models)."""

    def short_tune(model: nn.Module, candidates: list[Candidate]) -> list[CandidateOutcome]:
        outcomes = []
        for candidate in candidates:
            top1, tuned = short_tune_candidate(model, method, candidate, data, recipe, calibration, seed)
            outcomes.append(CandidateOutcome(top1, lambda tuned=tuned: tuned))
        return outcomes

    return short_tune


def _candidates(
    current: nn.Module, method: PruningMethod, example: torch.Tensor, metric: str, step_target: float,
    caps: dict[str, int], round_to: int = 1, table: LatencyTable | None = None,
) -> list[Candidate]:
    """Per layer, the fewest units that alone bring the resource to `step_target`; if no layer can,
    every layer at its cap (the largest single-layer cuts), so the resource still falls. With
    round_to, a candidate's layer keeps a multiple of round_to units (or all of them)."""
    resource_of = measured_resource_fn(current, method, example, metric, table)
    fitting, largest = [], []
    for layer in method.layers(current, example):
        if layer.name not in caps:
            raise RuntimeError(f"layer {layer.name!r} is not in the original model; netadapt needs stable layer names")
        at = lambda k, units=layer.units: rounded_removal(units, k, round_to)  # noqa: E731
        cap = at(caps[layer.name])
        if cap <= 0:
            continue
        at_cap = resource_of({layer.name: cap})
        largest.append(Candidate(layer.name, cap, at_cap))
        if at_cap <= step_target:  # removing 0 units misses the target (achieved > step_target)
            fits = lambda k, name=layer.name, at=at: resource_of({name: at(k)}) <= step_target  # noqa: E731
            fewest = at(_boundary(caps[layer.name], 0, fits))
            fitting.append(Candidate(layer.name, fewest, resource_of({layer.name: fewest})))
    return fitting or largest


def netadapt(
    model: nn.Module,
    method: PruningMethod,
    example: torch.Tensor,
    metric: str,
    budget: float,
    step_fraction: float,
    short_tune: ShortTune,
    on_step: Callable[[Step], None] = lambda step: None,
    round_to: int = 1,
    table: LatencyTable | None = None,
) -> NetAdaptResult:
    """Prune `model` to at most `budget` x its resource, step_fraction x the baseline per step (the
    last step lands on the budget), every layer keeping a multiple of round_to units (or all).
    `model` itself is never changed: candidates are pruned copies."""
    if method.granularity == "lowrank":
        raise ValueError(
            f"netadapt prunes a layer again and again, and {method.name!r} factorises (lowrank) once; "
            "allowed: unstructured and structured methods"
        )
    if not 0 < budget <= 1:
        raise ValueError(f"budget {budget} is outside (0, 1]")
    if not 0 < step_fraction < 1:
        raise ValueError(f"step_fraction {step_fraction} is outside (0, 1)")
    baseline = model_resource(model, example, metric, table)
    target = budget * baseline
    original_layers = method.layers(model, example)
    original = {layer.name: layer.units for layer in original_layers}
    # max_ratio is relative to the original layer, for masks and removed channels alike
    most = max_counts(original_layers, method.max_ratio)
    # fail before any fine-tuning: every layer at its cap is the smallest model netadapt can reach
    _check_reachable(measured_resource_fn(model, method, example, metric, table)(rounded(original_layers, most, round_to)),
                     target, method.max_ratio)
    removed = dict.fromkeys(original, 0)
    current, achieved, steps = model, baseline, []
    while achieved > target:
        step_target = max(target, achieved - step_fraction * baseline)
        caps = {name: most[name] - removed[name] for name in original}
        candidates = _candidates(current, method, example, metric, step_target, caps, round_to, table)
        if not candidates:
            raise BudgetUnreachableError(
                f"budget unreachable: every layer at max ratio {method.max_ratio} keeps {achieved / baseline:.4g} > {budget}"
            )
        outcomes = short_tune(current, candidates)
        if len(outcomes) != len(candidates):
            raise RuntimeError(f"short_tune returned {len(outcomes)} outcomes for {len(candidates)} candidates")
        winner, outcome = max(zip(candidates, outcomes), key=lambda pair: (pair[1].top1, -pair[0].resource))
        current = outcome.fetch()
        removed[winner.layer] += winner.removed
        previous, achieved = achieved, model_resource(current, example, metric, table)  # the real model, not the estimate
        if achieved >= previous:
            raise RuntimeError(f"step {len(steps) + 1} did not shrink the {metric}: {achieved:.6g} >= {previous:.6g}")
        processes = len({o.process for o in outcomes if o.process})
        step = Step(len(steps) + 1, winner.layer, winner.removed, achieved / baseline, outcome.top1, len(candidates), processes)
        on_step(step)
        steps.append(step)
    return NetAdaptResult(current, removed, steps)


# ---------------------------------------------------------------------------------------------
# The schedule entry

# the trial's runner of candidate short fine-tunes (its method, data and seed bound): recipe -> ShortTune
ShortTuneFactory = Callable[[TrainRecipe], ShortTune]


def _adapt(subject: Subject, budget: float, spec: SweepSpec, short_tunes: ShortTuneFactory) -> Adapted:
    # every candidate has new shapes: under compile auto its short fine-tune runs eager (a compile
    # per candidate costs more than its few hundred steps gain)
    compile = "off" if spec.finetune.compile == "auto" else spec.finetune.compile
    # distill 0: netadapt's fine-tunes, its candidates' and the trial's after it, do not distil
    recipe = dataclasses.replace(spec.finetune, epochs=spec.netadapt.short_epochs, warmup_epochs=0, compile=compile,
                                 distill=0.0)
    short_tune = short_tunes(recipe)
    result = netadapt(subject.model, subject.method, subject.example, subject.metric, budget,
                      spec.netadapt.step_fraction, short_tune, round_to=subject.round_to, table=subject.table)
    trace = [dataclasses.asdict(step) | {"step": step.index} for step in result.steps]
    for row in trace:
        row.pop("index")
    return Adapted(result.model, result.removed, trace,
                   search_epochs=sum(step.candidates for step in result.steps) * recipe.epochs)


def _validate(spec: SweepSpec) -> None:
    from ..prune import get_method

    for method in spec.methods:
        if get_method(method).granularity == "lowrank":
            raise ValueError(f"schedule 'netadapt' prunes a layer again and again; low-rank {method!r} cannot be re-factorised")
    if spec.iterative != "oneshot" or spec.search.screen_epochs:
        raise ValueError("schedule 'netadapt' does its own pruning steps: use iterative 'oneshot' and no screen_epochs")


def _extra_bundles(spec: SweepSpec) -> int:
    """Candidates fine-tuned at once run as Ray tasks in bundles of the trial's own placement group."""
    return spec.netadapt.parallel


def _fit_extra(spec: SweepSpec, extra_bundles: int) -> SweepSpec:
    return dataclasses.replace(spec, netadapt=dataclasses.replace(spec.netadapt, parallel=extra_bundles))


register_schedule(Schedule(
    "netadapt", "greedy steps, each pruning the one layer whose candidate loses least after a short fine-tune",
    "budget", adapt=_adapt, validate=_validate, extra_bundles=_extra_bundles, fit_extra=_fit_extra,
))
