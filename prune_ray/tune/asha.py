"""Early stopping per operating point: ASHA whose rungs compare only trials of one point and stage."""

from __future__ import annotations

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

from ..spec import finetune_epochs
from .search import METRIC, MODE


class GroupedASHA(FIFOScheduler):
    """ASHA (Li et al. 2020) per operating point: a trial at epoch e is compared only with trials
    of its own operating point and stage at epoch e, never a 0.3-budget trial with 0.7-budget ones. A trial's last
    epoch is never cut (Ray's ASHA puts a rung at max_t when max_t = grace x 3^k), so a trial
    that fine-tuned to the end always writes its row."""

    def __init__(self, stage_epochs: int, grace_epochs: int, per_prune_step: bool = False, reduction_factor: int = 3):
        super().__init__()
        self._metric, self._mode = METRIC, MODE
        # cycles fine-tune stage_epochs per pruning step, so points of more steps run longer
        self._stage_epochs, self._per_prune_step = stage_epochs, per_prune_step
        self._settings = dict(
            time_attr="epoch", metric=METRIC, mode=MODE, grace_period=grace_epochs,
            reduction_factor=reduction_factor, brackets=1, stop_last_trials=False,
        )
        self._by_point: dict[str, AsyncHyperBandScheduler] = {}

    def last_epoch(self, trial) -> int:
        return finetune_epochs(self._stage_epochs, trial.config["trial"].point.prune_steps, self._per_prune_step)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        return metric in (None, METRIC) and mode in (None, MODE)

    def _asha(self, trial) -> AsyncHyperBandScheduler:
        key = trial.config["trial"].group_key
        if key not in self._by_point:
            self._by_point[key] = AsyncHyperBandScheduler(max_t=self.last_epoch(trial), **self._settings)
        return self._by_point[key]

    def on_trial_add(self, tune_controller, trial) -> None:
        self._asha(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        asha = self._asha(trial)
        if trial.trial_id not in asha._trial_info:  # a trial restored by --resume was never added
            asha.on_trial_add(tune_controller, trial)
        decision = asha.on_trial_result(tune_controller, trial, result)
        return self.CONTINUE if result.get("epoch", 0) >= self.last_epoch(trial) else decision

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        asha = self._asha(trial)
        if "epoch" in result:  # the final report (no epoch) was already judged at its rungs
            asha.on_trial_complete(tune_controller, trial, result)
        asha._trial_info.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._asha(trial)._trial_info.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return f"ASHA per operating point: {len(self._by_point)} points"

