"""Parquet results, schema v9: one file per trial, written atomically; a reader for whole sweeps.

Layout: <storage>/<sweep>/trials/<trial_id>.parquet, <storage>/<sweep>/epochs/<trial_id>.parquet and,
for the netadapt schedule, its greedy steps in <storage>/<sweep>/netadapt/<trial_id>.parquet; a
trial's saved model in <storage>/<sweep>/models/<trial_id>/, which its row names relative to the
sweep's directory (`models/<trial_id>`), so a sweep copied, moved or synced elsewhere still finds
its own models (read_results resolves them against where it read the rows).
A retried trial overwrites its own file, so a sweep never holds duplicate rows.

Each schema is built from one list of (name, type) columns below; the columns two schemas share
(the trial's key) are declared once.
"""

from __future__ import annotations

import io
from typing import Any, Mapping

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .storage import Storage, open_storage

# v2 added test_top1, test_top5, baseline_test_top1; v3 ratio, iterative, prune_steps, stage;
# v4 statuses running and stopped; v5 top1_pruned_bn (and schedules lamp and erk); v6 (one bump for
# three branches): model_uri, file_bytes (saved models), data_loader, latency timed in interleaved
# pairs: baseline_latency_ms, latency_iqr_ms, speedup_low, speedup_high, latency_keep; budget metric
# latency and its latency_predicted_ms; v7 quantisation after fine-tuning and real encoded bytes:
# quantizer, quantize_bits_conv, quantize_bits_fc, top1_quantized, time_quantize_s, bytes_encoded,
# compression_ratio_total; v8 first_proposal (a two-stage search carries it into its final stage);
# v9 model_uri relative to the sweep's directory (models/<trial_id>; before: an absolute path or
# URI), status interrupted, latency_method (how the latency columns were timed); v10 proxy,
# proxy_score (plan.proxy of the plan before fine-tuning), search_epochs (fine-tuning spent by the
# schedule besides the trial's own: a race's rounds, netadapt's candidates); the step files hold a
# race's rows too (proposal, prior, is_prior, round, epochs, proxy_kl, proxy_loss)
SCHEMA_VERSION = 10
# running: written when fine-tuning starts and replaced by the trial's final row; one still running
# when the sweep ends was stopped early (ASHA; finetune_epochs says when) or died past its retries.
# interrupted: the sweep was stopped (SIGINT, SIGTERM) before the trial finished; --resume reruns it
STATUSES = ("ok", "failed", "running", "stopped", "interrupted")
MODELS_DIR = "models"  # <sweep>/models/<trial_id>/: a trial's saved model
SAVED_SPEC = "spec.yaml"  # <sweep>/spec.yaml: the resolved spec the sweep ran (--resume reads it)

KEY_COLUMNS = [("sweep", pa.string()), ("trial_id", pa.string())]  # every per-trial file's first columns

TRIAL_COLUMNS = [
    ("schema_version", pa.int32()),
    *KEY_COLUMNS,
    ("config_hash", pa.string()),
    ("seed", pa.int64()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")),
    ("model", pa.string()),
    ("dataset", pa.string()),
    ("method", pa.string()),
    ("granularity", pa.string()),
    ("schedule", pa.string()),
    ("sampler", pa.string()),
    ("budget_metric", pa.string()),
    ("budget", pa.float64()),
    ("ratio", pa.float64()),
    ("iterative", pa.string()),
    ("prune_steps", pa.int64()),
    ("stage", pa.string()),
    ("first_proposal", pa.bool_()),  # the study's trial 0 (the prior, theta = 0); null when not searched
    ("layer_names", pa.list_(pa.string())),
    ("layer_ratios", pa.list_(pa.float64())),
    ("conv_threshold", pa.float64()),
    ("fc_threshold", pa.float64()),
    ("baseline_top1", pa.float64()),
    ("baseline_top5", pa.float64()),
    ("baseline_test_top1", pa.float64()),
    ("baseline_params", pa.int64()),
    ("baseline_macs", pa.int64()),
    ("top1_pruned", pa.float64()),
    ("top1_pruned_bn", pa.float64()),
    ("top5_pruned", pa.float64()),
    ("quantizer", pa.string()),  # quantiser after fine-tuning (none: float32 weights); null before v7
    ("quantize_bits_conv", pa.int64()),  # bits per stored conv weight code; null for none
    ("quantize_bits_fc", pa.int64()),  # bits per stored fc weight code; null for none
    ("top1_quantized", pa.float64()),  # val top-1 right after quantising, before its fine-tuning
    ("top1", pa.float64()),
    ("top5", pa.float64()),
    ("test_top1", pa.float64()),
    ("test_top5", pa.float64()),
    ("finetune_epochs", pa.int64()),
    # fine-tuning epochs the schedule spent before the trial's own, summed over its candidates (a race's
    # rounds and the priors of its final round; netadapt's short fine-tunes); 0 for one-shot schedules
    ("search_epochs", pa.int64()),
    ("proxy", pa.string()),  # plan.proxy's kind: bn_loss or kl (search.proxy resolved for the model)
    ("proxy_score", pa.float64()),  # that proxy of the baseline pruned as planned, before fine-tuning (lower: closer)
    ("params", pa.int64()),
    ("params_nonzero", pa.int64()),
    ("macs", pa.int64()),
    ("bytes_dense", pa.int64()),
    ("bytes_sparse", pa.int64()),
    ("latency_ms", pa.float64()),
    # the saved pruned model's directory relative to the sweep's (models/<trial_id>; v8 and before: an
    # absolute path or URI); read_results resolves it; null when none is kept
    ("model_uri", pa.string()),
    ("file_bytes", pa.int64()),  # bytes of its files as written (weights + plan)
    ("bytes_encoded", pa.int64()),  # bytes of the model's files (encoded when quantised), written or not
    ("compression_ratio_total", pa.float64()),  # baseline float32 parameter bytes / bytes_encoded (x)
    ("latency_iqr_ms", pa.float64()),
    # how latency_ms and its pair were timed: "wall clock, 1 pass per sample" (CPU) or "cuda events, K passes
    # per sample" (CUDA: K passes between one pair of events, the same K for both models); null if untimed
    ("latency_method", pa.string()),
    ("baseline_latency_ms", pa.float64()),
    ("latency_predicted_ms", pa.float64()),
    ("params_keep", pa.float64()),
    ("macs_keep", pa.float64()),
    ("latency_keep", pa.float64()),
    ("compression_ratio", pa.float64()),
    ("speedup_theoretical", pa.float64()),
    ("speedup_measured", pa.float64()),
    ("speedup_low", pa.float64()),
    ("speedup_high", pa.float64()),
    ("time_baseline_s", pa.float64()),
    ("time_prune_s", pa.float64()),
    ("time_finetune_s", pa.float64()),
    ("time_quantize_s", pa.float64()),  # quantising and fine-tuning the quantised model (s)
    ("time_eval_s", pa.float64()),
    ("device", pa.string()),
    ("data_loader", pa.string()),  # loader that fed training: device (tensors on the device) or stream (DataLoader)
    ("node", pa.string()),
    ("torch_version", pa.string()),
    ("ray_version", pa.string()),
    ("prune_ray_version", pa.string()),
    ("git_sha", pa.string()),
]

EPOCH_COLUMNS = [
    *KEY_COLUMNS,
    ("epoch", pa.int64()),
    ("train_loss", pa.float64()),
    ("top1", pa.float64()),
    ("top5", pa.float64()),
    ("seconds", pa.float64()),
]

STEP_COLUMNS = [  # netadapt's steps and the race's proposals per round (the other's columns null)
    *KEY_COLUMNS,
    ("step", pa.int64()),
    ("layer", pa.string()),  # the layer the step pruned
    ("removed", pa.int64()),  # units it removed there
    ("candidates", pa.int64()),  # layers tried in the step
    ("task_processes", pa.int64()),  # Ray worker processes that fine-tuned them (0: the trial itself)
    ("resource_keep", pa.float64()),  # budgeted resource after the step / baseline's
    ("top1", pa.float64()),  # netadapt: the winner's val top-1 after its short fine-tune; race: the proposal's, after the round
    ("proposal", pa.int64()),  # race: the proposal's index (the priors first)
    ("prior", pa.string()),  # race: the portfolio allocation it was drawn around (or is)
    ("is_prior", pa.bool_()),  # race: the proposal is that allocation itself
    ("round", pa.int64()),  # race: 0 proxy only, then each fine-tuning round (the last: the final round)
    ("epochs", pa.int64()),  # race: the round's fine-tuning epochs
    ("proxy_kl", pa.float64()),  # race: KL divergence from the baseline's outputs (plan.proxy)
    ("proxy_loss", pa.float64()),  # race: validation loss after BatchNorm recalibration (plan.proxy's bn_loss)
]

TRIAL_SCHEMA, EPOCH_SCHEMA, STEP_SCHEMA = (pa.schema(columns) for columns in (TRIAL_COLUMNS, EPOCH_COLUMNS, STEP_COLUMNS))


def _table(rows: list[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    unknown = sorted(set().union(*rows) - set(schema.names)) if rows else []
    if unknown:
        raise ValueError(f"unknown result column {unknown[0]!r}; schema v{SCHEMA_VERSION} has: {', '.join(schema.names)}")
    return pa.Table.from_pylist([dict(row) for row in rows], schema=schema)  # missing -> null


def _write(storage: Storage, path: str, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    storage.write_bytes_atomic(path, buffer.getvalue())


def write_trial(storage: Storage, row: Mapping[str, Any]) -> str:
    """Write one trial's row to <sweep>/trials/<trial_id>.parquet; returns the file's URI."""
    if row.get("status") not in STATUSES:
        raise ValueError(f"status {row.get('status')!r}; allowed: {', '.join(STATUSES)}")
    row = {"schema_version": SCHEMA_VERSION, **row}
    relative = (row["sweep"], "trials", f"{row['trial_id']}.parquet")
    _write(storage, storage.path(*relative), _table([row], TRIAL_SCHEMA))
    return storage.uri_of(*relative)


def write_epochs(storage: Storage, sweep: str, trial_id: str, epochs: list[Mapping[str, Any]]) -> None:
    rows = [{"sweep": sweep, "trial_id": trial_id, **epoch} for epoch in epochs]
    _write(storage, storage.path(sweep, "epochs", f"{trial_id}.parquet"), _table(rows, EPOCH_SCHEMA))


def write_steps(storage: Storage, sweep: str, schedule: str, trial_id: str, steps: list[Mapping[str, Any]]) -> None:
    """An adapting schedule's steps: <sweep>/<schedule>/<trial_id>.parquet."""
    rows = [{"sweep": sweep, "trial_id": trial_id, **step} for step in steps]
    _write(storage, storage.path(sweep, schedule, f"{trial_id}.parquet"), _table(rows, STEP_SCHEMA))


def read_trial(storage: Storage, sweep: str, trial_id: str) -> dict[str, Any] | None:
    """One trial's row as written (None if the trial wrote none)."""
    path = storage.path(sweep, "trials", f"{trial_id}.parquet")
    if not storage.exists(path):
        return None
    row = pq.read_table(path, filesystem=storage.fs, schema=TRIAL_SCHEMA).to_pylist()[0]
    row.pop("schema_version")
    return row


def _read_dir(storage: Storage, directory: str, schema: pa.Schema) -> pd.DataFrame:
    selector = pafs.FileSelector(directory, allow_not_found=True)
    files = sorted(
        info.path
        for info in storage.fs.get_file_info(selector)
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet") and not info.base_name.startswith(".")
    )
    if not files:
        return schema.empty_table().to_pandas(types_mapper=pd.ArrowDtype)
    tables = [pq.read_table(path, filesystem=storage.fs, schema=schema) for path in files]
    return pa.concat_tables(tables).to_pandas(types_mapper=pd.ArrowDtype)


def list_sweeps(storage: Storage) -> list[str]:
    infos = storage.fs.get_file_info(pafs.FileSelector(storage.root, allow_not_found=True))
    return sorted(
        info.base_name
        for info in infos
        if info.type == pafs.FileType.Directory and storage.exists(storage.path(info.base_name, "trials"))
    )


def model_location(trial_id: str) -> str:
    """What a row's model_uri holds for a model saved under its sweep: models/<trial_id>."""
    return f"{MODELS_DIR}/{trial_id}"


def resolve_model_uri(storage: Storage, sweep: str, trial_id: str, stored: str | None) -> str | None:
    """A row's model_uri as a location to load from, against the sweep directory the row was read
    from: models/<trial_id> (v9) and, for rows of v8 and before, an absolute path or URI ending in
    <sweep>/models/<trial_id> alike, so a copy reads its own files, never the original's."""
    if stored is None or pd.isna(stored):
        return None
    if stored == model_location(trial_id) or stored.rstrip("/").endswith(f"/{model_location(trial_id)}"):
        return storage.uri_of(sweep, MODELS_DIR, trial_id)
    return stored  # a location elsewhere (written by hand): as it is


def _read_sweep(storage: Storage, sweep: str) -> pd.DataFrame:
    frame = _read_dir(storage, storage.path(sweep, "trials"), TRIAL_SCHEMA)
    resolved = [resolve_model_uri(storage, sweep, trial, stored) for trial, stored in zip(frame["trial_id"], frame["model_uri"])]
    return frame.assign(model_uri=pd.array(resolved, dtype=frame["model_uri"].dtype))


def read_results(storage: str | Storage, sweep: str | None = None) -> pd.DataFrame:
    """All trial rows of one sweep (or of every sweep under the storage root) as a DataFrame with
    Arrow-backed dtypes: ints stay ints with nulls, lists stay lists, timestamps are UTC. model_uri
    is resolved against where the rows were read (load_pruned takes it as it is)."""
    storage = open_storage(storage) if isinstance(storage, str) else storage
    sweeps = [sweep] if sweep is not None else list_sweeps(storage)
    frames = [_read_sweep(storage, name) for name in sweeps]
    if not frames:
        return _read_dir(storage, storage.path("__none__"), TRIAL_SCHEMA)
    return pd.concat(frames, ignore_index=True)


def read_epochs(storage: str | Storage, sweep: str) -> pd.DataFrame:
    storage = open_storage(storage) if isinstance(storage, str) else storage
    return _read_dir(storage, storage.path(sweep, "epochs"), EPOCH_SCHEMA)


def read_steps(storage: str | Storage, sweep: str, schedule: str = "netadapt") -> pd.DataFrame:
    """The steps of every trial of an adapting schedule (netadapt) in one sweep."""
    storage = open_storage(storage) if isinstance(storage, str) else storage
    return _read_dir(storage, storage.path(sweep, schedule), STEP_SCHEMA)
