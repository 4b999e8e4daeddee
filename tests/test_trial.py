"""One trial's whole life without Ray (run_trial is plain Python)."""

import dataclasses

import pytest

from prune_ray.points import OperatingPoint, Proposal, TrialConfig
from prune_ray.results import read_epochs, read_results
from prune_ray.spec import SweepSpec
from prune_ray.train import TrainRecipe
from prune_ray.trial import TrialContext, run_trial
from prune_ray.trial_row import search_score


def small_spec(tmp_path, **changes) -> SweepSpec:
    spec = SweepSpec(storage=str(tmp_path), finetune=TrainRecipe(epochs=2, lr=0.01))
    spec = dataclasses.replace(spec, baseline=dataclasses.replace(spec.baseline, train=TrainRecipe(epochs=2)))
    return dataclasses.replace(spec, **changes)


def trial_config(method: str, budget: float, shape=None, prune_steps: int = 1) -> TrialConfig:
    return TrialConfig(OperatingPoint(budget, method, 0, prune_steps=prune_steps), Proposal(shape or {}))


@pytest.mark.parametrize("method, budget", [("magnitude", 0.3), ("l1_filter", 0.5)])
def test_trial_writes_a_row_that_meets_its_budget(tmp_path, method, budget):
    spec = small_spec(tmp_path)
    reports = []
    # the searched schedule's log-multipliers: layer 0 keeps e x its prior's fraction, layer 1 1/e x
    row = run_trial(trial_config(method, budget, {"t000": 1.0, "t001": -1.0}), TrialContext(spec, "s", {}, None),
                    "t1", reports.append)
    assert row["status"] == "ok", row.get("error")
    assert [r["epoch"] for r in reports] == [1, 2]
    frame = read_results(str(tmp_path), "s")
    assert len(frame) == 1
    got = frame.iloc[0]
    keep = got["params_keep"] if method == "magnitude" else got["macs_keep"]
    assert budget * 0.98 <= keep <= budget
    assert got["layer_ratios"][0] < got["layer_ratios"][1]  # the proposal was followed
    assert got["top1_pruned_bn"] is not None and 0 <= got["top1_pruned_bn"] <= 1  # digits_cnn has BatchNorm
    assert 0 <= got["top1_pruned"] <= 1 and 0 <= got["top1"] <= 1
    epochs = read_epochs(str(tmp_path), "s")
    assert list(epochs["epoch"]) == [0, 1, 2]


def test_a_diverging_trial_is_a_failed_row_not_a_crash(tmp_path):
    spec = small_spec(tmp_path, finetune=TrainRecipe(epochs=2, lr=1e12, momentum=0.0))
    row = run_trial(trial_config("l1_filter", 0.5), TrialContext(spec, "s", {}, None), "t1", lambda _: None)
    assert row["status"] == "failed"
    assert "diverged" in row["error"]
    frame = read_results(str(tmp_path), "s")
    assert list(frame["status"]) == ["failed"] and "diverged" in frame["error"].iloc[0]
    assert frame["top1_pruned"].notna().all()  # what was measured before the failure is kept


def test_unreachable_budget_is_a_failed_row(tmp_path):
    spec = small_spec(tmp_path)
    row = run_trial(trial_config("l1_filter", 0.0001), TrialContext(spec, "s", {}, None), "t1", lambda _: None)
    assert row["status"] == "failed" and "budget unreachable" in row["error"]


@pytest.mark.parametrize("iterative, steps", [("agp", 2), ("cycles", 2)])
def test_iterative_trials_write_their_row_and_curve(tmp_path, iterative, steps):
    """agp reports epochs before its last pruning step (which gives top1_pruned); cycles prune twice."""
    spec = dataclasses.replace(small_spec(tmp_path), iterative=iterative, prune_steps=(steps,))
    config = trial_config("magnitude", 0.3, prune_steps=steps)
    reports = []
    row = run_trial(config, TrialContext(spec, "s", {}, None), "t1", reports.append)
    assert row["status"] == "ok", row.get("error")
    epochs = read_epochs(str(tmp_path), "s").sort_values("epoch")
    fine_tuned = 2 * steps if iterative == "cycles" else 2
    assert list(epochs["epoch"]) == list(range(fine_tuned + 1)) and len(reports) == fine_tuned
    assert epochs["top1"].iloc[0] == row["top1_pruned"]  # epoch 0: after the last pruning step
    assert 0.3 * 0.98 <= row["params_keep"] <= 0.3


def test_a_batchnorm_screen_scores_the_recalibrated_accuracy_and_keeps_the_model_as_pruned(tmp_path):
    """screen_bn with no fine-tuning: the row's top1 is the model exactly as pruned (nothing is
    changed without retraining) and the search learns top1_pruned_bn; any other trial scores top1."""
    spec = dataclasses.replace(small_spec(tmp_path), search=dataclasses.replace(SweepSpec().search, screen_bn=True))
    screen = dataclasses.replace(trial_config("magnitude", 0.1), stage="screen")
    row = run_trial(screen, TrialContext(spec, "s", {}, None), "t1")
    assert row["status"] == "ok" and row["finetune_epochs"] == 0
    assert row["top1"] == row["top1_pruned"] and row["top1_pruned_bn"] > row["top1_pruned"]
    assert search_score(spec, screen, row) == row["top1_pruned_bn"]
    final = dataclasses.replace(screen, stage="final")
    assert search_score(spec, final, {**row, "top1": 0.5}) == 0.5
    assert search_score(spec, final, {**row, "status": "failed"}) == 0.0
