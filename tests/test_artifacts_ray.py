"""A user's checkpoint in, pruned models out, through a real sweep on Ray: the baseline is a
safetensors file (baseline.checkpoint), the default policy keeps one model per operating point,
and the exported model (safetensors and ONNX) has the row's accuracy."""

import os
import shutil

import numpy as np
import pytest
from safetensors.torch import save_file

from fixtures import run_sweep_cli as sweep
from prune_ray import load_pruned
from prune_ray.artifacts.export import main as export
from prune_ray.results import read_results
from prune_ray.train import evaluate

pytestmark = [pytest.mark.ray]

SPEC = """
name: roundtrip
methods: [magnitude, l1_filter]
budgets: [0.5]
search: {{num_samples: 2, max_concurrent: 2}}
baseline: {{checkpoint: {checkpoint}}}
finetune: {{epochs: 1, lr: 0.01}}
measure: {{latency_repeats: 3}}
"""


def test_checkpoint_in_sweep_export_reload_same_accuracy(tmp_path, ray_env, trained_cnn, digits, capsys):
    checkpoint = tmp_path / "baseline.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in trained_cnn.state_dict().items()}, str(checkpoint))
    (tmp_path / "spec.yaml").write_text(SPEC.format(checkpoint=checkpoint.name))  # relative to the sweep's directory
    result = sweep(ray_env, tmp_path, "spec.yaml", "--storage", "results", "--name", "rt")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    frame = read_results(str(tmp_path / "results"), "rt")
    assert len(frame) == 4 and (frame["status"] == "ok").all(), frame["error"].tolist()
    assert (frame["baseline_top1"] == evaluate(trained_cnn, digits.val_x, digits.val_y)[0]).all()  # the file was the baseline
    # artifacts.save best (the default): one model per operating point, the one the analysis picks
    kept = frame[frame["model_uri"].notna()]
    assert sorted(kept["method"]) == ["l1_filter", "magnitude"]
    assert sorted(os.listdir(tmp_path / "results" / "rt" / "models")) == sorted(kept["trial_id"])
    assert "models: 2 kept" in result.stdout
    for _, row in kept.iterrows():
        best = frame[frame["method"] == row["method"]]["top1"].max()
        assert row["top1"] == best

        out = tmp_path / f"out-{row['method']}"
        args = [str(tmp_path / "results"), "--sweep", "rt", "--pick", "--method", row["method"], "--budget", "0.5"]
        assert export([*args, "--format", "safetensors", "--out", str(out)]) == 0
        assert evaluate(load_pruned(str(out)), digits.val_x, digits.val_y)[0] == row["top1"]
        assert export([*args, "--format", "onnx", "--out", str(out)]) == 0
        # onnxruntime differs from PyTorch by ~1e-6: a near-tie could flip one example, no more
        assert _onnx_top1(str(out / "model.onnx"), digits) == pytest.approx(row["top1"], abs=1 / len(digits.val_y))
    capsys.readouterr()
    _moved_and_copied_sweeps_load_their_own_models(tmp_path, kept, digits, capsys)


def _moved_and_copied_sweeps_load_their_own_models(tmp_path, kept, digits, capsys):
    """The sweep's directory moved: read_results, load_pruned (row or trial id) and export --pick
    work from the new place. Copied, with a model deleted in the copy: a one-line error naming the
    copy's missing file (the original, still there, is never read)."""
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "results", moved)
    frame = read_results(str(moved), "rt")
    for _, row in frame[frame["model_uri"].notna()].iterrows():
        assert row["model_uri"].startswith(str(moved / "rt" / "models"))
        model = load_pruned(row)
        assert evaluate(model, digits.val_x, digits.val_y)[0] == row["top1"]
        assert load_pruned(row["trial_id"], str(moved)).prune_ray_meta == model.prune_ray_meta
    pick = ["--sweep", "rt", "--pick", "--method", "l1_filter", "--budget", "0.5", "--format", "safetensors"]
    assert export([str(moved), *pick, "--out", str(tmp_path / "from-moved")]) == 0

    copy = tmp_path / "copy"
    shutil.copytree(moved, copy)
    picked = kept.loc[kept["method"] == "l1_filter", "trial_id"].iloc[0]
    shutil.rmtree(copy / "rt" / "models" / picked)
    assert export([str(copy), *pick, "--out", str(tmp_path / "from-copy")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and str(copy / "rt" / "models" / picked / "plan.json") in error[0], error


def _onnx_top1(path: str, digits) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: digits.val_x.numpy()})[0]
    return float(np.mean(logits.argmax(axis=1) == digits.val_y.numpy()))
