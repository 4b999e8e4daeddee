"""The recipes: a resnet20/cifar10 sweep on fixture files, and every recipe's smoke twin.

The smoke twins run in this process on one local Ray instance (started once for the module), the
way `python -m prune_ray.sweep RECIPE --smoke` runs them, minus a Ray start per recipe.
"""

import glob
import os

import pytest

from fixtures import make_cifar10, run_sweep_cli
from prune_ray import analyze, sweep
from prune_ray.points import quantize_variants
from prune_ray.results import read_results
from prune_ray.smoke import smoke_twin
from prune_ray.spec import load_spec

pytestmark = pytest.mark.ray
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(glob.glob(os.path.join(ROOT, "sweeps", "*.yaml")))


def test_recipes_exist_for_the_literature_and_the_source_documents():
    specs = [load_spec(path) for path in RECIPES]
    assert {"resnet20", "resnet56", "vgg16_bn"} <= {s.model for s in specs if s.dataset == "cifar10"}
    assert {"ratio-grid-vgg16_bn", "ratio-grid-resnet20", "ratio-grid-resnet56", "han-iterative-alexnet",
            "fpgm-resnet56", "conv-fc-lenet5-mnist", "conv-fc-alexnet-cifar10", "global-vgg11-noretrain",
            "global-vgg11-retrain", "global-densenet-noretrain", "global-densenet-retrain", "han2015-lenet300-mnist",
            "han2015-lenet5-mnist", "deep-compression-lenet300-mnist", "deep-compression-lenet5-mnist"} <= {s.name for s in specs}
    assert {"lenet_300_100", "lenet5_caffe"} <= {s.model for s in specs if s.dataset == "mnist"}  # the papers' networks


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
    assert len(frame) == points * len(twin.methods) * len(twin.prune_steps) * len(quantize_variants(twin)) * len(twin.seeds)
    assert (frame["status"] == "ok").all(), frame["error"].tolist()
    assert set(frame["model"]) == {twin.model} and set(frame["dataset"]) == {"digits"}
    if twin.schedule == "fixed":
        assert frame["budget"].isna().all()
    if twin.finetune.epochs == 0:
        assert (frame["top1"] == frame["top1_pruned"]).all()  # no retraining: nothing changed
    assert (frame["bytes_encoded"] > 0).all() and set(frame["quantizer"]) == set(twin.quantize)
    if any(m in ("magnitude", "magnitude_global", "conv_fc") for m in twin.methods):
        assert frame["conv_threshold"].notna().any() or frame["fc_threshold"].notna().any()
    # the analysis command reads the real sweep's Parquet: every table, CSV too, and the plot
    for table, fmt in (("frontier", "markdown"), ("frontier", "csv"), ("methods", "markdown"), ("ratio-grid", "markdown")):
        assert analyze.main([str(tmp_path), "--sweep", "s", "--table", table, "--format", fmt]) == 0
    assert analyze.main([str(tmp_path), "--sweep", "s", "--plot", str(tmp_path / "frontier.png")]) == 0
    assert (tmp_path / "frontier.png").stat().st_size > 10_000
