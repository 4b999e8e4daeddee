"""Every registered schedule in a real sweep, and the two-stage searches (screening by short
fine-tunes, and by BatchNorm recalibration without any), on one local Ray instance per module."""

import pytest

from prune_ray import sweep
from prune_ray.plan import get_schedule, list_schedules
from prune_ray.results import read_results

pytestmark = pytest.mark.ray


ONE_SHOT_BUDGETED = [s for s in list_schedules() if get_schedule(s).takes == "budget" and get_schedule(s).plan]


@pytest.mark.parametrize("schedule", ONE_SHOT_BUDGETED)
def test_every_schedule_runs_in_a_sweep(tmp_path, local_ray, schedule, capsys):
    """Every registered one-shot budgeted schedule, through the registry (netadapt and fixed have
    their own sweep tests). A schedule that cannot serve a method is refused before Ray runs a trial."""
    def spec(methods: str) -> str:
        (tmp_path / "spec.yaml").write_text(
            f"schedule: {schedule}\nmethods: [{methods}]\nbudgets: [0.4]\nsearch: {{num_samples: 1}}\n"
            "baseline: {train: {epochs: 2}}\nfinetune: {epochs: 1}\nmeasure: {latency_repeats: 2}\n")
        return str(tmp_path / "spec.yaml")

    code = sweep.main([spec("magnitude, l1_filter"), "--storage", str(tmp_path), "--name", "s"])
    methods = 2
    if code == 2:  # refused: one line naming the schedule and the method it cannot serve
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"schedule {schedule!r}" in err and "'l1_filter'" in err, err
        assert not (tmp_path / "s").exists()
        assert sweep.main([spec("magnitude"), "--storage", str(tmp_path), "--name", "s"]) == 0
        methods = 1
    else:
        assert code == 0
    frame = read_results(str(tmp_path), "s")
    assert len(frame) == methods and (frame["status"] == "ok").all(), frame["error"].tolist()
    assert set(frame["schedule"]) == {schedule}
    if schedule == "sensitivity":
        assert (tmp_path / "s" / "sensitivity-l1_filter.png").exists()
        assert len(list((tmp_path / "sensitivity").glob("*.parquet"))) == 2  # cached per method
    for _, row in frame.iterrows():
        keep = row["macs_keep"] if row["method"] == "l1_filter" else row["params_keep"]
        assert 0.4 * 0.98 <= keep <= 0.4


def test_screening_by_batchnorm_recalibration_finetunes_only_the_best_proposal(tmp_path, local_ray):
    """search.screen_bn: proposals ranked by accuracy after BatchNorm recalibration, with no
    fine-tuning; only each operating point's best is fine-tuned."""
    (tmp_path / "spec.yaml").write_text(
        "methods: [magnitude]\nbudgets: [0.1]\nsearch: {num_samples: 4, screen_bn: true, keep_best: 1}\n"
        "baseline: {train: {epochs: 2}}\nfinetune: {epochs: 2}\nmeasure: {latency_repeats: 2}\n"
    )
    assert sweep.main([str(tmp_path / "spec.yaml"), "--storage", str(tmp_path), "--name", "s"]) == 0
    frame = read_results(str(tmp_path), "s")
    screen, final = frame[frame["stage"] == "screen"], frame[frame["stage"] == "final"]
    assert len(screen) == 4 and (screen["finetune_epochs"] == 0).all()
    assert (screen["top1"] == screen["top1_pruned"]).all()  # no fine-tuning: the model as pruned
    assert (screen["top1_pruned_bn"] > screen["top1_pruned"]).any()  # recalibration did something
    assert len(final) == 1 and final["finetune_epochs"].iloc[0] == 2
    best = screen.sort_values("top1_pruned_bn").iloc[-1]  # ranked by the recalibrated accuracy
    assert list(final["layer_ratios"].iloc[0]) == list(best["layer_ratios"])
    assert final["top1"].iloc[0] > best["top1"]  # fine-tuning the pick helped


def test_two_stage_search_finetunes_the_best_screened_proposals(tmp_path, local_ray):
    (tmp_path / "spec.yaml").write_text(
        "methods: [l1_filter]\nbudgets: [0.5, 0.3]\nsearch: {num_samples: 3, screen_epochs: 1, keep_best: 1}\n"
        "baseline: {train: {epochs: 2}}\nfinetune: {epochs: 3}\nmeasure: {latency_repeats: 2}\n"
    )
    assert sweep.main([str(tmp_path / "spec.yaml"), "--storage", str(tmp_path), "--name", "s"]) == 0
    frame = read_results(str(tmp_path), "s")
    screen, final = frame[frame["stage"] == "screen"], frame[frame["stage"] == "final"]
    assert len(screen) == 6 and (screen["finetune_epochs"] == 1).all()
    assert len(final) == 2 and (final["finetune_epochs"] == 3).all() and sorted(final["budget"]) == [0.3, 0.5]
    for _, row in final.iterrows():  # each final trial re-ran its point's best screened plan
        best = screen[screen["budget"] == row["budget"]].sort_values("top1").iloc[-1]
        assert list(row["layer_ratios"]) == list(best["layer_ratios"])
