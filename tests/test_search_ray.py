"""The searching schedules in real sweeps on one local Ray instance: netadapt's greedy steps as Ray
tasks, nsga2's frontier without a budget, ASHA early stopping per budget, and the Optuna journal."""

import io

import numpy as np
import pandas as pd
import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from prune_ray import analyze, sweep
from prune_ray.results.frontier import non_dominated
from prune_ray.results import read_epochs, read_results, read_steps

pytestmark = pytest.mark.ray
COMMON = "baseline: {train: {epochs: 2}}\nmeasure: {latency_repeats: 2}\n"


def run(tmp_path, text: str) -> int:
    (tmp_path / "spec.yaml").write_text(text + COMMON)
    return sweep.main([str(tmp_path / "spec.yaml"), "--storage", str(tmp_path), "--name", "s"])


def journal_study(tmp_path, name: str) -> optuna.Study:
    """What optuna-dashboard opens: the journal file in the sweep directory."""
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "s" / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def test_netadapt_reaches_its_budget_with_falling_resource(tmp_path, local_ray):
    code = run(tmp_path, "schedule: netadapt\nmethods: [l1_filter, magnitude]\nbudgets: [0.5]\n"
                         "netadapt: {step_fraction: 0.2, short_epochs: 1, parallel: 2}\nfinetune: {epochs: 1}\n")
    assert code == 0
    frame = read_results(str(tmp_path), "s")
    steps = read_steps(str(tmp_path), "s")
    assert len(frame) == 2 and (frame["status"] == "ok").all(), frame["error"].tolist()
    for _, row in frame.iterrows():
        trace = steps[steps["trial_id"] == row["trial_id"]].sort_values("step")
        keep = trace["resource_keep"].to_numpy(float)
        assert len(trace) >= 3 and (np.diff(keep) < 0).all(), keep  # 0.8, 0.6, 0.5 of the resource
        assert keep[-1] <= 0.5 and keep[0] >= 0.8 - 0.02
        achieved = row["macs_keep"] if row["method"] == "l1_filter" else row["params_keep"]
        assert achieved == pytest.approx(keep[-1], abs=1e-9)  # the trial kept the greedy result
        # candidates: the layers that can meet the step's target alone, short-fine-tuned as Ray tasks
        assert (trace["candidates"] >= 1).all() and trace["candidates"].max() >= 2
        assert (trace["task_processes"] >= 1).all()
        assert set(trace["layer"]) <= set(row["layer_names"])
        # the long fine-tune after the steps: one epoch on top of the pruned model
        assert row["finetune_epochs"] == 1 and row["top1_pruned"] == trace["top1"].iloc[-1]


def test_nsga2_without_budget_returns_a_non_dominated_set(tmp_path, local_ray, capsys):
    code = run(tmp_path, "methods: [l1_filter]\nbudgets: []\nsearch: {sampler: nsga2, num_samples: 8, "
                         "keep_range: [0.2, 0.9]}\nfinetune: {epochs: 1}\n")
    assert code == 0
    frame = read_results(str(tmp_path), "s")
    assert len(frame) == 8 and (frame["status"] == "ok").all(), frame["error"].tolist()
    assert frame["budget"].isna().all() and frame["sampler"].eq("nsga2").all()
    assert frame["macs_keep"].between(0.2 * 0.98, 0.9).all()  # proposed keep, met within the projection
    study = journal_study(tmp_path, "l1_filter-frontier-steps1-seed0-single")
    assert len(study.directions) == 2 and len(study.trials) == 8
    # Optuna's Pareto set is the set of non-dominated rows of the Parquet
    keep, top1 = frame["macs_keep"].to_numpy(float), frame["top1"].to_numpy(float)
    rows = {(round(a, 9), round(k, 9)) for a, k in zip(top1[non_dominated(keep, top1)], keep[non_dominated(keep, top1)])}
    assert rows == {(round(t.values[0], 9), round(t.values[1], 9)) for t in study.best_trials}
    assert len(rows) >= 2  # a frontier, not one point
    assert "non-dominated rows" in capsys.readouterr().out
    assert analyze.main([str(tmp_path), "--sweep", "s", "--table", "frontier", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    # every trial is its own point, so the front is the non-dominated trials (two equal trials both count);
    # the table keeps the dominated ones too, flagged (issue 26: marked, not silently dropped)
    assert len(table) == len(frame) and int((~table["dominated"]).sum()) == int(non_dominated(keep, top1).sum())


def test_asha_stops_weak_trials_within_each_budget(tmp_path, local_ray):
    code = run(tmp_path, "methods: [l1_filter]\nbudgets: [0.6, 0.15]\nsearch: {sampler: random, num_samples: 5, "
                         "max_concurrent: 1, early_stopping: asha, grace_epochs: 1}\nfinetune: {epochs: 4}\n")
    assert code == 0
    frame = read_results(str(tmp_path), "s")
    assert len(frame) == 10 and frame["status"].isin(["ok", "stopped"]).all(), frame["error"].tolist()
    stopped = frame[frame["status"] == "stopped"]
    assert len(stopped) >= 1
    assert (stopped["finetune_epochs"] < 4).all() and stopped["top1"].notna().all()
    epochs = read_epochs(str(tmp_path), "s")
    for _, row in stopped.iterrows():  # its row holds the accuracy of the last epoch it ran
        last = epochs[(epochs["trial_id"] == row["trial_id"]) & (epochs["epoch"] == row["finetune_epochs"])]
        assert last["top1"].iloc[0] == row["top1"]
    for budget in (0.6, 0.15):  # never a whole budget cut because the other one is more accurate
        assert (frame[frame["budget"] == budget]["status"] == "ok").any()
    study = journal_study(tmp_path, "l1_filter-budget0.15-steps1-seed0-single")
    states = [t.state.name for t in study.trials]
    assert states.count("PRUNED") == len(stopped[stopped["budget"] == 0.15]) and "RUNNING" not in states
