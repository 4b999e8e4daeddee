"""The sweep's console: a line per finished trial, a status line while nothing finishes."""

from types import SimpleNamespace

from prune_ray.points import OperatingPoint, TrialConfig
from prune_ray.tune.console import Console, point_label


def trial(trial_id, budget, method="l1_filter", seed=0, **result):
    return SimpleNamespace(trial_id=trial_id, config={"trial": TrialConfig(OperatingPoint(budget, method, seed))},
                           last_result=result)


class Clock:
    """An injected clock: the test says how many seconds pass."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_line_per_finished_trial_and_time_left_only_after_two(capsys):
    clock = Clock()
    console = Console(total=4, clock=clock)
    a, b, c = trial("a", 0.5, top1=0.91, resource_keep=0.49, status="ok"), trial("b", 0.5, top1=0.95, status="ok"), \
        trial("c", 0.3, status="failed", error="RuntimeError: budget unreachable " + "x" * 200 + "\ntraceback")
    for each in (a, b, c):
        console.on_trial_start(0, [], each)
    clock.now = 10.0
    console.on_trial_complete(0, [], a)
    clock.now = 20.0
    console.on_trial_complete(0, [], b)
    clock.now = 30.0
    console.on_trial_complete(0, [], c)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[prune-ray] 1/4 a l1_filter@0.5 seed 0: top-1 0.9100, keeps 0.490"  # no estimate from one trial
    assert lines[1] == "[prune-ray] 2/4 b l1_filter@0.5 seed 0: top-1 0.9500, ~0:20 left"  # 10 s a trial, 2 to go
    assert lines[2].startswith("[prune-ray] 3/4 c l1_filter@0.3 seed 0: failed, ~0:10 left: RuntimeError: budget")
    assert len(lines) == 3 and all(len(line) <= 100 for line in lines) and lines[2].endswith("...")


def test_a_status_line_only_while_nothing_finishes(capsys):
    clock = Clock()
    console = Console(total=8, every_s=30.0, clock=clock)
    console.on_trial_start(0, [], trial("a", 0.5))
    clock.now = 29.0
    console.on_step_end(0, [])
    assert capsys.readouterr().out == ""
    clock.now = 31.0
    console.on_step_end(0, [])
    console.on_step_end(0, [])  # not again until another 30 s pass
    assert capsys.readouterr().out.splitlines() == ["[prune-ray] tune: 0/8 done (1 running), 0:31 elapsed"]


def test_a_trial_stopped_by_the_scheduler_is_counted_as_stopped(capsys):
    console = Console(total=2)
    stopped = trial("s", 0.5, top1=0.4, epoch=1, status="running")
    console.on_trial_start(0, [], stopped)
    console.on_trial_complete(0, [], stopped)
    out = capsys.readouterr().out
    assert "1/2 s l1_filter@0.5 seed 0: stopped early after epoch 1" in out


def test_point_labels_name_budget_ratio_or_frontier():
    def label(point):
        return point_label({"trial": TrialConfig(point)}, with_seed=False)

    assert label(OperatingPoint(0.25, "magnitude", 0)) == "magnitude@0.25"
    assert label(OperatingPoint(None, "magnitude", 0, ratio=0.6, prune_steps=3)) == "magnitude@ratio 0.6 x3"
    assert label(OperatingPoint(None, "fpgm", 1)) == "fpgm@frontier"
