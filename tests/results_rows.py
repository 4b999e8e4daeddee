"""Result rows built for the analysis tests: every column a test does not set has a default, so a
test states only what its answer depends on."""

from __future__ import annotations

import datetime

import pandas as pd
import pyarrow as pa

from prune_ray.results.parquet import write_trial
from prune_ray.results.storage import open_storage

DEFAULTS = {
    "sweep": "s1", "seed": 0, "status": "ok", "model": "resnet56", "dataset": "cifar10", "method": "magnitude",
    "granularity": "unstructured", "schedule": "searched", "budget_metric": "params", "budget": 0.5, "top1": 0.9,
    "top1_pruned": 0.8, "baseline_top1": 0.93, "params_keep": 0.5, "macs_keep": 1.0,
}


def frame(*changes: dict) -> pd.DataFrame:
    return pd.DataFrame([{**DEFAULTS, **change} for change in changes])


def arrow_backed(df: pd.DataFrame) -> pd.DataFrame:
    """What read_results returns: Arrow dtypes, with pd.NA rather than NaN/None."""
    return pa.Table.from_pandas(df, preserve_index=False).to_pandas(types_mapper=pd.ArrowDtype)


def the_point(points: pd.DataFrame, **keys) -> pd.Series:
    match = points
    for name, value in keys.items():
        match = match[match[name] == value]
    assert len(match) == 1, match
    return match.iloc[0]


def write_rows(root, *changes):
    storage = open_storage(str(root))
    now = datetime.datetime.now(datetime.timezone.utc)
    for number, change in enumerate(changes):
        write_trial(storage, {**DEFAULTS, "trial_id": f"t{number}", "started_at": now, "finished_at": now, **change})
