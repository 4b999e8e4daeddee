"""A sweep stopped by hand (SIGINT: Ctrl-C, SIGTERM: a job scheduler) is a failure you can resume.

The first signal asks Tune to stop: it saves its experiment state and ends the running trials.
Finished trials keep their rows and models; every trial that had started and not finished gets a
row with status 'interrupted' (never left 'running'); no model retention runs on the partial sweep;
the last line is the command that continues it, and the exit status is 128 + the signal (130 for
SIGINT, 143 for SIGTERM). A second signal exits at once. Tune's own restore hint is not shown:
`--resume` is how a sweep continues (Tuner.restore underneath, then retention once, at the end).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shlex
import signal
import sys
from typing import Iterable, Iterator

from ray.tune import Callback

from ..results.parquet import read_trial, write_trial
from ..results.storage import Storage
from ..results.summary import settle_unfinished
from ..trial import Runtime, TrialContext, TrialRun

SIGNALS = (signal.SIGINT, signal.SIGTERM)
TUNE_LOGGER = "ray.tune.tune"
# Tune's lines about an interrupt: its own restore hint and its view of the unfinished trials
TUNE_INTERRUPT_LINES = ("Resume experiment with", "Resume training with", "Stop signal received", "Trials did not complete")


class SweepInterrupted(Exception):
    """The sweep was stopped by `signum`; raised once its state is settled."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _Trials:
    """Tune trials of this process: started (id -> config) and ended (id -> 'complete' | 'error'),
    with whether they ended before the signal. Module state, not the callback's: Tune copies its
    callbacks (a restored Tuner unpickles them)."""

    started: dict[str, dict] = {}
    ended: dict[str, tuple[str, bool]] = {}


class TrialTracker(Callback):
    """Records which trials started and which ended (complete or error) before an interrupt."""

    def on_trial_start(self, iteration, trials, trial, **info):
        _Trials.started[trial.trial_id] = trial.config

    def on_trial_complete(self, iteration, trials, trial, **info):
        _Trials.ended[trial.trial_id] = ("complete", INTERRUPTS.signum is None)

    def on_trial_error(self, iteration, trials, trial, **info):
        _Trials.ended[trial.trial_id] = ("error", INTERRUPTS.signum is None)


class _HideTuneInterruptLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(line in record.getMessage() for line in TUNE_INTERRUPT_LINES)


class Interrupts:
    """The sweep's SIGINT/SIGTERM handling, installed for one run of the sweep command."""

    def __init__(self):
        self.signum: int | None = None
        self.tuning = False

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:  # the second signal: at once (Ray's local processes die with us)
            print(f"\n[prune-ray] {signal.Signals(signum).name} again: stopping at once", file=sys.stderr, flush=True)
            os._exit(128 + self.signum)
        self.signum = signum
        print(f"\n[prune-ray] {signal.Signals(signum).name}: stopping the sweep; finished trials keep their rows and "
              "models, unfinished ones are marked interrupted (press Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
        if not self.tuning:
            raise SweepInterrupted(signum)
        tune_stop = signal.getsignal(signal.SIGUSR1)  # what Tune's fit installs: it ends its loop and saves its state
        if callable(tune_stop):
            tune_stop(signum, frame)

    @contextlib.contextmanager
    def installed(self) -> Iterator["Interrupts"]:
        """Our handlers for SIGINT and SIGTERM (Tune's own SIGINT handler off), restored afterwards."""
        self.signum, self.tuning = None, False
        _Trials.started.clear()
        _Trials.ended.clear()
        previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
        environment = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        hide = _HideTuneInterruptLines()
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        logging.getLogger(TUNE_LOGGER).addFilter(hide)
        for sig in SIGNALS:
            signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            logging.getLogger(TUNE_LOGGER).removeFilter(hide)
            if environment is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = environment

    @contextlib.contextmanager
    def fitting(self) -> Iterator[None]:
        """Around Tuner.fit: a signal then asks Tune to stop rather than raising."""
        self.tuning = True
        try:
            yield
        finally:
            self.tuning = False

    def settle(self, storage: Storage, sweep: str, results: Iterable, context: TrialContext) -> None:
        """After a stage's fit: settle the rows Tune left unfinished; when a signal stopped the
        stage, first mark every trial that started and did not end before it 'interrupted', then
        raise SweepInterrupted."""
        if self.signum is None:
            settle_unfinished(storage, sweep, results)
            return
        for trial_id, config in _Trials.started.items():
            kind, before = _Trials.ended.get(trial_id, ("", False))
            if kind and before:
                continue
            mark_interrupted(storage, sweep, trial_id, config, context, signal.Signals(self.signum).name)
        settle_unfinished(storage, sweep, results)  # trials that ended before the signal (ASHA's stops)
        raise SweepInterrupted(self.signum)


INTERRUPTS = Interrupts()


def mark_interrupted(storage: Storage, sweep: str, trial_id: str, config: dict, context: TrialContext, why: str) -> bool:
    """The row of a trial the signal cut short says 'interrupted' (a row it never wrote is written
    from its identity); a row it finished (ok or failed) stays. Returns whether a row changed."""
    row = read_trial(storage, sweep, trial_id)
    if row is not None and row["status"] not in ("running", "interrupted"):
        return False
    if row is None:
        row = TrialRun(config["trial"], context, trial_id, lambda metrics: None, Runtime()).start_row()
    row.update(status="interrupted", error=f"interrupted by {why} before the trial finished; --resume reruns it",
               finished_at=datetime.datetime.now(datetime.timezone.utc))
    write_trial(storage, row)
    return True


def resume_command(sweep: str, storage_uri: str, address: str | None) -> str:
    """The exact command that continues the sweep."""
    args = ["python", "-m", "prune_ray.sweep", "--resume", "--name", sweep, "--storage", storage_uri]
    if address is not None:
        args += ["--address", address]
    return " ".join(shlex.quote(arg) for arg in args)
