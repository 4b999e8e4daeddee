"""The sweep's console: a line per finished trial and, every few seconds while trials run, one
status line (done / running / failed of the total, elapsed and estimated time left, the best top-1
so far per operating point). It replaces Tune's per-trial tables; Tune's files and logs stay."""

from __future__ import annotations

import time

from ray.tune import Callback

STATUS_EVERY_S = 10.0  # seconds between status lines while nothing finishes


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


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
    def __init__(self, total: int, label: str = "tune", every_s: float = STATUS_EVERY_S):
        self.total, self.label, self.every_s = total, label, every_s
        self.began = time.monotonic()
        self.last_status = self.began
        self.running: set[str] = set()
        self.finished: dict[str, str] = {}  # trial id -> ok | failed | stopped
        self.best: dict[str, float] = {}  # operating point label -> best final top-1

    def _print(self, line: str) -> None:
        print(f"[prune-ray] {line}", flush=True)  # sys.stdout as it is now (Tune pickles callbacks)

    def status_line(self) -> str:
        done = len(self.finished)
        failed = sum(state == "failed" for state in self.finished.values())
        stopped = sum(state == "stopped" for state in self.finished.values())
        elapsed = time.monotonic() - self.began
        left = f", ~{_clock(elapsed / done * (self.total - done))} left" if 0 < done < self.total else ""
        best = ", ".join(f"{label} {top1:.4f}" for label, top1 in sorted(self.best.items()))
        extras = "".join(f", {n} {word}" for n, word in ((failed, "failed"), (stopped, "stopped")) if n)
        return (f"{self.label}: {done}/{self.total} done ({len(self.running)} running{extras}), "
                f"{_clock(elapsed)} elapsed{left}" + (f" | best top-1: {best}" if best else ""))

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
        label = point_label(trial.config)
        if state == "ok":  # best per point over its seeds too
            best_of = point_label(trial.config, with_seed=False)
            self.best[best_of] = max(self.best.get(best_of, 0.0), float(result.get("top1", 0.0)))
            keep = result.get("resource_keep")
            detail = f"top-1 {result.get('top1', 0.0):.4f}" + (f", keeps {keep:.3f}" if keep is not None else "")
        elif state == "stopped":
            detail = f"stopped early after epoch {result.get('epoch', '?')}, top-1 {result.get('top1', 0.0):.4f}"
        else:
            detail = "failed: " + (str(result.get("error") or "").splitlines() or ["?"])[0][:160]
        self._print(f"{trial.trial_id} {label}: {detail}")
        self._print(self.status_line())
        self.last_status = time.monotonic()

    def on_step_end(self, iteration, trials, **info):
        if self.running and time.monotonic() - self.last_status >= self.every_s:
            self._print(self.status_line())
            self.last_status = time.monotonic()
