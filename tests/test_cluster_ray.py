"""Sweeps on a real three-node Ray cluster started on loopback addresses (fake GPUs)."""

import sys
import time

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from loopback_cluster import LoopbackCluster
from prune_ray.results import read_results

pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("loopback-cluster")]
SWEEP = [sys.executable, "-m", "prune_ray.sweep"]
SPEC = """
name: cluster
methods: [magnitude, l1_filter]
budgets: [0.6, 0.4]
search: {num_samples: 1, max_concurrent: 4}
baseline: {train: {epochs: 2}}
finetune: {epochs: %(epochs)d}
measure: {latency_repeats: 2}
resources: {cpu: 1, gpu: 0.5}
max_failures: 3
"""
PLANNED = 4  # 2 budgets x 2 methods x 1 sample


@pytest.fixture
def cluster(request):
    cpus, gpus = getattr(request, "param", (1, 2))  # per node
    cluster = LoopbackCluster()
    try:
        cluster.start_head(cpus=cpus, gpus=gpus)
        cluster.add_worker("worker1", "127.0.0.3", cpus=cpus, gpus=gpus)
        yield cluster
    finally:
        cluster.stop()
        assert cluster.pids() == [], "the test left Ray processes behind"


def write_spec(tmp_path, epochs: int) -> str:
    (tmp_path / "spec.yaml").write_text(SPEC % {"epochs": epochs})
    return "spec.yaml"


def exactly_one_ok_row_per_planned_trial(storage, sweep):
    frame = read_results(str(storage), sweep)
    assert len(frame) == PLANNED, frame[["trial_id", "status", "error"]].to_string()
    assert frame["trial_id"].is_unique
    assert (frame["status"] == "ok").all(), frame["error"].tolist()
    assert sorted(zip(frame["budget"], frame["method"])) == [
        (0.4, "l1_filter"), (0.4, "magnitude"), (0.6, "l1_filter"), (0.6, "magnitude")
    ]
    return frame


@pytest.mark.parametrize("cluster", [(2, 1)], indirect=True)  # 2 CPUs and 1 (fake) GPU per node
def test_trials_spread_over_nodes_with_fractional_gpus(cluster, tmp_path):
    spec = write_spec(tmp_path, epochs=2)
    result = cluster.run([*SWEEP, spec, "--address", cluster.address, "--storage", str(tmp_path / "r"), "--name", "s"], tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    frame = exactly_one_ok_row_per_planned_trial(tmp_path / "r", "s")
    assert set(frame["node"]) == {"127.0.0.2", "127.0.0.3"}  # both nodes ran trials
    # gpu: 0.5 kept on the cluster: two trials ran at once on a node that has one GPU
    overlapping = [
        node for node, rows in frame.groupby("node")
        if any(a.started_at < b.finished_at and b.started_at < a.finished_at
               for i, a in enumerate(rows.itertuples()) for b in list(rows.itertuples())[i + 1:])
    ]
    assert overlapping, frame[["node", "started_at", "finished_at"]].to_string()


def test_a_killed_worker_node_costs_a_retry_not_a_row(cluster, tmp_path):
    spec = write_spec(tmp_path, epochs=8)
    driver = cluster.popen([*SWEEP, spec, "--address", cluster.address, "--storage", str(tmp_path / "r"), "--name", "s"], tmp_path)
    try:
        assert cluster.wait_for("worker1", "ImplicitFunc", timeout=180), "no trial started on the worker node"
        cluster.kill_node("worker1")
        output, _ = driver.communicate(timeout=600)
    finally:
        driver.kill()
    assert driver.returncode == 0, output[-4000:]
    frame = exactly_one_ok_row_per_planned_trial(tmp_path / "r", "s")
    assert set(frame["node"]) == {"127.0.0.2"}  # the dead node's trial was rerun on the head


def test_a_killed_driver_resumes_without_losing_or_duplicating_rows(cluster, tmp_path):
    spec = write_spec(tmp_path, epochs=6)
    storage = tmp_path / "r"
    driver = cluster.popen([*SWEEP, spec, "--address", cluster.address, "--storage", str(storage), "--name", "s"], tmp_path)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and len(list((storage / "s" / "trials").glob("*.parquet"))) < 1:
            time.sleep(0.3)
        assert len(list((storage / "s" / "trials").glob("*.parquet"))) >= 1, "no trial finished"
        driver.kill()  # SIGKILL: no cleanup, as when a laptop sleeps or a head node dies
        driver.wait(timeout=30)
    finally:
        driver.kill()
    finished_before = len(list((storage / "s" / "trials").glob("*.parquet")))
    assert finished_before < PLANNED, "the sweep finished before it could be interrupted"
    resumed = cluster.run([*SWEEP, "--resume", "--name", "s", "--address", cluster.address, "--storage", str(storage)], tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout
    exactly_one_ok_row_per_planned_trial(storage, "s")
    # the Optuna studies continued in the journal: one answer per planned trial, none left running
    journal = JournalStorage(JournalFileBackend(str(storage / "s" / "optuna.journal")))
    names = optuna.study.get_all_study_names(storage=journal)
    assert len(names) == PLANNED  # one study per operating point
    for name in names:
        states = [t.state.name for t in optuna.load_study(study_name=name, storage=journal).trials]
        assert states.count("COMPLETE") == 1 and "RUNNING" not in states, (name, states)


def test_storage_a_node_cannot_see_is_refused_before_anything_runs(tmp_path):
    cluster = LoopbackCluster()
    storage = tmp_path / "local-disk"
    try:
        cluster.start_head(cpus=1, gpus=0)
        cluster.add_worker("worker1", "127.0.0.3", cpus=1, gpus=0, hide=str(storage))
        spec = write_spec(tmp_path, epochs=1)
        result = cluster.run([*SWEEP, spec, "--address", cluster.address, "--storage", str(storage), "--name", "s"], tmp_path)
    finally:
        cluster.stop()
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 of 2 cluster nodes cannot see" in result.stderr and "s3://" in result.stderr
    assert not (storage / "s").exists() and not list(storage.glob(".node-check-*"))
    assert cluster.pids() == []
