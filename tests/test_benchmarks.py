"""The speed benchmarks run on a CPU in CI's time (their figures are the README's, never asserted)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_epoch_time_runs_on_a_cpu_with_few_images(tmp_path):
    out = tmp_path / "figures.json"
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "epoch_time.py"), "--models", "resnet20", "--images", "64",
               "--batch-size", "32", "--epochs", "1", "--threads", "1", "--round-to", "8", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(out.read_text())
    rows = figures["rows"]
    assert [row["variant"] for row in rows] == ["baseline", "pruned", "pruned+round_to"]
    for row in rows:
        assert row["train_images_per_s"] > 0 and row["eval_images_per_s"] > 0
        assert row["train_s_per_epoch"] == pytest.approx(64 / row["train_images_per_s"])
    baseline, pruned, rounded = rows
    assert baseline["macs_keep"] == 1.0 and 0.45 <= pruned["macs_keep"] <= 0.5 and rounded["macs_keep"] <= 0.5
    assert all(count % 8 == 0 for count in rounded["channels"]), rounded["channels"]
    assert any(count % 8 for count in pruned["channels"])  # unrounded counts are not all multiples
    assert "not run, no GPU here" in figures["note"]  # two processes sharing a GPU need a GPU
    assert "| resnet20 | pruned+round_to 8 |" in done.stdout


def test_search_quality_pairs_each_strategy_with_the_best_one_shot_allocation_on_the_same_seed():
    """The paired table: per seed the picked trial (best validation top-1), minus the best one-shot
    allocation's on the same baseline; a shared baseline's level cancels out of the difference."""
    import importlib.util

    import pandas as pd

    spec = importlib.util.spec_from_file_location("search_quality", os.path.join(ROOT, "benchmarks", "search_quality.py"))
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    stamp = "20260101-000000"
    common = {"status": "ok", "stage": "single", "model": "digits_cnn", "dataset": "digits", "method": "magnitude",
              "granularity": "unstructured", "budget": 0.02, "budget_metric": "params", "params_keep": 0.02, "macs_keep": 1.0}
    rows = []
    for seed, level in ((0, 0.90), (1, 0.80)):  # seed 1's baseline is 10 points worse for every strategy
        rows += [
            {**common, "sweep": f"magnitude-lamp-{stamp}", "seed": seed, "top1": level, "test_top1": level,
             "baseline_test_top1": level + 0.09},
            {**common, "sweep": f"magnitude-global-{stamp}", "seed": seed, "top1": level, "test_top1": level - 0.02,
             "baseline_test_top1": level + 0.09},
            {**common, "sweep": f"magnitude-searched-tpe-{stamp}", "seed": seed, "top1": level + 0.01,
             "test_top1": level + 0.01, "baseline_test_top1": level + 0.09},
            {**common, "sweep": f"magnitude-searched-tpe-{stamp}", "seed": seed, "top1": level - 0.05,  # not picked
             "test_top1": level + 0.05, "baseline_test_top1": level + 0.09},
            {**common, "sweep": f"magnitude-searched-tpe-{stamp}", "seed": seed, "stage": "screen", "top1": 0.99,
             "test_top1": 0.99, "baseline_test_top1": level + 0.09},  # a screening row is never the pick
        ]
    picked = quality.picks(pd.DataFrame(rows), stamp)
    assert sorted(picked["strategy"].unique()) == ["global", "lamp", "searched-tpe"]
    text = quality.paired_table(picked)
    assert "`magnitude` at 0.02 (best one-shot: lamp); baseline test top-1 per seed: 99.00, 89.00" in text
    assert "| searched-tpe | 91.00 | 81.00 | 86.00 ± 7.07 | +1.00 ± 0.00 |" in text
    assert "| global | 88.00 | 78.00 | 83.00 ± 7.07 | -2.00 ± 0.00 |" in text


@pytest.mark.slow
def test_gpu_check_tiny_runs_on_a_cpu_without_ray_or_optuna(tmp_path):
    """benchmarks/gpu_check.py --tiny: every section runs (no error recorded), the trials' rows come
    back from Parquet, and neither it nor any process it starts imports Ray or Optuna (a lent GPU
    machine has neither)."""
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "gpu_check.py"), "--tiny", "--out", str(tmp_path)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["forbidden_modules"] == []
    loops = report["loops"]
    assert [row["loop"].split(" (")[0].split(",")[0] for row in loops] == [
        "prune-ray step", "prune-ray step", "plain PyTorch", "airbench-style"]
    assert all("error" not in row and row["images_per_s"] > 0 for row in loops), loops
    assert [row["processes"] for row in report["sharing"]] == [2] and "error" not in report["sharing"][0]
    rows = report["trials"]["rows"]
    assert sorted(row["trial_id"] for row in rows) == ["l1_filter-none", "magnitude-none"]
    assert all(row["status"] == "ok" for row in rows), rows
    assert "returncode" in report["gpu_tests"] and "skipped" in report["gpu_tests"]["summary"]  # no GPU here
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| prune-ray step, compiled |" in markdown and "| l1_filter-none | ok |" in markdown
