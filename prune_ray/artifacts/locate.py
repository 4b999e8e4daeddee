"""Which directory holds a trial's saved model: load_pruned and the export take a path or URI, a
row (as read_results returns it, or a raw row plus the results root), or a trial id plus the root.

A row's model_uri is relative to its sweep's directory (`models/<trial_id>`, schema v9) and is
resolved against the root the rows are read from, so a sweep that was copied, moved or synced
loads its own files, never the original's. A row without a model is a one-line error saying why:
the trial did not finish ok, or the `artifacts.save` setting that removed (best) or never wrote
(none) its model.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Union

import pandas as pd
import torch.nn as nn

from ..results.location import BadInput, open_results
from ..results.parquet import read_results, resolve_model_uri
from .store import ArtifactError, load_model, read_plan

Row = Union[Mapping[str, Any], pd.Series]
ModelSource = Union[str, Row]  # a model directory (path or URI), a row, or (with a root) a trial id


class NoSavedModelError(ArtifactError):
    """The trial has no saved model; the one-line message names the trial and why."""


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, (list, tuple)) and bool(pd.isna(value)))


def why_no_model(row: Row) -> str:
    """One line: the trial and the reason its row names no model."""
    trial, status = row.get("trial_id"), row.get("status")
    if status != "ok":
        return f"trial {trial!r} has no saved model: its status is {status!r} (only trials that finish ok save one)"
    if _missing(row.get("file_bytes")):
        return f"trial {trial!r} has no saved model: its sweep ran with artifacts.save 'none', which saves no model"
    return (f"trial {trial!r} has no saved model: artifacts.save 'best' deleted it when its sweep ended (it keeps "
            "each operating point's pick and frontier points); run with artifacts.save 'all' to keep every model")


def row_of_trial(root: str, trial_id: str, sweep: str | None = None) -> pd.Series:
    """The row of `trial_id` under the results `root` (one sweep, or every sweep there)."""
    storage, sweep = open_results(root, sweep)
    rows = read_results(storage, sweep)
    match = rows[rows["trial_id"] == trial_id]
    if match.empty:
        where = f"sweep {sweep!r} of {storage.uri}" if sweep else storage.uri
        raise BadInput(f"no trial {trial_id!r} in {where}")
    if len(match) > 1:
        raise BadInput(f"trial {trial_id!r} is in several sweeps of {storage.uri} ({', '.join(match['sweep'])}); name one")
    return match.iloc[0]


def model_directory(source: ModelSource, root: str | None = None, sweep: str | None = None) -> str:
    """The directory (path or URI) that holds the model `source` names. NoSavedModelError when its
    row names none; BadInput when a trial id or a relative location cannot be found."""
    if isinstance(source, str):
        if root is None:
            return source
        source = row_of_trial(root, source, sweep)  # a trial id; its model_uri is resolved already
    stored = source.get("model_uri")
    if _missing(stored):
        raise NoSavedModelError(why_no_model(source))
    if "://" in stored or os.path.isabs(stored):
        return stored  # resolved by read_results, or written by a sweep before schema v9
    if root is None:
        raise BadInput(f"trial {source.get('trial_id')!r}: model_uri {stored!r} is relative to its sweep's directory; "
                       "pass the results root (root=...) or read the row with read_results")
    storage, found = open_results(root, sweep)
    return resolve_model_uri(storage, found or str(source.get("sweep")), str(source.get("trial_id")), stored)


def load_pruned(source: ModelSource, root: str | None = None, sweep: str | None = None) -> nn.Module:
    """The saved pruned model `source` names, on the CPU, in eval mode, never unpickled:
    `load_pruned(path_or_uri)`, `load_pruned(row)` (a row of read_results), `load_pruned(row, root)`
    (a row read some other way, whose model_uri is relative), `load_pruned(trial_id, root[, sweep])`.
    ArtifactError (one line naming the file or the trial) when there is no such model or it is
    broken; BadInput when the trial or root is not found."""
    return load_model(model_directory(source, root, sweep))


def plan_of(source: ModelSource, root: str | None = None, sweep: str | None = None) -> dict[str, Any]:
    """The plan (plan.json) of the saved model `source` names (as load_pruned takes it)."""
    return read_plan(model_directory(source, root, sweep))
