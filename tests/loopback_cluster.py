"""A real multi-node Ray cluster on this machine: `ray start` nodes on loopback addresses.

Every process of the cluster carries a marker in its environment (inherited by the workers each
raylet starts), so the tests find and stop exactly their own processes by PID: raylets first, GCS
last. `ray stop` is never used: it would kill every Ray process on the host.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

RAY = os.path.join(os.path.dirname(sys.executable), "ray")
CLUSTER_MARK, NODE_MARK = "PRUNE_RAY_TEST_CLUSTER", "PRUNE_RAY_TEST_NODE"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        return probe.getsockname()[1]


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            pairs = handle.read().split(b"\0")
    except OSError:
        return {}
    return dict(p.decode(errors="replace").split("=", 1) for p in pairs if b"=" in p)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class LoopbackCluster:
    def __init__(self):
        self.id = uuid.uuid4().hex
        self.root = tempfile.mkdtemp(prefix="prc", dir="/tmp")  # short: Ray's socket paths
        self.port = _free_port()
        self.address = f"127.0.0.2:{self.port}"
        self.env = {
            **os.environ,
            "HOME": self.root,  # the auth token lives in $HOME/.ray
            "RAY_AUTH_MODE": "token",
            "RAY_TMPDIR": self.root,
            "RAY_USAGE_STATS_ENABLED": "0",
            # notice a dead node in seconds, not the default half minute
            "RAY_health_check_period_ms": "500",
            "RAY_health_check_failure_threshold": "4",
            "PYTHONUNBUFFERED": "1",
            CLUSTER_MARK: self.id,
        }

    def _env(self, node: str) -> dict[str, str]:
        return {**self.env, NODE_MARK: node}

    def start_head(self, cpus: int = 1, gpus: int = 2) -> None:
        # token auth: one token in the test's own HOME, read by every node and driver started here
        subprocess.run([RAY, "get-auth-token", "--generate"], env=self._env("head"), check=True,
                       capture_output=True, timeout=60)
        subprocess.run(
            [RAY, "start", "--head", "--node-ip-address=127.0.0.2", f"--port={self.port}", f"--num-cpus={cpus}",
             f"--num-gpus={gpus}", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={self.root}"],
            env=self._env("head"), check=True, capture_output=True, timeout=120,
        )

    def add_worker(self, name: str, ip: str, cpus: int = 1, gpus: int = 2, hide: str | None = None) -> None:
        """`hide`: a directory this node sees as an empty tmpfs (its own mount namespace), as a
        machine with its own local disk would: files the driver writes there stay invisible."""
        command = [RAY, "start", f"--address={self.address}", f"--node-ip-address={ip}", f"--num-cpus={cpus}",
                   f"--num-gpus={gpus}", "--disable-usage-stats"]
        if hide:
            os.makedirs(hide, exist_ok=True)
            script = f"mount -t tmpfs none {shlex.quote(hide)} && exec {shlex.join(command)}"
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        subprocess.run(command, env=self._env(name), check=True, capture_output=True, timeout=120)

    def popen(self, args: list[str], cwd, node: str = "driver") -> subprocess.Popen:
        return subprocess.Popen(args, cwd=cwd, env=self._env(node), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def run(self, args: list[str], cwd, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=cwd, env=self._env("driver"), capture_output=True, text=True, timeout=timeout)

    def pids(self, node: str | None = None) -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                environ = _environ(int(entry))
                if environ.get(CLUSTER_MARK) == self.id and (node is None or environ.get(NODE_MARK) == node):
                    found.append(int(entry))
        return found

    def wait_for(self, node: str, text: str, timeout: float) -> bool:
        """Wait until a process of `node` has `text` in its command line (e.g. a running trial)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(text in _cmdline(pid) for pid in self.pids(node)):
                return True
            time.sleep(0.2)
        return False

    def kill(self, pids: list[int]) -> None:
        """SIGKILL raylets first (so they restart nothing), then the rest, the GCS server last."""
        rank = lambda pid: 0 if "raylet" in _cmdline(pid) else 2 if "gcs_server" in _cmdline(pid) else 1  # noqa: E731
        for pid in sorted(pids, key=rank):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill_node(self, node: str) -> None:
        self.kill(self.pids(node))

    def stop(self) -> None:
        for _ in range(20):  # workers may be mid-spawn: sweep until nothing of ours is left
            pids = self.pids()
            if not pids:
                break
            self.kill(pids)
            time.sleep(0.5)
        shutil.rmtree(self.root, ignore_errors=True)
