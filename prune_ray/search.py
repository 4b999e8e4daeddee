"""Search over per-layer shape weights with Optuna, one study per (budget, method, seed) group.

Ray Tune sees one searcher. It interleaves the groups (sample 0 of every group, then sample 1, ...)
so partial sweeps cover every budget, and routes each trial's results to its own group's
OptunaSearch: trials of different budgets are never compared with each other.
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from typing import Callable, Mapping

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from .schedule import shape_key

SAMPLER_FACTORIES: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    # CMA-ES needs a few random trials to start from; it falls back to random sampling meanwhile
    "cmaes": lambda seed: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed),
    "qmc": lambda seed: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
}
METRIC, MODE = "top1", "max"
optuna.logging.set_verbosity(optuna.logging.WARNING)  # one "study created" line per group is noise


@dataclass(frozen=True)
class Group:
    """An operating point: trials of one group are compared with each other, never across."""

    budget: float | None  # fraction of the resource kept; None for fixed ratios
    method: str
    seed: int
    ratio: float | dict[str, float] | None = None  # fixed schedule: the ratio(s) to prune at
    prune_steps: int = 1


def shape_space(num_layers: int, min_weight: float) -> dict[str, optuna.distributions.FloatDistribution]:
    """One shape weight per prunable layer: how hard to prune it relative to the others."""
    return {shape_key(i): optuna.distributions.FloatDistribution(min_weight, 1.0) for i in range(num_layers)}


class GroupedSearcher(Searcher):
    def __init__(
        self,
        groups: list[Group],
        samples_per_group: int,
        spaces: Mapping[str, dict] | None,  # method -> Optuna space; None: no search
        sampler: str,
        shapes: Mapping[str, dict[str, float]] | None = None,  # method -> a given shape (first proposal
        # of each study when searching, the only shape otherwise)
        stage: str = "single",  # "screen" for the first stage of a two-stage search
    ):
        super().__init__(metric=METRIC, mode=MODE)
        self.stage = stage
        self._groups = list(groups)
        self._queue = [index for _ in range(samples_per_group) for index in range(len(groups))]
        self._issued = 0
        self._group_of: dict[str, int] = {}
        self._studies: list[OptunaSearch] | None = None
        self._shapes = dict(shapes or {})
        if spaces is not None:
            self._studies = [
                OptunaSearch(
                    space=spaces[group.method],
                    metric=METRIC,
                    mode=MODE,
                    # one study per group, seeded by the group's replicate seed and position
                    sampler=SAMPLER_FACTORIES[sampler](group.seed * 1000 + index),
                    points_to_evaluate=[self._shapes[group.method]] if group.method in self._shapes else None,
                )
                for index, group in enumerate(self._groups)
            ]

    def suggest(self, trial_id: str) -> dict | None:
        if self._issued >= len(self._queue):
            return Searcher.FINISHED
        index = self._queue[self._issued]
        self._issued += 1
        self._group_of[trial_id] = index
        group = self._groups[index]
        shape = self._studies[index].suggest(trial_id) if self._studies else self._shapes.get(group.method, {})
        return {"group": dataclasses.asdict(group), "shape": shape, "stage": self.stage}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self._studies and trial_id in self._group_of and result.get("status") != "failed":
            self._studies[self._group_of[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if not self._studies or trial_id not in self._group_of:
            return
        failed = error or not result or result.get("status") == "failed"
        # A failed trial is a FAIL in Optuna, not an accuracy of 0 that would mislead the sampler.
        self._studies[self._group_of[trial_id]].on_trial_complete(
            trial_id, result=None if failed else result, error=failed
        )

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__dict__, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(pickle.load(handle))
