"""A latency-budgeted sweep on digits (structured methods) on a real local Ray (in process, as the
CLI runs it): planned from the latency table, checked on the measured latency by the one budget
rule (whether this machine meets it is not asserted); and the CLI refuses a latency budget for an
unstructured method before Ray starts."""

import glob

import pytest

from fixtures import run_sweep_cli as sweep
from prune_ray.results import read_results
from prune_ray.results.frontier import row_resource_keep
from prune_ray.sweep import main as sweep_main
from prune_ray.trial_row import within_budget

pytestmark = pytest.mark.ray

BUDGET = 0.7
SPEC = f"""
name: latency
methods: [l1_filter, fpgm]
budgets: [{BUDGET}]
search: {{max_concurrent: 1}}  # one trial at a time: neither times itself against the other's training
budget_metric: latency
schedule: uniform
baseline: {{train: {{epochs: 2}}}}
finetune: {{epochs: 1}}
measure: {{latency_batch_size: 256}}
"""


def test_a_latency_budget_sweep_plans_from_the_table_and_checks_the_measured_latency(tmp_path, local_ray):
    """Through Ray: each trial plans from the per-layer latency table (its prediction meets the
    budget), times the pruned model against the baseline, and applies the one budget rule to that
    measurement. Whether this machine's clock lets a trial meet the budget is not asserted (no test
    asserts a measured time): a row is 'ok' exactly when its measured interval's fast end is within
    the budget, and otherwise fails naming the latency it kept. The rule is tested on constructed
    rows (tests/test_results.py), the paired timing with an injected clock (tests/test_measure.py)."""
    (tmp_path / "spec.yaml").write_text(SPEC)
    assert sweep_main([str(tmp_path / "spec.yaml"), "--storage", str(tmp_path / "results"), "--name", "latency"]) == 0
    frame = read_results(str(tmp_path / "results"), "latency")
    assert len(frame) == 2 and set(frame["method"]) == {"l1_filter", "fpgm"}
    for _, row in frame.iterrows():
        assert row["budget_metric"] == "latency"
        # the table's prediction, recorded at this trial's machine speed: the plan met the budget on it
        assert 0 < row["latency_predicted_ms"] <= BUDGET * row["baseline_latency_ms"] * (1 + 1e-6)
        assert row["macs_keep"] < 1 and row["latency_ms"] > 0 and row["speedup_low"] <= row["speedup_high"]
        assert row["latency_keep"] == pytest.approx(1 / row["speedup_measured"])
        # the trial's own rule on its own row: the fastest the paired interval allows, within the budget
        if within_budget(row_resource_keep(row.to_dict(), lowest_supported=True), BUDGET):
            assert 1 / row["speedup_high"] <= BUDGET * (1 + 1e-9)
            assert row["status"] == "ok", row["error"]
        else:
            assert row["status"] == "failed" and "of latency, over budget 0.7" in row["error"], row["error"]
    # one table per model, dataset, device and batch size, in the storage
    assert len(glob.glob(str(tmp_path / "results" / "latency" / "digits_cnn-digits-cpu*-b256.json"))) == 1


def test_a_latency_budget_with_an_unstructured_method_exits_2_before_ray(tmp_path, ray_env):
    (tmp_path / "spec.yaml").write_text(SPEC.replace("[l1_filter, fpgm]", "[l1_filter, magnitude]"))
    result = sweep(ray_env, tmp_path, "spec.yaml", "--storage", "results")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("prune-ray sweep: error: budget_metric 'latency' cannot be met by unstructured")
    assert not (tmp_path / "results").exists()
