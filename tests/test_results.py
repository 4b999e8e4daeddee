import datetime

import pandas as pd
import pyarrow.parquet as pq
import pytest

from prune_ray.results.parquet import SCHEMA_VERSION, TRIAL_SCHEMA, read_results, write_trial
from prune_ray.results.storage import open_storage


def row(trial_id: str, **changes):
    now = datetime.datetime.now(datetime.timezone.utc)
    base = {
        "sweep": "s1", "trial_id": trial_id, "status": "ok", "started_at": now, "finished_at": now,
        "model": "digits_cnn", "method": "magnitude", "budget": 0.5, "top1": 0.9, "params": 100,
        "layer_names": ["conv1", "fc1"], "layer_ratios": [0.5, 0.25],
    }
    return {**base, **changes}


def test_rows_round_trip_with_real_dtypes(tmp_path):
    storage = open_storage(str(tmp_path))
    uri = write_trial(storage, row("a"))
    write_trial(storage, row("b", status="failed", error="ValueError: boom", top1=None))
    assert uri == f"{tmp_path}/s1/trials/a.parquet"
    frame = read_results(str(tmp_path), "s1")
    assert list(frame.columns) == TRIAL_SCHEMA.names
    assert sorted(frame["trial_id"]) == ["a", "b"]
    assert (frame["schema_version"] == SCHEMA_VERSION).all()
    assert str(frame["params"].dtype) == "int64[pyarrow]"
    assert str(frame["started_at"].dtype) == "timestamp[us, tz=UTC][pyarrow]"
    a = frame[frame.trial_id == "a"].iloc[0]
    assert list(a["layer_names"]) == ["conv1", "fc1"] and list(a["layer_ratios"]) == [0.5, 0.25]
    b = frame[frame.trial_id == "b"].iloc[0]
    assert pd.isna(b["top1"]) and pd.isna(b["macs"]) and b["error"] == "ValueError: boom"
    # plain pandas reads the directory too, as the README promises
    assert len(pd.read_parquet(tmp_path / "s1" / "trials")) == 2


def test_rewriting_a_trial_replaces_its_row_and_leaves_no_temp_files(tmp_path):
    storage = open_storage(str(tmp_path))
    write_trial(storage, row("a", top1=0.1))
    write_trial(storage, row("a", top1=0.7))
    frame = read_results(str(tmp_path), "s1")
    assert len(frame) == 1 and frame["top1"].iloc[0] == 0.7
    assert [p.name for p in (tmp_path / "s1" / "trials").iterdir()] == ["a.parquet"]
    assert pq.read_schema(tmp_path / "s1" / "trials" / "a.parquet").names == TRIAL_SCHEMA.names


def test_bad_rows_are_refused_before_anything_is_written(tmp_path):
    storage = open_storage(str(tmp_path))
    with pytest.raises(ValueError, match="unknown result column 'acc'"):
        write_trial(storage, row("a", acc=1.0))
    with pytest.raises(ValueError, match="status 'done'; allowed: ok, failed"):
        write_trial(storage, row("a", status="done"))
    assert not (tmp_path / "s1").exists()


def test_reading_all_sweeps_and_an_empty_root(tmp_path):
    storage = open_storage(str(tmp_path))
    assert read_results(str(tmp_path)).empty
    write_trial(storage, row("a"))
    write_trial(storage, row("a", sweep="s2"))
    assert sorted(read_results(storage)["sweep"]) == ["s1", "s2"]


def test_relative_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert open_storage("results").uri == str(tmp_path / "results")


def test_no_path_part_can_leave_the_storage_root(tmp_path):
    storage = open_storage(str(tmp_path))
    for bad in ("..", "a/b", "../x", "."):
        with pytest.raises(ValueError, match="would leave the storage root"):
            storage.path("sweep", bad)
    with pytest.raises(ValueError, match="would leave the storage root"):
        write_trial(storage, row("../../escape"))
    assert list(tmp_path.iterdir()) == []


def test_rows_left_running_are_settled_as_stopped_or_failed(tmp_path):
    """Tune's results for trials whose row still says 'running': stopped by ASHA after an epoch
    (its last report) or dead past its retries; finished rows are left as they are."""
    from types import SimpleNamespace

    from prune_ray.results.summary import settle_unfinished

    storage = open_storage(str(tmp_path))
    write_trial(storage, row("stopped", status="running", top1=None, finetune_epochs=None, top1_pruned=0.7))
    write_trial(storage, row("dead", status="running", top1=None))
    write_trial(storage, row("done", status="ok", top1=0.95))
    results = [
        SimpleNamespace(metrics={"trial_id": "stopped", "epoch": 2, "top1": 0.81, "top5": 0.99, "status": "running"}, error=None),
        SimpleNamespace(metrics={"trial_id": "dead", "epoch": 1, "top1": 0.5}, error=RuntimeError("node died\nmore")),
        SimpleNamespace(metrics={"trial_id": "done", "top1": 0.95, "status": "ok"}, error=None),
        SimpleNamespace(metrics={}, error=RuntimeError("died before reporting")),  # wrote no row: nothing to settle
    ]
    assert settle_unfinished(storage, "s1", results) == 2
    frame = read_results(str(tmp_path), "s1").set_index("trial_id")
    assert frame.loc["stopped", "status"] == "stopped" and frame.loc["stopped", "top1"] == 0.81
    assert frame.loc["stopped", "finetune_epochs"] == 2 and frame.loc["stopped", "top1_pruned"] == 0.7
    assert frame.loc["dead", "status"] == "failed" and frame.loc["dead", "error"] == "RuntimeError: node died"
    assert frame.loc["done", "status"] == "ok" and frame.loc["done", "top1"] == 0.95


def test_the_summary_tells_frontier_searches_from_per_layer_fixed_ratios(tmp_path, capsys):
    """Both have no budget and no single ratio; only a frontier search has a sampler."""
    from prune_ray.results.summary import summarize

    base = {"status": "ok", "method": "magnitude", "granularity": "unstructured", "budget_metric": "params",
            "top1": 0.9, "top1_pruned": 0.5, "baseline_top1": 0.95, "params_keep": 0.5, "macs_keep": 1.0,
            "prune_steps": 1, "stage": "single", "error": None, "speedup_measured": 1.0}
    mapped = pd.DataFrame([{**base, "trial_id": "m", "schedule": "fixed", "sampler": None, "budget": None, "ratio": None,
                            "layer_ratios": [0.5, 0.0]}])
    assert summarize(mapped, "uri", 1.0) == 0
    assert "best row per budget and method" in capsys.readouterr().out
    searched = pd.DataFrame([{**base, "trial_id": t, "schedule": "searched", "sampler": "nsga2", "budget": None,
                              "ratio": None, "params_keep": keep, "top1": top1, "layer_ratios": [0.1, 0.2]}
                             for t, keep, top1 in (("a", 0.3, 0.8), ("b", 0.5, 0.9), ("c", 0.6, 0.85))])
    assert summarize(searched, "uri", 1.0) == 0
    out = capsys.readouterr().out
    assert "non-dominated rows" in out and " c " not in out.split("non-dominated rows")[1]  # c is dominated by b


def test_a_latency_sweep_is_picked_and_ranked_by_latency_kept_not_parameters(capsys):
    """The kept fraction of the budgeted resource (results.frontier.resource_keep) is the one rule of
    the trial's budget check, Tune's report, the pick order, the frontier and model retention: a
    latency row's is latency_keep, however many parameters it keeps."""
    from prune_ray.artifacts.retention import kept_trials
    from prune_ray.results.frontier import in_pick_order, pareto_front, resource_keep, row_resource_keep, usable_rows
    from prune_ray.results.summary import summarize

    base = {"status": "ok", "model": "digits_cnn", "dataset": "digits", "method": "l1_filter", "granularity": "structured",
            "budget_metric": "latency", "top1": 0.9, "top1_pruned": 0.5, "baseline_top1": 0.95, "macs_keep": 0.5,
            "prune_steps": 1, "stage": "single", "error": None, "speedup_measured": 1.0, "sweep": "s", "seed": 0,
            "iterative": "oneshot", "schedule": "searched", "sampler": "tpe", "ratio": None}
    # few parameters kept, much latency kept; and the other way round
    slow = {**base, "trial_id": "slow", "params_keep": 0.3, "latency_keep": 0.7, "speedup_high": 1 / 0.65}
    fast = {**base, "trial_id": "fast", "params_keep": 0.6, "latency_keep": 0.4, "speedup_high": 1 / 0.35}
    budgeted = pd.DataFrame([{**slow, "budget": 0.8}, {**fast, "budget": 0.8}])
    assert in_pick_order(usable_rows(budgeted))["trial_id"].tolist() == ["fast", "slow"]  # equal top-1: less latency
    assert kept_trials(budgeted) == {"fast"}
    frontier = pd.DataFrame([{**slow, "budget": None}, {**fast, "budget": None}])
    assert pareto_front(usable_rows(frontier), accuracy_column="top1", by=["method"])["trial_id"].tolist() == ["fast"]
    assert kept_trials(frontier) == {"fast"}
    assert summarize(frontier, "uri", 1.0) == 0
    assert " slow " not in capsys.readouterr().out.split("non-dominated rows")[1]
    # Tune's report and the trial's budget check read the same rule off the trial's row
    assert row_resource_keep(slow) == 0.7 and row_resource_keep(slow, lowest_supported=True) == pytest.approx(0.65)
    assert row_resource_keep({**slow, "budget_metric": "params"}) == 0.3
    assert row_resource_keep({"status": "failed", "budget_metric": "latency", "granularity": "structured"}) is None
    # rows without a metric follow the method registry's auto rule: low-rank and structured -> MACs
    unstated = pd.DataFrame([{"budget_metric": None, "granularity": g, "params_keep": 0.3, "macs_keep": 0.6}
                             for g in ("unstructured", "structured", "lowrank")])
    assert resource_keep(unstated).tolist() == [0.3, 0.6, 0.6]
