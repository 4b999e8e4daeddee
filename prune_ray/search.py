"""Search over per-layer shape weights with Optuna, one study per operating point, and early
stopping that compares only trials of the same operating point.

Ray Tune sees one searcher. It interleaves the groups (sample 0 of every group, then sample 1, ...)
so partial sweeps cover every budget, and routes each trial's results to its own group's study:
trials of different budgets are never compared with each other. The studies live in Optuna's own
JournalStorage in the sweep directory (`<sweep>/optuna.journal`), so `--resume` continues them and
`optuna-dashboard <sweep>/optuna.journal` shows them.

A group without a budget (a frontier search, `budgets: []`) adds the kept fraction of the resource
to the searched space and gives Optuna two objectives, top-1 (max) and resource kept (min): a
multi-objective sampler (nsga2) then returns the non-dominated set directly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import tempfile
from dataclasses import dataclass
from typing import Callable, Mapping

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler
from ray.tune.search import Searcher

from .data import load_dataset
from .schedule import KEEP_KEY, shape_key
from .spec import SpecError, SweepSpec
from .storage import open_storage

SamplerFactory = Callable[[int, int], optuna.samplers.BaseSampler]  # (seed, trials per group) -> sampler

def startup_trials(samples: int) -> int:
    """Random trials before a model-based sampler takes over. Optuna's 10 would leave a study of 10
    trials or fewer purely random (so TPE would equal random search); a third of the trials, 3 to 10."""
    return min(10, max(3, samples // 3))


SAMPLER_FACTORIES: dict[str, SamplerFactory] = {
    "tpe": lambda seed, samples: optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(samples)),
    "random": lambda seed, samples: optuna.samplers.RandomSampler(seed=seed),
    # CMA-ES needs a few random trials to start from; it falls back to random sampling meanwhile
    "cmaes": lambda seed, samples: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
    "gp": lambda seed, samples: optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(samples)),
    "qmc": lambda seed, samples: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
    # NSGA-II's default population of 50 would leave a small sweep in its random first generation;
    # a quarter of the trials per generation gives at least four generations
    "nsga2": lambda seed, samples: optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, samples // 4))),
}
METRIC, MODE = "top1", "max"
JOURNAL = "optuna.journal"
optuna.logging.set_verbosity(optuna.logging.WARNING)  # one "study created" line per group is noise


@dataclass(frozen=True)
class Group:
    """An operating point: trials of one group are compared with each other, never across."""

    budget: float | None  # fraction of the resource kept; None for fixed ratios and frontier searches
    method: str
    seed: int
    ratio: float | dict[str, float] | None = None  # fixed schedule: the ratio(s) to prune at
    prune_steps: int = 1

    @property
    def frontier(self) -> bool:
        """No budget and no ratio: the search proposes the kept fraction itself."""
        return self.budget is None and self.ratio is None

    @property
    def study_name(self) -> str:
        point = f"ratio{json.dumps(self.ratio, sort_keys=True)}" if self.ratio is not None else (
            "frontier" if self.budget is None else f"budget{self.budget:g}")
        return f"{self.method}-{point}-steps{self.prune_steps}-seed{self.seed}"


def group_key(config: Mapping) -> str:
    """The operating point of a trial config (first- or second-stage), as a string."""
    config = config.get("trial", config)
    return json.dumps([config["group"], config.get("stage")], sort_keys=True)


def shape_space(num_layers: int, min_weight: float) -> dict[str, optuna.distributions.FloatDistribution]:
    """One shape weight per prunable layer: how hard to prune it relative to the others."""
    return {shape_key(i): optuna.distributions.FloatDistribution(min_weight, 1.0) for i in range(num_layers)}


def search_spaces(spec: SweepSpec) -> dict[str, dict]:
    """Per method, one shape weight per prunable layer of the spec's model on the spec's data.
    Building the model here also rejects a model that cannot take the dataset, before Ray starts."""
    from .baseline import build_model
    from .prune import UnsupportedModelError, get_method, ratios_to_counts
    from .schedule import searched_dimensions, unit_scores
    from .trial import baseline_config

    data = load_dataset(spec.dataset, spec.data)
    try:
        probe = build_model(baseline_config(spec, spec.seeds[0]), data)
        example = data.example_inputs(1)
        layers = {method: get_method(method).layers(probe, example) for method in spec.methods}
    except UnsupportedModelError as error:
        raise SpecError(str(error)) from None
    except (ValueError, RuntimeError) as error:
        raise SpecError(f"model {spec.model!r} cannot run on dataset {spec.dataset!r}: {error}") from None
    for index, entry in enumerate(spec.fixed_ratios):
        for method, found in layers.items():
            try:
                ratios_to_counts(entry, found, get_method(method).max_ratio)
            except ValueError as error:
                raise SpecError(f"fixed_ratios[{index}] for {method!r}: {error}") from None
    if spec.schedule == "global":
        for method, found in layers.items():
            try:
                unit_scores(probe, get_method(method), found)
            except ValueError as error:
                raise SpecError(str(error)) from None
    return {
        method: shape_space(searched_dimensions(spec.schedule, found), spec.search.min_shape_weight)
        for method, found in layers.items()
    }


class StudyJournal:
    """`<sweep>/optuna.journal`. On a local or shared filesystem Optuna appends to it in place; on
    an object store (no appends) Optuna appends to a local copy that `sync` uploads whenever Tune
    checkpoints the searcher, and a resumed sweep downloads it first."""

    def __init__(self, storage_uri: str, sweep: str):
        self.storage_uri, self.sweep = storage_uri, sweep
        self._file: str | None = None

    @property
    def file(self) -> str:
        if self._file is None:
            storage = open_storage(self.storage_uri)
            path = storage.path(self.sweep, JOURNAL)
            if storage.is_local:
                storage.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
                self._file = path
            else:
                handle, self._file = tempfile.mkstemp(prefix="prune-ray-", suffix=f"-{JOURNAL}")
                os.close(handle)
                with open(self._file, "wb") as local:
                    local.write(storage.read_bytes(path) if storage.exists(path) else b"")
        return self._file

    def optuna_storage(self) -> JournalStorage:
        return JournalStorage(JournalFileBackend(self.file))

    def sync(self) -> None:
        storage = open_storage(self.storage_uri)
        if not storage.is_local and self._file is not None:
            with open(self._file, "rb") as local:
                storage.write_bytes_atomic(storage.path(self.sweep, JOURNAL), local.read())

    def __getstate__(self) -> dict:
        return {"storage_uri": self.storage_uri, "sweep": self.sweep, "_file": None}  # a new process re-opens


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
        journal: StudyJournal | None = None,  # None: studies in memory (tests)
        keep_range: tuple[float, float] = (0.1, 0.9),  # frontier groups: kept fraction searched
    ):
        super().__init__(metric=METRIC, mode=MODE)
        self.stage = stage
        self._groups = list(groups)
        # without a search space a group's schedule is deterministic: one trial says all there is
        samples_per_group = samples_per_group if spaces is not None else 1
        self._queue = [index for _ in range(samples_per_group) for index in range(len(groups))]
        self.total = len(self._queue)  # trials Tune should run
        self._issued = 0
        self._group_of: dict[str, int] = {}
        self._number_of: dict[str, int] = {}  # Tune trial id -> Optuna trial number in its group's study
        self._spaces = dict(spaces) if spaces is not None else None
        self._shapes = dict(shapes or {})
        self._journal = journal
        self._keep_range = keep_range
        # one sampler per group, seeded by the group's replicate seed and position; pickled with the
        # searcher so a resumed sweep continues their random streams
        self._samplers = [SAMPLER_FACTORIES[sampler](g.seed * 1000 + i, samples_per_group) for i, g in enumerate(groups)]
        self._open: dict[int, optuna.Study] = {}

    def space(self, index: int) -> dict:
        group = self._groups[index]
        space = dict(self._spaces[group.method])
        if group.frontier:
            space[KEEP_KEY] = optuna.distributions.FloatDistribution(*self._keep_range)
        return space

    def study(self, index: int) -> optuna.Study:
        """The group's study, created in (or re-opened from) the journal on first use."""
        if index not in self._open:
            group = self._groups[index]
            study = optuna.create_study(
                storage=self._journal.optuna_storage() if self._journal else None,
                study_name=f"{group.study_name}-{self.stage}",
                sampler=self._samplers[index],
                directions=["maximize", "minimize"] if group.frontier else ["maximize"],
                load_if_exists=True,
            )
            if not study.trials and group.method in self._shapes:
                study.enqueue_trial(self._shapes[group.method])
            # Trials the journal holds as running but no Tune trial owns were cut off by a driver
            # crash before Tune checkpointed them; Tune proposes afresh, so they failed.
            owned = {n for tid, n in self._number_of.items() if self._group_of[tid] == index}
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if trial.number not in owned:
                    study.tell(trial.number, state=TrialState.FAIL)
            self._open[index] = study
        return self._open[index]

    def suggest(self, trial_id: str) -> dict | None:
        if self._issued >= len(self._queue):
            return Searcher.FINISHED
        index = self._queue[self._issued]
        self._issued += 1
        self._group_of[trial_id] = index
        group = self._groups[index]
        if self._spaces is None:
            shape = self._shapes.get(group.method, {})
        else:
            trial = self.study(index).ask(self.space(index))
            self._number_of[trial_id] = trial.number
            shape = trial.params
        return {"group": dataclasses.asdict(group), "shape": shape, "stage": self.stage}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Per-epoch accuracy as Optuna intermediate values (single objective only)."""
        if trial_id not in self._number_of or "epoch" not in result or self._groups[self._group_of[trial_id]].frontier:
            return
        study = self.study(self._group_of[trial_id])
        frozen = study.get_trials(deepcopy=False)[self._number_of[trial_id]]
        if frozen.state == TrialState.RUNNING and result["epoch"] not in frozen.intermediate_values:
            optuna.trial.Trial(study, frozen._trial_id).report(result[METRIC], result["epoch"])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self._number_of:
            return
        index, number = self._group_of[trial_id], self._number_of[trial_id]
        study = self.study(index)
        if study.get_trials(deepcopy=False)[number].state != TrialState.RUNNING:
            return  # told before a driver crash, rerun after the resume: the first answer stands
        status = (result or {}).get("status")
        if error or status in (None, "failed"):
            # A failed trial is a FAIL in Optuna, not an accuracy of 0 that would mislead the sampler.
            study.tell(number, state=TrialState.FAIL)
        elif status == "running":  # stopped early by the scheduler after an epoch report
            study.tell(number, state=TrialState.PRUNED)
        elif self._groups[index].frontier:
            study.tell(number, [result[METRIC], result["resource_keep"]])
        else:
            study.tell(number, result[METRIC])

    def save(self, checkpoint_path: str) -> None:
        if self._journal:
            self._journal.sync()
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__getstate__(), handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.__setstate__(pickle.load(handle))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}  # studies re-open from the journal

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class GroupedASHA(FIFOScheduler):
    """ASHA (Li et al. 2020) per operating point: a trial at epoch e is compared only with trials
    of its own group at epoch e, never a 0.3-budget trial with 0.7-budget ones. A trial's last
    epoch is never cut (Ray's ASHA puts a rung at max_t when max_t = grace x 3^k), so a trial
    that fine-tuned to the end always writes its row."""

    def __init__(self, stage_epochs: int, grace_epochs: int, per_prune_step: bool = False, reduction_factor: int = 3):
        super().__init__()
        self._metric, self._mode = METRIC, MODE
        # cycles fine-tune stage_epochs per pruning step, so groups of more steps run longer
        self._stage_epochs, self._per_prune_step = stage_epochs, per_prune_step
        self._settings = dict(
            time_attr="epoch", metric=METRIC, mode=MODE, grace_period=grace_epochs,
            reduction_factor=reduction_factor, brackets=1, stop_last_trials=False,
        )
        self._by_group: dict[str, AsyncHyperBandScheduler] = {}

    def last_epoch(self, trial) -> int:
        steps = trial.config.get("trial", trial.config)["group"].get("prune_steps", 1)
        return self._stage_epochs * (steps if self._per_prune_step else 1)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        return metric in (None, METRIC) and mode in (None, MODE)

    def _asha(self, trial) -> AsyncHyperBandScheduler:
        key = group_key(trial.config)
        if key not in self._by_group:
            self._by_group[key] = AsyncHyperBandScheduler(max_t=self.last_epoch(trial), **self._settings)
        return self._by_group[key]

    def on_trial_add(self, tune_controller, trial) -> None:
        self._asha(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        asha = self._asha(trial)
        if trial.trial_id not in asha._trial_info:  # a trial restored by --resume was never added
            asha.on_trial_add(tune_controller, trial)
        decision = asha.on_trial_result(tune_controller, trial, result)
        return self.CONTINUE if result.get("epoch", 0) >= self.last_epoch(trial) else decision

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        asha = self._asha(trial)
        if "epoch" in result:  # the final report (no epoch) was already judged at its rungs
            asha.on_trial_complete(tune_controller, trial, result)
        asha._trial_info.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._asha(trial)._trial_info.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return f"ASHA per operating point: {len(self._by_group)} groups"

