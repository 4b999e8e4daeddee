"""The cluster side of a sweep: starting or joining Ray, fitting requests to a local machine, and
checking that a local storage path is one filesystem every node sees."""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import uuid

from ..plan import get_schedule
from ..spec import SweepSpec

LOCAL_NODE_ADDRESS = "127.0.0.2"
SESSION_PREFIX = "pr-"  # a local sweep's Ray session directory: SESSION_PREFIX + 8 random characters (short: see below)
# what Ray appends under that directory, at its longest: session_<date>_<time>_<microseconds>_<pid up to
# 7 digits>/sockets/plasma_store (ray._private.node; its raylet socket name is shorter)
RAY_SOCKET_TAIL = len("/session_2026-12-07_01-23-06_359967_4194304/sockets/plasma_store")


class RayTempDirError(ValueError):
    """A temporary directory too long for the Unix socket paths Ray makes under it."""


def ray_temp_root() -> str:
    """Where a local sweep puts Ray's session directory: the directory Ray itself would use
    (ray._common.utils.get_default_system_temp_dir: $RAY_TMPDIR, else $TMPDIR on Linux, else /tmp),
    so a macOS $TMPDIR (/var/folders/...) does not lengthen Ray's socket paths."""
    if "RAY_TMPDIR" in os.environ:
        return os.environ["RAY_TMPDIR"]
    if sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        return os.environ["TMPDIR"]
    return "/tmp" if sys.platform.startswith(("linux", "darwin")) else tempfile.gettempdir()


def check_ray_temp_root() -> None:
    """Before Ray starts: the session directory's Unix sockets fit AF_UNIX's path limit (107 bytes on
    Linux, 103 on macOS); Ray would otherwise fail at start with a traceback."""
    root = ray_temp_root().rstrip("/") or "/"
    limit = 103 if sys.platform.startswith("darwin") else 107
    room = limit - len(f"/{SESSION_PREFIX}xxxxxxxx") - RAY_SOCKET_TAIL
    variable = "RAY_TMPDIR" if "RAY_TMPDIR" in os.environ else "TMPDIR"
    if len(root.encode()) > room:
        raise RayTempDirError(
            f"{variable} {root!r} is {len(root.encode())} bytes long: Ray's socket paths under it would pass the "
            f"{limit}-byte AF_UNIX limit; set RAY_TMPDIR to a directory of at most {room} bytes, e.g. /tmp")


def start_ray(address: str | None, verbose: bool = False) -> None:
    """Join `address`, or start Ray locally. Locally, Ray's node address stays on loopback (Ray
    rewrites 127.0.0.1 itself to the external interface, 127.0.0.2 it keeps), no dashboard starts,
    and Ray's session directory is a fresh one under ray_temp_root() (where Ray itself would put it), shut down and removed
    when the process exits. Unless `verbose`, the trials' own output and Ray's start-up notices stay
    in Ray's log files instead of the console (their worker processes print Python's shutdown noise
    when Ray stops them)."""
    import ray

    if not verbose:  # Tune's old reporter at verbose=0 prints nothing: no configuration box, no TensorBoard hint
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    if ray.is_initialized():
        return
    local = {}
    if address is None:
        check_ray_temp_root()
        session = tempfile.mkdtemp(prefix=SESSION_PREFIX, dir=ray_temp_root())
        local = {"_node_ip_address": LOCAL_NODE_ADDRESS, "_temp_dir": session}
        atexit.register(_stop_ray, session)  # runs before Ray's own atexit shutdown (last in, first out)
    notices = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not verbose:
        notices.setLevel(logging.ERROR)  # "Token authentication is enabled ...": the default, nothing to do
    ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=verbose, **local)


def _stop_ray(session: str) -> None:
    import ray

    ray.shutdown()
    shutil.rmtree(session, ignore_errors=True)


class StorageNotSharedError(RuntimeError):
    """A local storage path that some nodes of the cluster cannot see."""


def check_storage_shared(storage) -> None:
    """With several nodes, a local path must be one filesystem they all see (NFS); otherwise each
    node would keep its own results and baselines. Checked for real: the driver writes a marker
    file and a task pinned to every node looks for it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    if not storage.is_local or len(nodes) < 2:
        return
    marker = storage.path(f".node-check-{uuid.uuid4().hex}")
    storage.write_bytes_atomic(marker, b"prune-ray")

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return os.path.exists(path)

    try:
        pinned = [sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)) for n in nodes]
        blind = sum(not seen for seen in ray.get([task.remote(marker) for task in pinned]))
    finally:
        storage.fs.delete_file(marker)
    if blind:
        raise StorageNotSharedError(
            f"storage {storage.uri} is a local path that {blind} of {len(nodes)} cluster nodes cannot see, so "
            "results and baselines would scatter over their disks; pass --storage s3://BUCKET/PREFIX, "
            "gs://BUCKET/PREFIX, or a shared filesystem path mounted on every node"
        )


def fit_to_local_machine(spec: SweepSpec, available: dict[str, float]) -> SweepSpec:
    """On a local Ray instance, a trial asking for more than the machine has would wait forever:
    GPU trials run on the CPU when there is no GPU, and CPU requests shrink to the cores there are.
    (On a cluster the autoscaler may still add such nodes, so requests are left alone there.)"""
    resources = spec.resources
    if resources.gpu > 0 and available.get("GPU", 0) == 0:
        print(f"[prune-ray] no GPU here: trials asking for {resources.gpu} GPU run on the CPU", flush=True)
        resources = dataclasses.replace(resources, gpu=0.0)
    if resources.cpu > available.get("CPU", 1):
        print(f"[prune-ray] {resources.cpu} CPUs per trial asked, {available.get('CPU')} here: using all", flush=True)
        resources = dataclasses.replace(resources, cpu=float(available.get("CPU", 1)))
    spec = dataclasses.replace(spec, resources=resources)
    schedule = get_schedule(spec.schedule)
    extra = schedule.extra_bundles(spec)
    if extra:  # the trial holds 1 + extra bundles of its resources
        cpus, gpus = available.get("CPU", 1), available.get("GPU", 0)

        def bundles(res) -> int:
            return min(int(cpus // res.cpu), int(gpus // res.gpu) if res.gpu else 1 << 30)

        if bundles(resources) < 2:  # the trial and one extra bundle at least: halve the bundle
            resources = dataclasses.replace(resources, cpu=min(resources.cpu, cpus / 2), gpu=min(resources.gpu, gpus / 2))
            spec = dataclasses.replace(spec, resources=resources)
        fitted = max(1, min(extra, bundles(resources) - 1))
        if fitted != extra:
            print(f"[prune-ray] {spec.schedule}: {fitted} extra bundle(s) per trial here, not {extra}", flush=True)
            spec = schedule.fit_extra(spec, fitted)
    return spec


