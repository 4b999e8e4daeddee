"""The sweep's console: a line per finished trial, a status line with counts, time and best top-1."""

from types import SimpleNamespace

from prune_ray.points import OperatingPoint, TrialConfig
from prune_ray.tune.console import Console, point_label


def trial(trial_id, budget, method="l1_filter", seed=0, **result):
    return SimpleNamespace(trial_id=trial_id, config={"trial": TrialConfig(OperatingPoint(budget, method, seed))},
                           last_result=result)


def test_finished_trials_and_the_status_line(capsys):
    console = Console(total=4)
    a, b, c = trial("a", 0.5, top1=0.91, resource_keep=0.49, status="ok"), trial("b", 0.5, top1=0.95, status="ok"), \
        trial("c", 0.3, status="failed", error="RuntimeError: budget unreachable\ntraceback")
    for each in (a, b, c):
        console.on_trial_start(0, [], each)
    console.on_trial_complete(0, [], a)
    console.on_trial_complete(0, [], b)
    console.on_trial_complete(0, [], c)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[prune-ray] a l1_filter@0.5 seed 0: top-1 0.9100, keeps 0.490"
    assert lines[4] == "[prune-ray] c l1_filter@0.3 seed 0: failed: RuntimeError: budget unreachable"
    status = lines[5]
    assert status.startswith("[prune-ray] tune: 3/4 done (0 running, 1 failed), ") and "left" in status
    assert status.endswith("| best top-1: l1_filter@0.5 0.9500")  # the best of the point's trials


def test_a_trial_stopped_by_the_scheduler_is_counted_as_stopped(capsys):
    console = Console(total=2)
    stopped = trial("s", 0.5, top1=0.4, epoch=1, status="running")
    console.on_trial_start(0, [], stopped)
    console.on_trial_complete(0, [], stopped)
    out = capsys.readouterr().out
    assert "stopped early after epoch 1" in out and "1/2 done (0 running, 1 stopped)" in out


def test_point_labels_name_budget_ratio_or_frontier():
    def label(point):
        return point_label({"trial": TrialConfig(point)}, with_seed=False)

    assert label(OperatingPoint(0.25, "magnitude", 0)) == "magnitude@0.25"
    assert label(OperatingPoint(None, "magnitude", 0, ratio=0.6, prune_steps=3)) == "magnitude@ratio 0.6 x3"
    assert label(OperatingPoint(None, "fpgm", 1)) == "fpgm@frontier"
