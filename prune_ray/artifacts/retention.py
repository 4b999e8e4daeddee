"""artifacts.save 'best': once a sweep ends, keep the models its results point at, delete the rest.

Kept: the trial each operating point picks for each seed (best validation top-1, the smaller keep
on a tie: results.frontier.best_trial_per_run, as the analysis reports it), and in a frontier
search (each trial its own point) the non-dominated trials of each method and seed. Every other
model directory goes, and its row's model_uri becomes null, so a row never points at nothing.
"""

from __future__ import annotations

import pandas as pd
import pyarrow.fs as pafs

from ..results.frontier import FRONTIER_KEYS, RUN_KEYS, best_trial_per_run, frontier_search, pareto_front, usable_rows
from ..results.parquet import MODELS_DIR, read_results, read_trial, write_trial
from ..results.storage import Storage


def kept_trials(results: pd.DataFrame) -> set[str]:
    """Trial ids whose models 'best' keeps."""
    rows = usable_rows(results)
    searched = frontier_search(rows)
    picks = best_trial_per_run(rows[~searched])
    front = pareto_front(rows[searched], accuracy_column="top1", by=[*FRONTIER_KEYS, *RUN_KEYS])
    return {str(trial) for trial in [*picks["trial_id"], *front["trial_id"]] if trial is not None}


def saved_trials(storage: Storage, sweep: str) -> list[str]:
    selector = pafs.FileSelector(storage.path(sweep, MODELS_DIR), allow_not_found=True)
    return sorted(info.base_name for info in storage.fs.get_file_info(selector) if info.type == pafs.FileType.Directory)


def delete_unkept_models(storage: Storage, sweep: str) -> tuple[int, int]:
    """Delete the models 'best' does not keep (a failed save's leftovers too) and null their rows'
    model_uri; returns (kept, deleted)."""
    kept_ids = kept_trials(read_results(storage, sweep))
    deleted = 0
    for trial_id in saved_trials(storage, sweep):
        if trial_id in kept_ids:
            continue
        storage.fs.delete_dir(storage.path(sweep, MODELS_DIR, trial_id))
        deleted += 1
        row = read_trial(storage, sweep, trial_id)
        if row is not None and row.get("model_uri") is not None:
            write_trial(storage, {**row, "model_uri": None})
    return len(saved_trials(storage, sweep)), deleted
