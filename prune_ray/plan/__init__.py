"""Plan: how many units each layer of a model loses — the schedule registry (`@register_schedule`).

A schedule is one entry. It declares what an operating point gives it (`takes`: a budget, or the
spec's fixed ratios), whether a search proposes values for it (`space`), what it checks before
Ray starts, the extra resources a trial of it holds, and how it plans:

- `plan`: a one-shot allocation, units removed per layer; the trial then prunes the baseline with
  the method (once, or in cycles/agp steps) and fine-tunes it;
- `adapt`: a schedule that prunes step by step itself (netadapt) and hands back the pruned model,
  which the trial then fine-tunes.

The built-in entries live in `schedules.py` (one-shot) and `netadapt.py`; no module outside an
entry branches on a schedule's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

import torch
import torch.nn as nn

from ..prune import Layer, PruningMethod
from ..registry import Registry
from .budget import ResourceFn, measured_resource_fn
from .latency import LatencyTable

from ..spec_types import PlanOptions, SweepSpec

if TYPE_CHECKING:
    from .proxy import Scorer

TAKES = ("budget", "ratios")


@dataclass(frozen=True)
class Proposal:
    """One trial's proposal. `values`: one per searched dimension of the schedule's space; empty for
    schedules without one. `keep`: the
    kept fraction a frontier search proposed (None when the operating point has a budget). `first`:
    the study's trial 0 (the searched schedule's prior itself, theta = 0), which a two-stage search
    always carries into its final stage."""

    values: Mapping[str, float] = field(default_factory=dict)
    keep: float | None = None
    first: bool = False


@dataclass(frozen=True)
class Dimension:
    """One searched value of a proposal: its range and, optionally, the value of the first proposal."""

    low: float
    high: float
    start: float | None = None  # every dimension has one: the study's trial 0 proposes them


@dataclass(frozen=True)
class Subject:
    """What a plan is made for; these travel together through planning and pruning."""

    model: nn.Module  # the baseline, never changed by planning (plans are measured on pruned copies)
    method: PruningMethod
    layers: list[Layer]  # method.layers(model, example)
    example: torch.Tensor  # one input example: traced by torch-pruning, counted for MACs
    metric: str  # the budgeted resource: "params" (nonzero), "macs" or "latency" (ms, predicted by `table`)
    baseline_resource: float | None  # that resource of `model` (None: not known before the trial, a latency probed in preflight)
    round_to: int = 1  # every layer keeps a multiple of this many units, or all (prune.round_to)
    table: LatencyTable | None = None  # metric "latency": the model's latency lookup table
    scorer: "Scorer | None" = None  # the proxy (plan.proxy) on the trial's data: knapsack's curves, race's first round

    def resource_fn(self) -> ResourceFn:
        """Resource of the model pruned with given counts, measured on a pruned copy."""
        return measured_resource_fn(self.model, self.method, self.example, self.metric, self.table)


@dataclass(frozen=True)
class Adapted:
    """What an adapting schedule hands back: the pruned model, the units it removed per layer of the
    original model, and one trace row per step (written to <sweep>/<schedule>/<trial_id>.parquet)."""

    model: nn.Module
    removed: dict[str, int]
    trace: list[dict]
    # the model is already fine-tuned for the trial's full epochs (a race's final round): the trial
    # only evaluates it; False: the trial fine-tunes it (netadapt)
    finetuned: bool = False
    search_epochs: int = 0  # fine-tuning epochs spent before the trial's own (candidates, rounds; summed)


# (subject, the point's budget or ratio(s), the proposal, options) -> units removed per layer
PlanFn = Callable[["Subject", "float | Mapping[str, float]", Proposal, PlanOptions], dict[str, int]]
# (subject, budget, spec, runner of candidate short fine-tunes) -> the pruned model
AdaptFn = Callable[["Subject", float, "SweepSpec", Callable], Adapted]


def _no_check(spec: SweepSpec, subject: Subject) -> None:
    return None


def _no_validation(spec: SweepSpec) -> None:
    return None


def _no_extra(spec: SweepSpec) -> int:
    return 0


def _unchanged(spec: SweepSpec, extra_bundles: int) -> SweepSpec:
    return spec


@dataclass(frozen=True)
class Schedule:
    name: str
    summary: str  # one line: what it allocates and how (README, errors)
    takes: str  # "budget": each operating point is a budget; "ratios": the spec's fixed_ratios
    plan: PlanFn | None = None  # one-shot allocation; exactly one of plan and adapt is set
    adapt: AdaptFn | None = None  # prunes step by step with short fine-tunes, then the trial fine-tunes
    # searched schedules: the values a search proposes per trial for this subject; None: not searched
    space: Callable[[Subject, PlanOptions], dict[str, Dimension]] | None = None
    check: Callable[[SweepSpec, Subject], None] = _no_check  # before Ray starts; ValueError: cannot plan
    validate: Callable[[SweepSpec], None] = _no_validation  # spec-level checks; ValueError: bad spec
    extra_bundles: Callable[[SweepSpec], int] = _no_extra  # resource bundles beside the trial's own
    # the spec with `extra_bundles` reduced to what a local machine holds (never called with 0 extra)
    fit_extra: Callable[[SweepSpec, int], SweepSpec] = _unchanged

    @property
    def has_search_space(self) -> bool:
        """A search proposes values for this schedule (the schedule `searched`, layer_type, ...)."""
        return self.space is not None


_SCHEDULES: Registry[Schedule] = Registry("schedule")


def register_schedule(schedule: Schedule) -> Schedule:
    if schedule.takes not in TAKES:
        raise ValueError(f"schedule {schedule.name!r}: takes {schedule.takes!r}; allowed: {', '.join(TAKES)}")
    if (schedule.plan is None) == (schedule.adapt is None):
        raise ValueError(f"schedule {schedule.name!r}: give exactly one of plan and adapt")
    _SCHEDULES.add(schedule.name, schedule)
    return schedule


def list_schedules() -> list[str]:
    return _SCHEDULES.names()


def get_schedule(name: str) -> Schedule:
    return _SCHEDULES.get(name)


def one_shot_allocations() -> list[str]:
    """Schedules that allocate a budget in one plan and search nothing: what the race's portfolio
    and the searched schedule's prior may name (a new allocation joins both by being registered)."""
    return [name for name in list_schedules() if (entry := get_schedule(name)).takes == "budget"
            and entry.plan is not None and not entry.has_search_space]


def plan_removal(schedule: str, subject: Subject, point: float | Mapping[str, float], proposal: Proposal = Proposal(),
                 options: PlanOptions = PlanOptions()) -> dict[str, int]:
    """Units to remove per layer for one trial of a one-shot schedule. `point` is the fixed
    schedule's ratio(s), and every other schedule's budget (fraction of the resource kept)."""
    entry = get_schedule(schedule)
    if entry.plan is None:
        raise ValueError(f"schedule {schedule!r} prunes step by step with fine-tuning ({entry.summary}), not in one plan")
    return entry.plan(subject, point, proposal, options)


from . import allocations, knapsack, netadapt, race, schedules, searched  # noqa: E402,F401  (registers the built-in schedules)
