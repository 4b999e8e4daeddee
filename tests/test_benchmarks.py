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
    """The paired tables: per seed a strategy's test top-1 minus the best one-shot allocation's, and
    minus the best long fine-tune's, on the same baseline (a baseline's level cancels out), with the
    total fine-tuning epochs each strategy spent and a 95% t-interval over seeds."""
    import importlib.util

    import pandas as pd

    spec = importlib.util.spec_from_file_location("search_quality", os.path.join(ROOT, "benchmarks", "search_quality.py"))
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    common = {"status": "ok", "model": "lenet5", "method": "magnitude", "budget": 0.02, "budget_metric": "params",
              "search_epochs": 0}
    rows = []
    for seed, level in ((0, 0.90), (1, 0.80)):  # seed 1's baseline is 10 points worse for every strategy
        rows += [
            {**common, "sweep": "q-lenet5-magnitude--lamp", "seed": seed, "test_top1": level, "finetune_epochs": 3,
             "baseline_test_top1": level + 0.09},
            {**common, "sweep": "q-lenet5-magnitude--global", "seed": seed, "test_top1": level - 0.02,
             "finetune_epochs": 3, "baseline_test_top1": level + 0.09},
            {**common, "sweep": "q-lenet5-magnitude--race", "seed": seed, "test_top1": level + 0.01 * (1 + seed),
             "finetune_epochs": 3, "search_epochs": 21, "baseline_test_top1": level + 0.09},
            {**common, "sweep": "q-lenet5-magnitude--lamp-long", "seed": seed, "test_top1": level + 0.05,
             "finetune_epochs": 24, "baseline_test_top1": level + 0.09},
            {**common, "sweep": "other-sweep", "seed": seed, "test_top1": 0.99, "finetune_epochs": 3,
             "baseline_test_top1": level + 0.09},  # not the benchmark's: left out
        ]
    text = quality.paired_tables(pd.DataFrame(rows))
    assert ("`lenet5` `magnitude` at 0.02 of the params, 2 seeds; baseline test top-1 99.00, 89.00; "
            "best one-shot: lamp, best long: lamp-long") in text
    # race: +1 and +2 points over lamp (mean 1.5, std 0.71, t(1) 12.706: half-width 6.35)
    assert "| race | 24 | 91.00 | 82.00 | 86.50 | +1.50 [-4.85, +7.85] | -3.50 [-9.85, +2.85] |" in text
    assert "| global | 3 | 88.00 | 78.00 | 83.00 | -2.00 [-2.00, -2.00] | -7.00 [-7.00, -7.00] |" in text
    assert "other-sweep" not in text and text.count("| lamp-long | 24 |") == 1


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


@pytest.mark.slow
def test_search_quality_smoke_twin_runs_every_strategy_and_prints_the_paired_tables(tmp_path):
    """benchmarks/search_quality.py --smoke on digits: every strategy's trials are real run_trial
    rows, the race charges its rounds, and the report pairs each strategy with the best one-shot
    allocation and the best long fine-tune, then the proxies' rank correlations."""
    done = subprocess.run(
        [sys.executable, "benchmarks/search_quality.py", "--smoke", "--points", "digits", "--methods", "magnitude",
         "--strategies", "global", "knapsack", "race", "lamp-long", "--seeds", "0", "1", "--finetune-epochs", "1",
         "--storage", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    from prune_ray.results import read_results

    frame = read_results(str(tmp_path))
    assert (frame["status"] == "ok").all() and len(frame) == 4 * 1 * 2  # 4 strategies x the first budget x 2 seeds
    from prune_ray.results import read_steps

    race = frame[frame["sweep"] == "q-digits-magnitude--race"]
    steps = read_steps(str(tmp_path), "q-digits-magnitude--race", "race")
    for _, row in race.iterrows():  # round 1: 2 x 1 epoch; the final round's other entries (the priors) 1 epoch each
        final = steps[(steps["trial_id"] == row["trial_id"]) & (steps["round"] == 2)]
        assert set(final["prior"][final["is_prior"]]) == {"lamp", "global", "knapsack"}
        assert row["search_epochs"] == 2 * 1 + (len(final) - 1) * 1 and row["finetune_epochs"] == 1
    long = frame[frame["sweep"] == "q-digits-magnitude--lamp-long"]
    assert (long["finetune_epochs"] == 2 + 4).all()  # the race's total (its rounds, 1 + 3 in the final): equal cost
    assert "best one-shot:" in done.stdout and "| race |" in done.stdout and "| lamp-long | 6 |" in done.stdout
    assert "Spearman rank correlation of each proxy" in done.stdout
