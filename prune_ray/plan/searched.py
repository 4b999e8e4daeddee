"""The `searched` schedule: a strong one-shot prior, searched around in log space.

Per layer, kept fraction = the prior's kept fraction x exp(theta_i), theta_i in
[-search.log_range, search.log_range], projected onto the budget by one monotone scale in log space
with each layer clamped to [its minimum density, 1] (plan.densities). The prior is `search.prior` (auto:
the strongest one-shot allocation for the method's granularity, as measured by
benchmarks/search_quality.py). Trial 0 of every study is theta = 0, the prior itself, so a search
never reports less than its prior on validation.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from . import Dimension, PlanOptions, Proposal, Schedule, Subject, get_schedule, one_shot_allocations, register_schedule
from .densities import densities_of, project_densities

if TYPE_CHECKING:
    from ..spec_types import SweepSpec

# search.prior: auto -> per granularity (benchmarks/search_quality.py decides)
AUTO_PRIOR = {"unstructured": "lamp", "structured": "global", "lowrank": "uniform"}


def priors() -> list[str]:
    """What search.prior may name: auto, or any one-shot allocation in the schedule registry."""
    return ["auto", *one_shot_allocations()]


def theta_key(index: int) -> str:
    """Name of layer `index`'s log-multiplier in a proposal."""
    return f"t{index:03d}"


def prior_name(options: PlanOptions, granularity: str) -> str:
    return AUTO_PRIOR[granularity] if options.prior == "auto" else options.prior


def _space(subject: Subject, options: PlanOptions) -> dict[str, Dimension]:
    bound = options.log_range
    return {theta_key(i): Dimension(-bound, bound, start=0.0) for i in range(len(subject.layers))}


def _plan(subject: Subject, budget: float, proposal: Proposal, options: PlanOptions) -> dict[str, int]:
    prior = get_schedule(prior_name(options, subject.method.granularity))
    prior_removed = prior.plan(subject, budget, Proposal(), options)
    thetas = [float(proposal.values.get(theta_key(i), 0.0)) for i in range(len(subject.layers))]
    if all(theta == 0.0 for theta in thetas):
        return prior_removed  # the prior itself, exactly
    prior_densities = densities_of(subject.layers, prior_removed)
    # a layer the prior emptied to its cap keeps 1 - max_ratio > 0: the log scale stays finite
    densities = {layer.name: max(prior_densities[layer.name], 1 - subject.method.max_ratio) * math.exp(theta)
                 for layer, theta in zip(subject.layers, thetas)}
    return project_densities(subject.layers, densities, subject.resource_fn(), budget * subject.baseline_resource,
                             max_ratio=subject.method.max_ratio, round_to=subject.round_to).removed


def _check(spec: SweepSpec, subject: Subject) -> None:
    options = spec.search
    name = prior_name(options, subject.method.granularity)
    prior = get_schedule(name)  # one of priors(): _validate checked search.prior, a test AUTO_PRIOR
    try:
        prior.check(spec, subject)
    except ValueError as error:
        raise ValueError(f"search.prior {name!r} cannot serve method {subject.method.name!r}: {error}") from None


def _validate(spec: SweepSpec) -> None:
    if spec.search.prior not in priors():
        raise ValueError(f"search.prior: unknown value {spec.search.prior!r}; allowed: {', '.join(priors())}")
    if not 0 < spec.search.log_range <= 5:
        raise ValueError(f"search.log_range: {spec.search.log_range!r} must be in (0, 5] (theta_i in [-range, range])")


register_schedule(Schedule(
    "searched", "per-layer log-multipliers of a one-shot prior's kept fractions, searched by Optuna, projected onto the budget",
    "budget", plan=_plan, space=_space, check=_check, validate=_validate,
))
