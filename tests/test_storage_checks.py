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
