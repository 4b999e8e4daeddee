"""--storage that cannot hold a sweep is refused before Ray starts: exit 2, one line naming the path
and the problem, nothing written (the first case through a real interpreter, the rest in process)."""

import os

import pytest

from fixtures import cli_cases, run_sweep_command


def _unwritable(tmp_path) -> str:
    """A folder this user cannot write: read-only permissions, or for root a read-only mount."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o555)
        return str(folder / "results")
    if os.path.isdir("/proc/sys") and not os.access("/proc/sys", os.W_OK):
        return "/proc/sys/prune-ray-results"
    pytest.skip("running as root with no read-only folder to point at")


STORAGES = {
    "a file": (lambda tmp: str(tmp / "afile"), "is a file"),
    "under a file": (lambda tmp: str(tmp / "afile" / "results"), "lies under"),
    "unknown scheme": (lambda tmp: "nosuchfs://bucket/results", "cannot be opened"),
    "unwritable": (_unwritable, "not writable"),
}


@pytest.mark.parametrize("case, real", cli_cases("a file", "under a file", "unknown scheme", "unwritable", "name too long"))
def test_storage_that_cannot_hold_the_sweep_exits_2_before_ray_starts(tmp_path, case, real):
    (tmp_path / "afile").write_text("not a folder")
    name = "x" * 300 if case == "name too long" else "s"
    storage, fragment = STORAGES.get(case, (lambda tmp: str(tmp / "results"), "longer than this file system allows"))
    location = storage(tmp_path)
    result = run_sweep_command(["--storage", location, "--name", name, "--budget", "0.5"], tmp_path, real)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and fragment in lines[0], result.stderr[-2000:]
    assert "baseline" not in result.stdout  # nothing ran
    assert sorted(p for p in os.listdir(tmp_path) if p != "locked") == ["afile"] and (tmp_path / "afile").read_text() == "not a folder"


def test_a_temp_dir_too_long_for_rays_sockets_exits_2_before_ray_starts(tmp_path, monkeypatch):
    """Ray makes Unix sockets under a local sweep's session directory; past AF_UNIX's 107 bytes it
    would fail at start with a traceback. The longest allowed root (31 bytes: room for a 7-digit pid)
    starts Ray (checked by hand at the boundary, 2026-12-07); one byte more is refused in one line."""
    from prune_ray.tune.cluster import check_ray_temp_root

    monkeypatch.setenv("RAY_TMPDIR", "/" + "r" * 30)
    check_ray_temp_root()  # 31 bytes: allowed
    monkeypatch.setenv("RAY_TMPDIR", "/" + "r" * 31)
    result = run_sweep_command(["--storage", str(tmp_path / "results"), "--budget", "0.5"], tmp_path, real=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert "RAY_TMPDIR '/rrrr" in lines[0] and "32 bytes" in lines[0] and "at most 31 bytes" in lines[0]
    assert os.listdir(tmp_path) == []  # nothing written
    # joining a running cluster makes no local session directory: no refusal for that reason
    result = run_sweep_command(["--storage", str(tmp_path / "results"), "--address", "127.0.0.1:1", "--budget", "9"],
                               tmp_path, real=False)
    assert result.returncode == 2 and "RAY_TMPDIR" not in result.stderr and "budget 9.0" in result.stderr


def test_rays_own_temp_dir_rule_picks_the_session_root(monkeypatch):
    """Where Ray itself would go: $RAY_TMPDIR, else $TMPDIR on Linux, else /tmp (macOS's long
    $TMPDIR under /var/folders is not used)."""
    from prune_ray.tune import cluster

    monkeypatch.setenv("TMPDIR", "/scratch/job7/tmp")
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.setattr(cluster.sys, "platform", "linux")
    assert cluster.ray_temp_root() == "/scratch/job7/tmp"
    monkeypatch.setattr(cluster.sys, "platform", "darwin")
    assert cluster.ray_temp_root() == "/tmp"
    monkeypatch.setenv("RAY_TMPDIR", "/r")
    assert cluster.ray_temp_root() == "/r"
