"""A sweep stopped by SIGINT mid-way (a real `python -m prune_ray.sweep` process) is a failure you
can resume: exit 130, finished trials keep their rows and models, unfinished ones say
'interrupted', no model retention on the partial sweep, the last line is the --resume command;
--resume then finishes every planned trial exactly once and runs retention once, at the end."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pyarrow.parquet as pq
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from safetensors.torch import save_file

from prune_ray.results import read_results
from prune_ray.sweep import main as sweep_main
from prune_ray.tune.interrupt import resume_command

pytestmark = [pytest.mark.ray]

SPEC = """
name: stop
methods: [magnitude]
budgets: [0.8, 0.6, 0.4]
search: {num_samples: 1, max_concurrent: 1}
baseline: {checkpoint: base.safetensors}
finetune: {epochs: 4, lr: 0.01}
measure: {latency_repeats: 3}
"""
PLANNED = 3  # 3 budgets x 1 sample: one finishes, one is cut short, one never starts


def _statuses(trials) -> list[str]:
    """The status of every complete row file (a file being written has a temporary name)."""
    if not trials.exists():
        return []
    return [pq.read_table(path, columns=["status"])["status"][0].as_py()
            for path in trials.iterdir() if path.suffix == ".parquet" and not path.name.startswith(".")]


def _wait_for_a_finished_and_a_running_trial(process, trials, timeout: float = 600) -> None:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        statuses = _statuses(trials)
        if "ok" in statuses and "running" in statuses:
            return
        assert process.poll() is None, process.communicate()[0][-3000:]
        time.sleep(0.2)
    raise AssertionError(f"no finished and running trials after {timeout} s: {_statuses(trials)}")


def test_sigint_mid_sweep_then_resume_finishes_every_trial_once(tmp_path, ray_env, trained_cnn, local_ray, capsys):
    save_file({name: tensor.contiguous() for name, tensor in trained_cnn.state_dict().items()}, str(tmp_path / "base.safetensors"))
    (tmp_path / "spec.yaml").write_text(SPEC)
    results = tmp_path / "results"
    process = subprocess.Popen([sys.executable, "-m", "prune_ray.sweep", "spec.yaml", "--storage", "results", "--name", "stop"],
                               cwd=tmp_path, env=ray_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_a_finished_and_a_running_trial(process, results / "stop" / "trials")
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, out[-3000:]
    assert out.strip().splitlines()[-1] == resume_command("stop", str(results), None)
    assert "Tuner.restore" not in out and "Resume experiment with" not in out  # Tune's own hint is not ours
    assert "models:" not in out  # no retention on a partial sweep

    stopped = read_results(str(results), "stop")
    assert set(stopped["status"]) == {"ok", "interrupted"}, stopped[["trial_id", "status", "error"]]
    ok = stopped[stopped["status"] == "ok"]
    assert ok["model_uri"].notna().all() and all(os.path.isdir(uri) for uri in ok["model_uri"])  # no model deleted
    interrupted = set(stopped.loc[stopped["status"] == "interrupted", "trial_id"])

    code = sweep_main(["--resume", "--name", "stop", "--storage", str(results)])  # in process: the Ray already running
    printed = capsys.readouterr().out
    assert code == 0, printed[-3000:]
    final = read_results(str(results), "stop")
    assert len(final) == PLANNED and final["trial_id"].is_unique and (final["status"] == "ok").all(), final[["trial_id", "status"]]
    assert sorted(final["budget"].value_counts().items()) == [(0.4, 1), (0.6, 1), (0.8, 1)]  # every planned point
    assert interrupted <= set(final["trial_id"]) and set(ok["trial_id"]) <= set(final["trial_id"])  # none lost
    assert printed.count("[prune-ray] models:") == 1  # retention once, at the end
    kept = final[final["model_uri"].notna()]
    assert sorted(os.listdir(results / "stop" / "models")) == sorted(kept["trial_id"])
    # the Optuna studies continued: one answer per planned trial, none left running by the interrupt
    journal = JournalStorage(JournalFileBackend(str(results / "stop" / "optuna.journal")))
    for name in optuna.study.get_all_study_names(storage=journal):
        states = [t.state.name for t in optuna.load_study(study_name=name, storage=journal).trials]
        assert states == ["COMPLETE"], (name, states)
