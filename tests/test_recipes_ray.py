"""The recipes: a resnet20/cifar10 sweep on fixture files, and every recipe's smoke twin.

The smoke twins run in this process on one local Ray instance (started once for the module), the
way `python -m prune_ray.sweep RECIPE --smoke` runs them, minus a Ray start per recipe.
"""

import glob
import os

import pytest

from fixtures import make_cifar10, run_sweep_cli
from prune_ray import analyze, sweep
from prune_ray.results import read_results
from prune_ray.plan import get_schedule, list_schedules
from prune_ray.spec import load_spec, smoke_twin

pytestmark = pytest.mark.ray
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(glob.glob(os.path.join(ROOT, "sweeps", "*.yaml")))


def test_recipes_exist_for_the_literature_and_the_source_documents():
    specs = [load_spec(path) for path in RECIPES]
    assert {"resnet20", "resnet56", "vgg16_bn"} <= {s.model for s in specs if s.dataset == "cifar10"}
    assert {"ratio-grid-vgg16_bn", "ratio-grid-resnet20", "ratio-grid-resnet56", "han-iterative-alexnet",
            "fpgm-resnet56", "conv-fc-lenet5-mnist", "conv-fc-alexnet-cifar10", "global-vgg11-noretrain",
            "global-vgg11-retrain", "global-densenet-noretrain", "global-densenet-retrain"} <= {s.name for s in specs}


def test_resnet20_on_cifar10_files_runs_end_to_end(tmp_path, ray_env):
    make_cifar10(str(tmp_path / "data"))
    (tmp_path / "spec.yaml").write_text(
        f"""
name: r20
model: resnet20
dataset: cifar10
data: {{root: {tmp_path / "data"}, val_fraction: 0.2}}
methods: [l1_filter]
budgets: [0.5]
search: {{num_samples: 1}}
baseline: {{train: {{epochs: 1, batch_size: 64}}}}
finetune: {{epochs: 1, batch_size: 64}}
measure: {{latency_batch_size: 4, latency_repeats: 2}}
resources: {{cpu: 1, gpu: 0.5}}
"""
    )
    result = run_sweep_cli(ray_env, tmp_path, "spec.yaml", "--storage", "results", "--name", "r20")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no GPU here" in result.stdout  # the GPU spec ran on this CPU-only machine
    row = read_results(str(tmp_path / "results"), "r20").iloc[0]
    assert row["status"] == "ok" and row["model"] == "resnet20" and row["dataset"] == "cifar10"
    assert 0.49 <= row["macs_keep"] <= 0.5
    assert row["baseline_macs"] > 40e6  # a real 32x32 ResNet-20
    assert 0 <= row["test_top1"] <= 1 and 0 <= row["baseline_test_top1"] <= 1


@pytest.mark.parametrize("recipe", RECIPES, ids=os.path.basename)
def test_recipe_smoke_twin_runs(tmp_path, local_ray, recipe):
    code = sweep.main([recipe, "--smoke", "--storage", str(tmp_path), "--name", "s"])
    assert code == 0
    frame = read_results(str(tmp_path), "s")
    twin = smoke_twin(load_spec(recipe))
    points = len(twin.fixed_ratios) if twin.schedule == "fixed" else max(1, len(twin.budgets))  # []: one frontier search
    assert len(frame) == points * len(twin.methods) * len(twin.prune_steps) * len(twin.seeds)
    assert (frame["status"] == "ok").all(), frame["error"].tolist()
    assert set(frame["model"]) == {twin.model} and set(frame["dataset"]) == {"digits"}
    if twin.schedule == "fixed":
        assert frame["budget"].isna().all()
    if twin.finetune.epochs == 0:
        assert (frame["top1"] == frame["top1_pruned"]).all()  # no retraining: nothing changed
    if any(m in ("magnitude", "magnitude_global", "conv_fc") for m in twin.methods):
        assert frame["conv_threshold"].notna().any() or frame["fc_threshold"].notna().any()
    # the analysis command reads the real sweep's Parquet: every table, both formats, and the plot
    for table in ("frontier", "methods", "ratio-grid"):
        for fmt in ("markdown", "csv"):
            assert analyze.main([str(tmp_path), "--sweep", "s", "--table", table, "--format", fmt]) == 0
    assert analyze.main([str(tmp_path), "--sweep", "s", "--plot", str(tmp_path / "frontier.png")]) == 0
    assert (tmp_path / "frontier.png").stat().st_size > 10_000



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
    assert (screen["top1"] == screen["top1_pruned_bn"]).all()  # no fine-tuning: the recalibrated accuracy
    assert (screen["top1_pruned_bn"] > screen["top1_pruned"]).any()  # recalibration did something
    assert len(final) == 1 and final["finetune_epochs"].iloc[0] == 2
    best = screen.sort_values("top1").iloc[-1]
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
