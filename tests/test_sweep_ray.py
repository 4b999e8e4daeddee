"""End to end through a real local Ray instance: the CLI, Tune, Optuna, Parquet."""

import os
import shutil
import tempfile

import pytest

from fixtures import run_sweep_cli as sweep
from prune_ray.results import read_epochs, read_results
from prune_ray.sweep import main as sweep_main

pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("cli-sweeps")]  # one process: a module-scoped sweep

SPEC = """
name: it
methods: [magnitude, l1_filter]
budgets: [0.7, 0.4]
search: {num_samples: 1, max_concurrent: 2}
baseline: {train: {epochs: 3}}
finetune: {epochs: 2, lr: 0.01}
measure: {latency_repeats: 3}
"""


@pytest.fixture(scope="session")  # not module: the worker interleaves modules, and a module fixture ran twice
def first_sweep(tmp_path_factory, ray_env):
    root = tmp_path_factory.mktemp("sweep")
    (root / "spec.yaml").write_text(SPEC)
    ray_tmp = tempfile.mkdtemp(prefix="prt", dir="/tmp")  # this sweep's own: what Ray left there is checked
    result = sweep({**ray_env, "RAY_TMPDIR": ray_tmp}, root, "spec.yaml", "--storage", "results", "--name", "first")
    result.ray_tmp_left = os.listdir(ray_tmp)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root, result


def test_sweep_writes_one_ok_row_per_trial_meeting_its_budget(first_sweep):
    root, result = first_sweep
    storage = root / "results"
    frame = read_results(str(storage), "first")
    assert len(frame) == 4  # 2 budgets x 2 methods x 1 sample
    assert frame["trial_id"].is_unique
    assert (frame["status"] == "ok").all(), frame["error"].tolist()
    assert sorted(zip(frame["budget"], frame["method"])) == [
        (0.4, "l1_filter"), (0.4, "magnitude"), (0.7, "l1_filter"), (0.7, "magnitude")
    ]
    for _, row in frame.iterrows():
        keep = row["macs_keep"] if row["method"] == "l1_filter" else row["params_keep"]
        assert row["budget"] * 0.98 <= keep <= row["budget"], (row["method"], row["budget"], keep)
        for column in ["top1", "top5", "top1_pruned", "baseline_top1"]:
            assert 0.0 <= row[column] <= 1.0
        assert row["sampler"] == "tpe" and row["schedule"] == "searched"
        assert len(row["layer_names"]) == len(row["layer_ratios"]) > 0
    structured = frame[frame["method"] == "l1_filter"]
    assert (structured["params"] < structured["baseline_params"]).all()
    assert (structured["macs"] < structured["baseline_macs"]).all()
    unstructured = frame[frame["method"] == "magnitude"]
    assert (unstructured["params_nonzero"] < unstructured["baseline_params"]).all()
    assert len(read_epochs(str(storage), "first")) == 4 * 3  # epoch 0 (pruned) + 2 fine-tuning epochs
    # the closing lines say where the Parquet is and show the best rows
    assert f"results: {storage}/first/trials" in result.stdout
    assert "best row per budget and method" in result.stdout


def test_the_console_is_quiet(first_sweep):
    """The transcript a user sees (stdout and stderr of the real CLI): a header, a line per trial,
    the summary; no Ray or Tune banners, no shutdown noise, nothing wider than 100 columns, and
    Ray's session directory removed."""
    root, result = first_sweep
    lines = (result.stdout + result.stderr).splitlines()
    trials = 4
    assert lines[0] == "[prune-ray] sweep first in results/: 4 trials planned", lines[:3]
    assert [line for line in lines if "Traceback" in line or "Exception ignored" in line] == []
    assert [line for line in lines if len(line) > 100] == []
    assert len(lines) <= trials + 15, "\n".join(lines)
    assert not any(word in result.stdout + result.stderr for word in ("TensorBoard", "Configuration for experiment",
                                                                        "Token authentication"))
    assert [line for line in lines if line.startswith("[prune-ray] 4/4 ")]  # one line per finished trial
    assert lines[-1].split()[-1] in set(read_results(str(root / "results"), "first")["trial_id"])  # the summary ends it
    assert result.ray_tmp_left == []  # Ray's session directory removed at exit


def test_second_sweep_loads_the_stored_baseline(first_sweep, local_ray, capsys):
    """The second sweep in process (sweep.main, as the CLI calls it; the first ran the real CLI)."""
    root, first = first_sweep
    baseline_dir = next((root / "results" / "baselines").iterdir())
    weights = baseline_dir / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    code = sweep_main([str(root / "spec.yaml"), "--storage", str(root / "results"), "--name", "second", "--budget", "0.5",
                       "--num-samples", "1"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    assert "trained in" in first.stdout and "loaded from the store" in out
    assert weights.stat().st_mtime_ns == stamp  # nothing was retrained or rewritten
    before = read_results(str(root / "results"), "first")
    after = read_results(str(root / "results"), "second")
    assert len(after) == 2 and (after["status"] == "ok").all()
    assert (after["time_baseline_s"] < 1.0).all()
    assert (before["time_baseline_s"] > after["time_baseline_s"].max()).all()
    assert set(after["baseline_top1"]) == set(before["baseline_top1"])
    # the same sweep name again is refused rather than mixed into the old results
    assert sweep_main([str(root / "spec.yaml"), "--storage", str(root / "results"), "--name", "second"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_sweep_whose_every_trial_fails_exits_nonzero_with_the_errors(tmp_path, local_ray, capsys):
    """In process (sweep.main, as the CLI calls it): exit code 3 and the errors in the output."""
    (tmp_path / "spec.yaml").write_text(SPEC + "seeds: [0, 1]\n")
    code = sweep_main([str(tmp_path / "spec.yaml"), "--storage", str(tmp_path / "results"), "--name", "bad",
                       "--budget", "0.0001", "--num-samples", "1"])
    result = capsys.readouterr()
    assert code == 3, result.out[-2000:]
    frame = read_results(str(tmp_path / "results"), "bad")
    assert len(frame) == 4 and (frame["status"] == "failed").all()  # 2 methods x 2 seeds
    assert sorted(frame["seed"]) == [0, 0, 1, 1]
    assert len(list((tmp_path / "results" / "baselines").iterdir())) == 2  # one baseline per seed
    assert "budget unreachable" in " ".join(result.out.split())  # the summary wraps each error to 100 columns
    # the console's own lines, but not the two that hold a path (the header, "results:"), which is never
    # cut (here pytest's long tmp), nor what this process's Ray, started by the test with
    # log_to_driver, forwards from its workers as "(... pid=...)"
    ours = [line for line in result.out.splitlines()[1:]
            if "pid=" not in line.split(")")[0] and not line.startswith("[prune-ray] results: ")]
    assert max(map(len, ours)) <= 100, [line for line in ours if len(line) > 100]
