import copy
import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers share the machine's two cores: one thread per process (this worker, and the Ray
    # workers and CLI subprocesses it starts, which inherit the variable), or OpenMP threads of
    # several processes spin against each other.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

from prune_ray.data import load_dataset
from prune_ray.models import create_model


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def trained_cnn(digits):
    """A digits_cnn trained for 2 epochs: real weights with spread magnitudes, quick to make."""
    from prune_ray.train import TrainRecipe, train

    torch.manual_seed(0)
    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=8)
    train(model, digits, TrainRecipe(epochs=2), seed=0)
    return model


@pytest.fixture
def cnn(trained_cnn):
    return copy.deepcopy(trained_cnn)


@pytest.fixture
def few_lowrank_sweeps(monkeypatch):
    """3 CP-ALS sweeps per layer instead of the method's 25, and Tucker-2 from its HOSVD start with 1
    HOOI sweep instead of 5: for tests that check that convs factorise into a working, smaller
    network that saves, reloads and exports exactly, none of which depends on how close the fit
    is (test_lowrank checks the fits). Full sweeps on every conv of the VGGs and ResNets were a
    quarter of the suite's time."""
    from prune_ray.prune import lowrank_methods

    monkeypatch.setattr(lowrank_methods, "CP_ITERATIONS", 3)
    monkeypatch.setattr(lowrank_methods, "TUCKER_ITERATIONS", 1)


def _weight(item) -> int:
    if "ray" in item.keywords:
        return 0
    return 1 if "test_methods_on_models" in item.nodeid else 2


def pytest_collection_modifyitems(config, items):
    """Tiers: everything that starts Ray (marker `ray`) is also `slow`, so `pytest -m "not slow"` is
    the fast tier; `gpu` tests are skipped without a CUDA device. Ray files and the method x model
    matrix are collected first (a stable sort keeps each file together), so the two xdist workers
    start with the long files and share out the short ones at the end."""
    items.sort(key=_weight)
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "ray" in item.keywords:
            item.add_marker(pytest.mark.slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_env():
    """Environment for CLI runs that start Ray: its temp dir and HOME (auth token) are the test's own.
    Ray's socket paths must stay short (AF_UNIX limit), so the dir is not pytest's long tmp_path."""
    import os
    import shutil
    import tempfile

    short = tempfile.mkdtemp(prefix="prt", dir="/tmp")
    yield {**os.environ, "RAY_TMPDIR": short, "HOME": short, "PYTHONUNBUFFERED": "1"}
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture(scope="session")
def local_ray(ray_env):
    """One in-process local Ray instance per xdist worker: sweeps run through `sweep.main` in this
    process, the way the CLI runs them, minus a Ray start per test. Per session, not per module: a
    worker interleaves modules, and a module-scoped instance was started again each time one of its
    modules came back (6 extra starts in the slow tier). One CPU: the other xdist worker
    has the other core, and a second concurrent trial is a second Ray actor process to start
    (~4 s of imports) that buys no time on a machine the suite already keeps busy (CPU of four
    twins and of four schedule tests: 115 and 179 s with two CPUs, 82 and 138 s with one)."""
    import ray

    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=ray_env["RAY_TMPDIR"], configure_logging=False,
             _system_config={"num_workers_soft_limit": 3})
    yield
    ray.shutdown()
