"""The sweep's console: one line per finished trial (its count, id, operating point and result) and,
while nothing finishes for a while, one status line (done / running / failed of the total, elapsed
and, once two trials have finished, the estimated time left). Every line fits in WIDTH columns; the
best rows come in the summary at the end. It replaces Tune's per-trial tables; Tune's files and logs
stay in <sweep>/tune/ (`--verbose` brings Tune's own output back)."""

from __future__ import annotations

import os
import time

from ray.tune import Callback

STATUS_EVERY_S = 30.0  # seconds without a finished trial before a status line
WIDTH = 100  # columns of the longest line printed
PREFIX = "[prune-ray] "


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def fit(line: str, width: int = WIDTH) -> str:
    """`line` cut to `width` columns, ending in '...' where it was cut."""
    return line if len(line) <= width else line[: width - 3] + "..."


def header(sweep: str, trials: int, root: str) -> str:
    """The sweep's first line: its name, where its directory is (the storage root: relative to the
    working directory when under it, never cut) and the trials planned."""
    if root.startswith("/") and (os.path.abspath(root) + os.sep).startswith(os.getcwd() + os.sep):
        root = os.path.relpath(root)
    return f"{PREFIX}sweep {sweep} in {root.rstrip('/')}/: {trials} trials planned"


def point_label(config: dict, with_seed: bool = True) -> str:
    """A trial's operating point in a few characters: method@budget, method@ratio or method@frontier."""
    trial = config.get("trial")
    if trial is None:
        return "?"
    point = trial.point
    where = (f"{point.budget:g}" if point.budget is not None else
             "frontier" if point.ratio is None else
             f"ratio {point.ratio:g}" if isinstance(point.ratio, float) else "ratios")
    steps = f" x{point.prune_steps}" if point.prune_steps > 1 else ""
    quantized = f" {point.quantize_label}" if point.quantize_label else ""
    return f"{point.method}@{where}{steps}{quantized}" + (f" seed {point.seed}" if with_seed else "")


class Console(Callback):
    def __init__(self, total: int, label: str = "tune", every_s: float = STATUS_EVERY_S, clock=time.monotonic):
        self.total, self.label, self.every_s, self.clock = total, label, every_s, clock
        self.began = clock()
        self.last_line = self.began
        self.running: set[str] = set()
        self.finished: dict[str, str] = {}  # trial id -> ok | failed | stopped

    def _print(self, line: str) -> None:
        print(fit(PREFIX + line), flush=True)  # sys.stdout as it is now (Tune pickles callbacks)
        self.last_line = self.clock()

    def time_left(self) -> str:
        """', ~M:SS left' from the mean time per finished trial, once two have finished; '' before."""
        done = len(self.finished)
        if not 2 <= done < self.total:
            return ""
        return f", ~{_clock((self.clock() - self.began) / done * (self.total - done))} left"

    def status_line(self) -> str:
        done = len(self.finished)
        extras = "".join(f", {n} {word}" for n, word in (
            (sum(state == "failed" for state in self.finished.values()), "failed"),
            (sum(state == "stopped" for state in self.finished.values()), "stopped")) if n)
        return (f"{self.label}: {done}/{self.total} done ({len(self.running)} running{extras}), "
                f"{_clock(self.clock() - self.began)} elapsed{self.time_left()}")

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        state = result.get("status", "failed")
        state = "stopped" if state == "running" else state  # the scheduler ended it after an epoch
        self._finish(trial, state, result)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "failed", {"error": "the trial's process failed (see Tune's error.txt)"})

    def _finish(self, trial, state: str, result: dict) -> None:
        self.running.discard(trial.trial_id)
        self.finished[trial.trial_id] = state
        left = self.time_left()
        if state == "ok":
            keep = result.get("resource_keep")
            detail = f"top-1 {result.get('top1', 0.0):.4f}" + (f", keeps {keep:.3f}" if keep is not None else "")
        elif state == "stopped":
            detail = f"stopped early after epoch {result.get('epoch', '?')}, top-1 {result.get('top1', 0.0):.4f}"
        else:
            detail = f"failed{left}: " + (str(result.get("error") or "").splitlines() or ["?"])[0]
            left = ""  # before the error, which may be cut
        count = f"{len(self.finished)}/{self.total}"
        self._print(f"{count} {trial.trial_id} {point_label(trial.config)}: {detail}{left}")

    def on_step_end(self, iteration, trials, **info):
        if self.running and self.clock() - self.last_line >= self.every_s:
            self._print(self.status_line())
