"""Search with Optuna, one study per operating point, behind one Ray Tune searcher.

Ray Tune sees one searcher. It interleaves the operating points (sample 0 of every point, then sample 1, ...)
so partial sweeps cover every budget, and routes each trial's results to its own point's study:
trials of different budgets are never compared with each other. The studies live in Optuna's own
JournalStorage in the sweep directory (`<sweep>/optuna.journal`), so `--resume` continues them and
`optuna-dashboard <sweep>/optuna.journal` shows them.

An operating point without a budget (a frontier search, `budgets: []`) adds the kept fraction of the resource
to the searched space and gives Optuna two objectives, top-1 (max) and resource kept (min): a
multi-objective sampler (nsga2) then returns the non-dominated set directly.
"""

from __future__ import annotations

import math
import os
import pickle
import tempfile
import warnings
from typing import Callable, Mapping

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search import Searcher

from ..plan import Dimension
from ..points import OperatingPoint, Proposal, TrialConfig
from ..results.storage import Storage

# (seed, trials per point, the point's space) -> sampler
SamplerFactory = Callable[[int, int, Mapping[str, Dimension]], optuna.samplers.BaseSampler]
KEEP_PARAM = "keep"  # frontier searches: the Optuna parameter of the proposed kept fraction


def startup_trials(samples: int) -> int:
    """Random trials before a model-based sampler takes over. Optuna's 10 would leave a study of 10
    trials or fewer purely random (so TPE would equal random search); a third of the trials, 3 to 10."""
    return min(10, max(3, samples // 3))


def _cmaes(seed: int, samples: int, space: Mapping[str, Dimension]) -> optuna.samplers.CmaEsSampler:
    """CMA-ES from the centre of the space (for the searched schedule's symmetric ranges, theta = 0:
    the prior) with Optuna's step size of a sixth of each range, and a population small enough for
    a few generations within the study's trials."""
    popsize = max(4, min(4 + int(3 * math.log(max(len(space), 1))), samples // 3))
    return optuna.samplers.CmaEsSampler(popsize=popsize, seed=seed)


SAMPLER_FACTORIES: dict[str, SamplerFactory] = {
    # TPE modelling the layers' values jointly (multivariate; group: per set of parameters that co-occur)
    "tpe": lambda seed, samples, space: optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=startup_trials(samples), multivariate=True, group=True),
    "random": lambda seed, samples, space: optuna.samplers.RandomSampler(seed=seed),
    "cmaes": _cmaes,
    "gp": lambda seed, samples, space: optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(samples)),
    "qmc": lambda seed, samples, space: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
    # NSGA-II's default population of 50 would leave a small sweep in its random first generation;
    # a quarter of the trials per generation gives at least four generations
    "nsga2": lambda seed, samples, space: optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, samples // 4))),
}
# what the searcher and ASHA rank trials by: the search score (trial.search_score: validation top-1, or for a
# BatchNorm screen without fine-tuning the accuracy after recalibration), reported beside the plain top-1
METRIC, MODE = "search_score", "max"
JOURNAL = "optuna.journal"
optuna.logging.set_verbosity(optuna.logging.WARNING)  # one "study created" line per point is noise
# TPE's multivariate/group and the GP sampler are chosen knowingly: their "experimental" notes are noise
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def distributions(space: Mapping[str, Dimension]) -> dict[str, optuna.distributions.FloatDistribution]:
    return {name: optuna.distributions.FloatDistribution(d.low, d.high) for name, d in space.items()}


class StudyJournal:
    """`<sweep>/optuna.journal`. On a local or shared filesystem Optuna appends to it in place; on
    an object store (no appends) Optuna appends to a local copy that `sync` uploads whenever Tune
    checkpoints the searcher, and a resumed sweep downloads it first."""

    def __init__(self, storage: Storage, sweep: str):
        self.storage, self.sweep = storage, sweep
        self._file: str | None = None

    @property
    def file(self) -> str:
        if self._file is None:
            storage = self.storage
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
        storage = self.storage
        if not storage.is_local and self._file is not None:
            with open(self._file, "rb") as local:
                storage.write_bytes_atomic(storage.path(self.sweep, JOURNAL), local.read())

    def __getstate__(self) -> dict:
        return {"storage": self.storage, "sweep": self.sweep, "_file": None}  # a new process re-opens


class GroupedSearcher(Searcher):
    """One Optuna study per operating point behind one Tune searcher (see the module docstring)."""

    def __init__(
        self,
        points: list[OperatingPoint],
        samples_per_point: int,
        spaces: Mapping[str, Mapping[str, Dimension]] | None,  # method -> its space; None: no search
        sampler: str,
        stage: str = "single",  # "screen" for the first stage of a two-stage search
        journal: StudyJournal | None = None,  # None: studies in memory (tests)
        keep_range: tuple[float, float] = (0.1, 0.9),  # frontier points: kept fraction searched
    ):
        super().__init__(metric=METRIC, mode=MODE)
        self.stage = stage
        self._points = list(points)
        # without a search space a point's schedule is deterministic: one trial says all there is
        samples_per_point = samples_per_point if spaces is not None else 1
        self._queue = [index for _ in range(samples_per_point) for index in range(len(points))]
        self.total = len(self._queue)  # trials Tune should run
        self._issued = 0
        self._point_of: dict[str, int] = {}  # Tune trial id -> index of its operating point
        self._number_of: dict[str, int] = {}  # Tune trial id -> Optuna trial number in its point's study
        self._spaces = dict(spaces) if spaces is not None else None
        self._journal = journal
        self._keep_range = keep_range
        # one sampler per point, seeded by the point's replicate seed and position; pickled with the
        # searcher so a resumed sweep continues their random streams
        self._samplers = [SAMPLER_FACTORIES[sampler](p.seed * 1000 + i, samples_per_point, self.space(i) if spaces else {})
                          for i, p in enumerate(points)]
        self._open: dict[int, optuna.Study] = {}

    def space(self, index: int) -> dict[str, Dimension]:
        point = self._points[index]
        space = dict(self._spaces[point.method])
        if point.frontier:
            space[KEEP_PARAM] = Dimension(*self._keep_range)
        return space

    def first_values(self, index: int) -> dict[str, float]:
        """The study's first proposal: every dimension's start ({}: none)."""
        return {name: d.start for name, d in self.space(index).items() if d.start is not None}

    def study(self, index: int) -> optuna.Study:
        """The point's study, created in (or re-opened from) the journal on first use."""
        if index not in self._open:
            point = self._points[index]
            study = optuna.create_study(
                storage=self._journal.optuna_storage() if self._journal else None,
                study_name=f"{point.study_name}-{self.stage}",
                sampler=self._samplers[index],
                directions=["maximize", "minimize"] if point.frontier else ["maximize"],
                load_if_exists=True,
            )
            if not study.trials and self.first_values(index):  # becomes the study's trial 0
                study.enqueue_trial(self.first_values(index))
            # Trials the journal holds as running but no Tune trial owns were cut off by a driver
            # crash before Tune checkpointed them; Tune proposes afresh, so they failed.
            owned = {n for tid, n in self._number_of.items() if self._point_of[tid] == index}
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
        self._point_of[trial_id] = index
        point = self._points[index]
        if self._spaces is None:
            proposal = Proposal()
        else:
            trial = self.study(index).ask(distributions(self.space(index)))
            self._number_of[trial_id] = trial.number
            values = dict(trial.params)
            keep = values.pop(KEEP_PARAM, None)
            proposal = Proposal(values, keep, first=trial.number == 0 and bool(self.first_values(index)))
        return {"trial": TrialConfig(point, proposal, self.stage)}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Per-epoch accuracy as Optuna intermediate values (single objective only)."""
        if trial_id not in self._number_of or "epoch" not in result or self._points[self._point_of[trial_id]].frontier:
            return
        study = self.study(self._point_of[trial_id])
        frozen = study.get_trials(deepcopy=False)[self._number_of[trial_id]]
        if frozen.state == TrialState.RUNNING and result["epoch"] not in frozen.intermediate_values:
            optuna.trial.Trial(study, frozen._trial_id).report(result[METRIC], result["epoch"])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self._number_of:
            return
        index, number = self._point_of[trial_id], self._number_of[trial_id]
        study = self.study(index)
        if study.get_trials(deepcopy=False)[number].state != TrialState.RUNNING:
            return  # told before a driver crash, rerun after the resume: the first answer stands
        status = (result or {}).get("status")
        if error or status in (None, "failed"):
            # A failed trial is a FAIL in Optuna, not an accuracy of 0 that would mislead the sampler.
            study.tell(number, state=TrialState.FAIL)
        elif status == "running":  # stopped early by the scheduler after an epoch report
            study.tell(number, state=TrialState.PRUNED)
        elif self._points[index].frontier:
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
