"""benchmarks/mnist_papers.py: the real MNIST it reads (../shared/data/mnist, absent from a fresh
clone: those tests skip), its bad input, and the papers' networks' pruning rates in the recipes."""

import hashlib
import json
import importlib.util
import os
import sys

import pytest
import torch

from prune_ray.data import DataOptions, load_dataset
from prune_ray.models import create_model
from prune_ray.spec import load_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST = os.path.join(ROOT, "..", "shared", "data", "mnist")
needs_mnist = pytest.mark.skipif(not os.path.exists(os.path.join(MNIST, "README.md")),
                                 reason=f"real MNIST not at {MNIST} (a fresh clone has no ../shared)")


def _benchmark():
    spec = importlib.util.spec_from_file_location("mnist_papers", os.path.join(ROOT, "benchmarks", "mnist_papers.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["mnist_papers"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@needs_mnist
@pytest.mark.slow
def test_real_mnist_unpacks_to_the_readmes_files_and_loads(tmp_path):
    root = _benchmark().unpack_mnist(MNIST, str(tmp_path))
    readme = open(os.path.join(MNIST, "README.md")).read()
    for name in os.listdir(os.path.join(root, "MNIST", "raw")):
        digest = hashlib.md5(open(os.path.join(root, "MNIST", "raw", name), "rb").read()).hexdigest()
        assert f"{digest}  {name}" in readme
    data = load_dataset("mnist", DataOptions(root=root, download=False, val_fraction=0.1))
    assert len(data.train_x) + len(data.val_x) == 60_000 and abs(len(data.val_x) - 6_000) <= 10 and len(data.test_x) == 10_000
    assert data.test_x.shape[1:] == (1, 28, 28) and set(data.test_y.tolist()) == set(range(10))


def test_benchmark_refuses_a_folder_without_mnist(tmp_path, capsys):
    assert _benchmark().main(["--mnist", str(tmp_path), "--storage", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(tmp_path) in error and "train-images-idx3-ubyte" in error
    assert not (tmp_path / "out").exists()  # nothing written before the check


@pytest.mark.parametrize("recipe, papers_rates", [
    ("han2015_lenet300_mnist.yaml", {"fc1": 0.92, "fc2": 0.91, "fc3": 0.74}),  # Han et al. 2015, Table 2
    ("han2015_lenet5_mnist.yaml", {"conv1": 0.34, "conv2": 0.88, "fc1": 0.92, "fc2": 0.81}),  # Table 3
])
def test_han2015_recipes_hold_the_papers_rates_and_ours_at_12x(recipe, papers_rates):
    spec = load_spec(os.path.join(ROOT, "sweeps", recipe))
    assert spec.fixed_ratios[0] == papers_rates and spec.iterative == "cycles" and spec.methods == ("magnitude",)
    model = create_model(spec.model, num_classes=10, in_channels=1, image_size=28)
    weights = {name: m.weight.numel() for name, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    for ratios in spec.fixed_ratios:
        assert set(ratios) == set(weights)  # every layer named: nothing left at its default
        kept = sum(count * (1 - ratios[name]) for name, count in weights.items())
        assert sum(weights.values()) / kept >= 11.8  # ~12x fewer weights (the paper's rates give 11.9x and 12.2x)
    ours = spec.fixed_ratios[1]
    assert sum(weights.values()) / sum(c * (1 - ours[n]) for n, c in weights.items()) >= 12


@pytest.mark.parametrize("network", ["lenet300", "lenet5"])
def test_a_networks_two_recipes_share_its_baseline_and_its_retraining(network):
    """The benchmark trains each network's baseline once for both recipes, and leaves Deep
    Compression's unquantised twin out as the han2015 recipe's second point trained the same way."""
    han = load_spec(os.path.join(ROOT, "sweeps", f"han2015_{network}_mnist.yaml"))
    dc = load_spec(os.path.join(ROOT, "sweeps", f"deep_compression_{network}_mnist.yaml"))
    assert han.baseline == dc.baseline and han.finetune == dc.finetune and han.seeds == dc.seeds
    assert dc.fixed_ratios == (han.fixed_ratios[1],) and dc.prune_steps == han.prune_steps


def test_stage_bits_split_the_encoded_file_over_its_nonzero_weights(tmp_path):
    from prune_ray.quantize import BitWidths, get_quantizer
    from prune_ray.quantize.encoding import encode_model

    torch.manual_seed(0)
    model = create_model("lenet_300_100", num_classes=10, in_channels=1, image_size=8)
    with torch.no_grad():
        for layer in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
            layer.weight[layer.weight.abs() < layer.weight.abs().quantile(0.9)] = 0  # 10% kept
    codes = get_quantizer("kmeans").quantize(model, BitWidths(8, 4)).freeze()
    data = encode_model(model.state_dict(), codes).data
    (tmp_path / "model.encoded").write_bytes(data)
    bits = _benchmark().stage_bits(str(tmp_path))
    nonzero = sum(int((m.weight != 0).sum()) for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert bits["nonzero"] == nonzero and bits["file_bytes"] == len(data)
    assert bits["index"] + bits["codes"] + bits["floats"] + bits["header"] == pytest.approx(bits["total"])
    assert bits["total"] == pytest.approx(8 * len(data) / nonzero)
    assert 0 < bits["codes"] <= 4 + 1  # 4-bit codes, entropy coded: at most the raw width plus the code table


def _paired():
    spec = importlib.util.spec_from_file_location("mnist_paired", os.path.join(ROOT, "benchmarks", "mnist_paired.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_summary_pools_the_logs_seeds_per_setting(tmp_path, capsys):
    """--summarise: each setting over all its seeds across log files (a seed logged again: its last
    line); differences 0.0 and 0.2 give mean 0.1, half-widths t(0.975, 1) x 0.1 = 1.271 and
    t(0.95, 1) x 0.1 = 0.631 (sd 0.1414 over sqrt 2)."""
    setting = {"recipe": "r.yaml", "ratios": {"fc1": 0.9}, "steps": 5, "finetune": [], "baseline_override": []}
    other = {**setting, "finetune": ["distill=0.5"]}
    lines = [({**setting, "seed": 0, "difference": 0.5}, "a"), ({**setting, "seed": 1, "difference": 0.2}, "a"),
             ({**setting, "seed": 0, "difference": 0.0}, "b"), ({**other, "seed": 0, "difference": 0.3}, "b")]
    for row, name in lines:
        with open(tmp_path / name, "a") as handle:
            handle.write(json.dumps(row) + "\n")
    assert _paired().main(["--summarise", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    first, second = out.split('{"baseline_override"')[1:]
    assert "seeds [0, 1]" in first and "+0.100 point, 95% interval [-1.171, +1.371], one-sided 95% upper bound +0.731" in first
    assert "distill=0.5" in second and "over 1 seeds: +0.300 point" in second
