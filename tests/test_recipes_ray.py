"""The CIFAR recipes: a resnet20/cifar10 sweep on fixture files, and each recipe's smoke twin."""

import glob
import os

import pytest

from fixtures import make_cifar10, run_sweep_cli
from prune_ray.results import read_results
from prune_ray.spec import load_spec

pytestmark = pytest.mark.ray
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(glob.glob(os.path.join(ROOT, "sweeps", "cifar10_*.yaml")))


def test_recipes_exist_for_the_literature_baselines():
    names = {load_spec(path).model for path in RECIPES}
    assert {"resnet20", "resnet56", "vgg16_bn"} <= names


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
def test_recipe_smoke_twin_runs(tmp_path, ray_env, recipe):
    result = run_sweep_cli(ray_env, tmp_path, recipe, "--smoke", "--budget", "0.5", "--storage", "results", "--name", "s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    frame = read_results(str(tmp_path / "results"), "s")
    spec = load_spec(recipe)
    assert len(frame) == len(spec.methods) and (frame["status"] == "ok").all(), frame["error"].tolist()
    assert set(frame["model"]) == {spec.model} and set(frame["dataset"]) == {"digits"}
