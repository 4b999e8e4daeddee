"""The searcher Tune drives: one Optuna study per operating point, real samplers."""

import optuna
import pytest
from ray.tune.search import Searcher

from prune_ray.search import SAMPLER_FACTORIES, GroupedSearcher, Group, shape_space
from prune_ray.spec import SAMPLERS, SweepSpec, with_overrides
from prune_ray.sweep import operating_points


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_proposes_weights_inside_the_space(sampler):
    space = shape_space(4, 0.05)
    study = optuna.create_study(direction="maximize", sampler=SAMPLER_FACTORIES[sampler](0))
    for _ in range(5):
        trial = study.ask(space)
        assert set(trial.params) == {"w000", "w001", "w002", "w003"}
        assert all(0.05 <= value <= 1.0 for value in trial.params.values())
        study.tell(trial, sum(trial.params.values()))
    assert len(study.trials) == 5


def test_groups_interleave_and_each_keeps_its_own_study():
    groups = [Group(0.5, "magnitude", 0), Group(0.3, "magnitude", 0)]
    searcher = GroupedSearcher(groups, 2, {"magnitude": shape_space(3, 0.05)}, "tpe")
    configs = [searcher.suggest(f"t{i}") for i in range(4)]
    assert [c["group"]["budget"] for c in configs] == [0.5, 0.3, 0.5, 0.3]  # every budget early
    assert searcher.suggest("t4") == Searcher.FINISHED
    searcher.on_trial_complete("t0", {"top1": 0.9, "status": "ok"})
    searcher.on_trial_complete("t1", {"top1": 0.0, "status": "failed"})
    first, second = (study._ot_study for study in searcher._studies)
    states = lambda s: sorted(t.state.name for t in s.trials)  # noqa: E731
    assert states(first) == ["COMPLETE", "RUNNING"] and first.best_value == 0.9
    assert states(second) == ["FAIL", "RUNNING"]  # a failed trial is no accuracy of 0 to Optuna


def test_operating_points_cross_budgets_methods_steps_and_seeds():
    spec = with_overrides(SweepSpec(), budgets=(0.5, 0.3), seeds=(0, 1, 2))
    points = operating_points(spec)
    assert len(points) == 2 * 2 * 1 * 3
    assert {(p.budget, p.method, p.seed) for p in points} == {
        (b, m, s) for b in (0.5, 0.3) for m in ("magnitude", "l1_filter") for s in (0, 1, 2)
    }
    fixed = operating_points(with_overrides(SweepSpec(), schedule="fixed", fixed_ratios=(0.3, 0.6)))
    assert {(p.budget, p.ratio) for p in fixed} == {(None, 0.3), (None, 0.6)}
