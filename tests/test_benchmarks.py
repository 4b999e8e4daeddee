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
