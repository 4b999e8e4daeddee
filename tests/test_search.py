"""The searcher and scheduler Tune drives: one Optuna study per operating point in a journal, real
samplers, ASHA per operating point."""

from types import SimpleNamespace

import numpy as np
import optuna
import pyarrow.fs as pafs
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.search import Searcher

from prune_ray.points import OperatingPoint, TrialConfig, operating_points
from prune_ray.results.frontier import non_dominated
from prune_ray.results.storage import Storage, open_storage
from prune_ray.spec import SAMPLERS, SweepSpec, with_overrides
from prune_ray.tune.asha import GroupedASHA
from prune_ray.tune.cluster import fit_to_local_machine
from prune_ray.tune.run import choose_finalists
from prune_ray.plan import Dimension, Proposal
from prune_ray.plan.schedules import shape_key
from prune_ray.tune.search import SAMPLER_FACTORIES, GroupedSearcher, StudyJournal, distributions


def shape_space(num_layers: int, min_weight: float) -> dict[str, Dimension]:
    """One shape weight per layer in [min_weight, 1], as layer_type's space is built."""
    return {shape_key(i): Dimension(min_weight, 1.0) for i in range(num_layers)}


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_proposes_weights_inside_the_space(sampler):
    space = shape_space(4, 0.05)
    study = optuna.create_study(direction="maximize", sampler=SAMPLER_FACTORIES[sampler](0, 5, space))
    for _ in range(5):
        trial = study.ask(distributions(space))
        assert set(trial.params) == {"w000", "w001", "w002", "w003"}
        assert all(0.05 <= value <= 1.0 for value in trial.params.values())
        study.tell(trial, sum(trial.params.values()))
    assert len(study.trials) == 5


def test_points_interleave_and_each_keeps_its_own_study(tmp_path):
    points = [OperatingPoint(0.5, "magnitude", 0), OperatingPoint(0.3, "magnitude", 0)]
    journal = StudyJournal(open_storage(str(tmp_path)), "s")
    searcher = GroupedSearcher(points, 3, {"magnitude": shape_space(3, 0.05)}, "tpe", journal=journal)
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    assert [c["trial"].point.budget for c in configs] == [0.5, 0.3, 0.5, 0.3, 0.5, 0.3]  # every budget early
    assert searcher.suggest("t6") == Searcher.FINISHED
    searcher.on_trial_result("t0", {"search_score": 0.7, "epoch": 1, "status": "running"})
    searcher.on_trial_complete("t0", {"search_score": 0.9, "status": "ok"})
    searcher.on_trial_complete("t1", {"search_score": 0.0, "status": "failed"})
    searcher.on_trial_result("t3", {"search_score": 0.2, "epoch": 1, "status": "running"})
    searcher.on_trial_complete("t3", {"search_score": 0.2, "epoch": 1, "status": "running"})  # stopped by ASHA
    # the studies are in Optuna's journal file, where optuna-dashboard reads them
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "s" / "optuna.journal")))
    first = optuna.load_study(study_name="magnitude-budget0.5-steps1-seed0-single", storage=storage)
    second = optuna.load_study(study_name="magnitude-budget0.3-steps1-seed0-single", storage=storage)
    states = lambda s: [t.state.name for t in s.trials]  # noqa: E731
    assert not any(c["trial"].proposal.first for c in configs)  # a space without starts has no prior
    assert states(first) == ["COMPLETE", "RUNNING", "RUNNING"] and first.best_value == 0.9
    assert first.trials[0].intermediate_values == {1: 0.7}
    # a failed trial is no accuracy of 0 to Optuna; a stopped one is pruned at its last epoch
    assert states(second) == ["FAIL", "PRUNED", "RUNNING"] and second.trials[1].intermediate_values == {1: 0.2}


def test_a_restored_searcher_continues_its_studies_and_fails_orphans(tmp_path):
    """--resume: Tune restores the searcher from its checkpoint; the studies continue from the
    journal, and a trial proposed after the checkpoint (lost with the driver) becomes FAIL."""
    points = [OperatingPoint(0.5, "l1_filter", 0)]
    searcher = GroupedSearcher(points, 4, {"l1_filter": shape_space(2, 0.05)}, "tpe", journal=StudyJournal(open_storage(str(tmp_path)), "s"))
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"search_score": 0.8, "status": "ok"})
    searcher.suggest("b")
    searcher.save(str(tmp_path / "checkpoint.pkl"))
    searcher.suggest("c")  # the driver dies before Tune checkpoints again: c is an orphan
    restored = GroupedSearcher([], 1, {}, "tpe")
    restored.restore(str(tmp_path / "checkpoint.pkl"))
    third = restored.suggest("c2")
    restored.on_trial_complete("b", {"search_score": 0.6, "status": "ok"})
    restored.on_trial_complete("c2", {"search_score": 0.7, "status": "ok"})
    study = restored.study(0)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert [t.value for t in study.trials if t.value is not None] == [0.8, 0.6, 0.7]
    assert study.trials[3].params == third["trial"].proposal.values
    restored.on_trial_complete("b", {"search_score": 0.1, "status": "ok"})  # Tune reran b after the resume
    assert study.trials[1].value == 0.6  # the first answer stands


def test_a_frontier_point_searches_the_kept_fraction_against_accuracy(tmp_path):
    searcher = GroupedSearcher(
        [OperatingPoint(None, "l1_filter", 0)], 8, {"l1_filter": shape_space(2, 0.05)}, "nsga2", keep_range=(0.2, 0.8)
    )
    for index in range(8):
        proposal = searcher.suggest(f"t{index}")["trial"].proposal
        assert 0.2 <= proposal.keep <= 0.8
        # an accuracy that grows with the kept fraction, with a penalty on one layer's weight
        searcher.on_trial_complete(f"t{index}", {"search_score": proposal.keep - proposal.values["w000"] / 4,
                                                 "resource_keep": proposal.keep, "status": "ok"})
    study = searcher.study(0)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    values = np.array([t.values for t in study.trials])
    front = {t.number for t in study.best_trials}
    assert front == set(np.flatnonzero(non_dominated(values[:, 1], values[:, 0])))


def test_asha_compares_a_trial_only_with_its_own_budget():
    def trial(name, budget):
        return SimpleNamespace(trial_id=name, config={"trial": TrialConfig(OperatingPoint(budget, "l1_filter", 0))})

    strong, weak, weaker = trial("strong", 0.9), trial("weak", 0.1), trial("weaker", 0.1)
    shared = AsyncHyperBandScheduler(time_attr="epoch", metric="search_score", mode="max", max_t=9, grace_period=1,
                                     reduction_factor=3, brackets=1, stop_last_trials=False)
    grouped = GroupedASHA(9, grace_epochs=1)
    decisions = {}
    for name, scheduler in (("shared", shared), ("grouped", grouped)):
        for each in (strong, weak, weaker):
            scheduler.on_trial_add(None, each)
        scheduler.on_trial_result(None, strong, {"epoch": 1, "search_score": 0.95})
        decisions[name] = [scheduler.on_trial_result(None, each, {"epoch": 1, "search_score": top1}) for each, top1 in ((weak, 0.5), (weaker, 0.2))]
    assert decisions["shared"] == ["STOP", "STOP"]  # one ASHA for all budgets cuts the 0.1 budget's trials
    assert decisions["grouped"] == ["CONTINUE", "STOP"]  # per budget: only the weaker 0.1 trial goes


def test_operating_points_cross_budgets_methods_steps_and_seeds():
    spec = with_overrides(SweepSpec(), budgets=(0.5, 0.3), seeds=(0, 1, 2))
    points = operating_points(spec)
    assert len(points) == 2 * 2 * 1 * 3
    assert {(p.budget, p.method, p.seed) for p in points} == {
        (b, m, s) for b in (0.5, 0.3) for m in ("magnitude", "l1_filter") for s in (0, 1, 2)
    }
    fixed = operating_points(with_overrides(SweepSpec(), schedule="fixed", fixed_ratios=(0.3, 0.6)))
    assert {(p.budget, p.ratio) for p in fixed} == {(None, 0.3), (None, 0.6)}


def test_on_object_storage_the_journal_is_uploaded_at_checkpoints_and_read_back_on_resume(tmp_path):
    """s3:// and gs:// take no appends: Optuna appends to a local copy, which every Tune checkpoint
    of the searcher uploads. The bucket here is a directory behind a pyarrow SubTreeFileSystem,
    which, like S3, is not a LocalFileSystem."""
    bucket = tmp_path / "bucket"
    (bucket / "prefix").mkdir(parents=True)
    remote = Storage(fs=pafs.SubTreeFileSystem(str(bucket), pafs.LocalFileSystem()), root="prefix", uri="s3://bucket/prefix")
    uploaded = bucket / "prefix" / "s" / "optuna.journal"
    searcher = GroupedSearcher([OperatingPoint(0.5, "l1_filter", 0)], 2, {"l1_filter": shape_space(2, 0.05)}, "tpe",
                               journal=StudyJournal(remote, "s"))
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"search_score": 0.8, "status": "ok"})
    assert not uploaded.exists()  # nothing is appended to the bucket itself
    searcher.save(str(tmp_path / "checkpoint.pkl"))
    assert uploaded.stat().st_size > 0
    restored = GroupedSearcher([], 1, {}, "tpe")
    restored.restore(str(tmp_path / "checkpoint.pkl"))
    assert restored._journal.file != searcher._journal.file  # a fresh local copy, downloaded
    assert [t.value for t in restored.study(0).trials] == [0.8]


@pytest.mark.parametrize(
    "cpu, gpu, parallel, available",
    [(1, 0, 1, {"CPU": 1}), (2, 0, 1, {"CPU": 3}), (1, 1, 4, {"CPU": 16, "GPU": 1}), (1, 0.5, 2, {"CPU": 16, "GPU": 1}),
     (1, 0, 4, {"CPU": 2})],
)
def test_a_local_netadapt_trial_and_its_candidate_bundles_fit_the_machine(cpu, gpu, parallel, available):
    """The trial's placement group (1 + parallel bundles) must fit, or the trial waits forever."""
    spec = with_overrides(SweepSpec(), schedule="netadapt", methods=("l1_filter",), resources__cpu=float(cpu),
                          resources__gpu=float(gpu), netadapt__parallel=parallel)
    fitted = fit_to_local_machine(spec, available)
    bundles = 1 + fitted.netadapt.parallel
    assert fitted.netadapt.parallel >= 1
    assert bundles * fitted.resources.cpu <= available["CPU"]
    assert bundles * fitted.resources.gpu <= available.get("GPU", 0)
    assert fitted.resources.gpu > 0 or gpu == 0  # a GPU that is there is still used


def test_asha_never_cuts_a_trial_at_its_last_epoch():
    """Ray's ASHA has a rung at max_t when max_t = grace x 3^k (here 3 = 1 x 3): a trial that ran
    every epoch finishes and writes its row whatever its accuracy."""
    def trial(name, steps=1):
        return SimpleNamespace(trial_id=name, config={"trial": TrialConfig(OperatingPoint(0.5, "l1_filter", 0, prune_steps=steps))})

    grouped = GroupedASHA(3, grace_epochs=1)
    strong, weak = trial("strong"), trial("weak")
    for each in (strong, weak):
        grouped.on_trial_add(None, each)
    for epoch in (1, 2, 3):
        assert grouped.on_trial_result(None, strong, {"epoch": epoch, "search_score": 0.9}) == "CONTINUE"
    assert grouped.on_trial_result(None, weak, {"epoch": 3, "search_score": 0.1}) == "CONTINUE"
    cycles = GroupedASHA(3, grace_epochs=1, per_prune_step=True)  # cycles: 3 epochs per pruning step
    assert cycles.last_epoch(trial("one", 1)) == 3 and cycles.last_epoch(trial("three", 3)) == 9


def test_a_searched_study_starts_at_the_prior_and_cmaes_is_centred_there(tmp_path):
    """Trial 0 of every study proposes each dimension's start (theta = 0: the prior itself); CMA-ES
    then samples around it."""
    space = {f"t{i:03d}": Dimension(-1.0, 1.0, start=0.0) for i in range(3)}
    points = [OperatingPoint(0.05, "magnitude", 0), OperatingPoint(0.02, "magnitude", 0)]
    searcher = GroupedSearcher(points, 6, {"magnitude": space}, "cmaes")
    configs = [searcher.suggest(f"t{i}") for i in range(12)]
    assert [c["trial"].proposal.values for c in configs[:2]] == [{name: 0.0 for name in space}] * 2
    assert [c["trial"].proposal.first for c in configs] == [True, True] + [False] * 10
    for index, config in enumerate(configs):
        values = config["trial"].proposal.values
        assert set(values) == set(space) and all(-1.0 <= v <= 1.0 for v in values.values())
        searcher.on_trial_complete(f"t{index}", {"search_score": 0.9 - sum(abs(v) for v in values.values()) / 10, "status": "ok"})
    later = [c["trial"].proposal.values for c in configs[2:]]
    assert any(v != 0.0 for values in later for v in values.values())  # then it explores


def test_the_final_stage_takes_the_best_screened_and_always_the_prior():
    """finalists per operating point by screen score; the prior (trial 0) joins when it ranked
    lower, so a two-stage search never ends below its prior."""
    def screened(budget, index, score, first=False):
        return score, TrialConfig(OperatingPoint(budget, "magnitude", 0), Proposal({"t000": index / 10}, first=first), "screen")

    pairs = [screened(0.05, 0, 0.5, first=True), screened(0.05, 1, 0.9), screened(0.05, 2, 0.7), screened(0.05, 3, 0.8),
             screened(0.02, 0, 0.6, first=True), screened(0.02, 1, 0.4), screened(0.02, 2, 0.3)]
    finalists = choose_finalists(pairs, finalists=2)
    picked = [(c.point.budget, c.proposal.values["t000"], c.proposal.first) for c in finalists]
    assert picked == [(0.05, 0.1, False), (0.05, 0.3, False), (0.05, 0.0, True),  # best two, then the prior
                      (0.02, 0.0, True), (0.02, 0.1, False)]  # the prior among the best: not twice
    assert {c.stage for c in finalists} == {"final"}
    assert len(choose_finalists(pairs, finalists=1)) == 3  # 0.05: its best and the prior; 0.02: the prior
