"""Every registered schedule in a real sweep, and the two-stage searches (screening by short
fine-tunes, and by BatchNorm recalibration without any), on one local Ray instance per module."""

import pytest

from prune_ray import sweep
from prune_ray.plan import get_schedule, list_schedules
from prune_ray.results import read_results

pytestmark = pytest.mark.ray


ONE_SHOT_BUDGETED = [s for s in list_schedules() if get_schedule(s).takes == "budget" and get_schedule(s).plan]


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory):
    """One storage root for the schedule sweeps (each its own sweep name): the baseline they share
    is trained once per xdist worker and loaded by the other sweeps."""
    return tmp_path_factory.mktemp("schedules")


@pytest.mark.parametrize("schedule", ONE_SHOT_BUDGETED)
def test_every_schedule_runs_in_a_sweep(tmp_path, shared_store, local_ray, schedule, capsys):
    """Every registered one-shot budgeted schedule, through the registry (netadapt and fixed have
    their own sweep tests). A schedule that cannot serve a method is refused before Ray runs a trial."""
    storage, name = shared_store, f"s-{schedule}"

    def spec(methods: str) -> str:
        (tmp_path / "spec.yaml").write_text(
            f"schedule: {schedule}\nmethods: [{methods}]\nbudgets: [0.4]\nsearch: {{num_samples: 1, curve_points: 4}}\n"
            "baseline: {train: {epochs: 2}}\nfinetune: {epochs: 1}\nmeasure: {latency_repeats: 2}\n")
        return str(tmp_path / "spec.yaml")

    code = sweep.main([spec("magnitude, l1_filter"), "--storage", str(storage), "--name", name])
    methods = 2
    if code == 2:  # refused: one line naming the schedule and the method it cannot serve
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"schedule {schedule!r}" in err and "'l1_filter'" in err, err
        assert not (storage / name).exists()
        assert sweep.main([spec("magnitude"), "--storage", str(storage), "--name", name]) == 0
        methods = 1
    else:
        assert code == 0
    frame = read_results(str(storage), name)
    assert len(frame) == methods and (frame["status"] == "ok").all(), frame["error"].tolist()
    assert set(frame["schedule"]) == {schedule}
    if schedule == "knapsack":  # its sensitivity curves, cached per baseline and method
        assert len(list((storage / "sensitivity").glob("*-knapsack-*.parquet"))) == methods
    for _, row in frame.iterrows():
        keep = row["macs_keep"] if row["method"] == "l1_filter" else row["params_keep"]
        assert 0.4 * 0.98 <= keep <= 0.4


def test_screening_by_batchnorm_recalibration_finetunes_only_the_best_proposal_and_the_prior(tmp_path, local_ray):
    """search.screen_bn: proposals ranked by accuracy after BatchNorm recalibration, with no
    fine-tuning; only each operating point's best is fine-tuned."""
    (tmp_path / "spec.yaml").write_text(
        "methods: [magnitude]\nbudgets: [0.1]\nsearch: {num_samples: 4, screen_bn: true, finalists: 1}\n"
        "baseline: {train: {epochs: 2}}\nfinetune: {epochs: 2}\nmeasure: {latency_repeats: 2}\n"
    )
    assert sweep.main([str(tmp_path / "spec.yaml"), "--storage", str(tmp_path), "--name", "s"]) == 0
    frame = read_results(str(tmp_path), "s")
    screen, final = frame[frame["stage"] == "screen"], frame[frame["stage"] == "final"]
    assert len(screen) == 4 and (screen["finetune_epochs"] == 0).all()
    assert (screen["top1"] == screen["top1_pruned"]).all()  # no fine-tuning: the model as pruned
    assert (screen["top1_pruned_bn"] > screen["top1_pruned"]).any()  # recalibration did something
    best = screen.sort_values("top1_pruned_bn").iloc[-1]  # ranked by the recalibrated accuracy
    assert_finalists_are_the_best_and_the_prior(screen, final, best)
    assert (final["finetune_epochs"] == 2).all()
    picked = final[[tuple(r) == tuple(best["layer_ratios"]) for r in final["layer_ratios"]]]
    assert picked["top1"].iloc[0] > best["top1"]  # fine-tuning the pick helped


def assert_finalists_are_the_best_and_the_prior(screen, final, *best):
    """The final stage re-ran the screen's best plans and, when it was not among them, the study's
    first proposal (the prior): no more, no fewer."""
    assert screen["first_proposal"].sum() == len(set(screen["budget"]))  # one prior per operating point
    prior = screen[screen["first_proposal"].astype(bool)]
    expected = {tuple(row["layer_ratios"]) for row in best} | {tuple(r) for r in prior["layer_ratios"]}
    assert sorted(tuple(r) for r in final["layer_ratios"]) == sorted(expected)
    carried = final[final["first_proposal"].astype(bool)]
    assert sorted(tuple(r) for r in carried["layer_ratios"]) == sorted(tuple(r) for r in prior["layer_ratios"])


def test_two_stage_search_finetunes_the_best_screened_proposals(tmp_path, local_ray):
    (tmp_path / "spec.yaml").write_text(
        "methods: [l1_filter]\nbudgets: [0.5, 0.3]\nsearch: {num_samples: 3, screen_epochs: 1, finalists: 1}\n"
        "baseline: {train: {epochs: 2}}\nfinetune: {epochs: 3}\nmeasure: {latency_repeats: 2}\n"
    )
    assert sweep.main([str(tmp_path / "spec.yaml"), "--storage", str(tmp_path), "--name", "s"]) == 0
    frame = read_results(str(tmp_path), "s")
    screen, final = frame[frame["stage"] == "screen"], frame[frame["stage"] == "final"]
    assert len(screen) == 6 and (screen["finetune_epochs"] == 1).all()
    assert (final["finetune_epochs"] == 3).all() and sorted(set(final["budget"])) == [0.3, 0.5]
    best = [screen[screen["budget"] == budget].sort_values("top1").iloc[-1] for budget in (0.3, 0.5)]
    assert_finalists_are_the_best_and_the_prior(screen, final, *best)


def test_a_race_sweep_writes_its_trace_and_counts_its_epochs(tmp_path, shared_store, local_ray):
    """schedule race under Ray Tune: one trial per operating point whose row counts the rounds'
    epochs, its proposals and rounds in <sweep>/race/, and the strategies table charges both."""
    from prune_ray.results import read_steps
    from prune_ray.results.strategies import strategy_summary

    (tmp_path / "spec.yaml").write_text(
        "schedule: race\nmethods: [l1_filter]\nbudgets: [0.4]\nbaseline: {train: {epochs: 2}}\nfinetune: {epochs: 1}\n"
        "search: {proposals: 6, race_keep: [3, 1], race_epochs: [1], curve_points: 4}\nmeasure: {latency_repeats: 2}\n")
    assert sweep.main([str(tmp_path / "spec.yaml"), "--storage", str(shared_store), "--name", "race"]) == 0
    frame = read_results(str(shared_store), "race")
    assert len(frame) == 1 and frame["status"].iloc[0] == "ok", frame["error"].tolist()
    row = frame.iloc[0]
    steps = read_steps(str(shared_store), "race", "race")
    final = steps[steps["round"] == 2]
    assert len(steps[steps["round"] == 0]) == 6 and len(steps[steps["round"] == 1]) == 3
    assert row["search_epochs"] == 3 * 1 + (len(final) - 1) * 1 and 0.4 * 0.98 <= row["macs_keep"] <= 0.4
    assert strategy_summary(frame)["epochs"].iloc[0] == row["search_epochs"] + row["finetune_epochs"]
