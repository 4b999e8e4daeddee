"""Operating points and accuracy-vs-resource frontiers of pruning results: pure pandas, no I/O.

Vocabulary:
- a *run* is one search (or one fixed-ratio trial) for one seed in one sweep. A search tries many
  per-layer schedules; its result is the trial it would pick: the best validation top-1.
- an *operating point* is one setting (model, dataset, method, budget or ratio, schedule, ...)
  aggregated over its runs: mean and std over seeds.
- the *frontier* of a method is its non-dominated operating points: none other keeps at most as
  much of the resource with at least the same mean top-1 (and is strictly better in one).
"""

from __future__ import annotations

from typing import Sequence

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..budget_metrics import KEPT_COLUMNS, auto_metric

# What makes two trials the same operating point. budget and ratio are both keys: a budgeted row has
# ratio null and a fixed-ratio row has budget null, so together they mean "budget, else ratio".
# point_detail tells apart points that budget and ratio cannot: see `point_detail`.
# quantizer and its bits: a quantised trial is its own point (and frontier) beside the float one.
QUANTIZE_KEYS = ("quantizer", "quantize_bits_conv", "quantize_bits_fc")
POINT_KEYS = (
    "model", "dataset", "method", "budget_metric", "budget", "ratio", "schedule", "iterative", "prune_steps", "point_detail",
    *QUANTIZE_KEYS,
)
RUN_KEYS = ("sweep", "seed")
FRONTIER_KEYS = ("model", "dataset", "method", "budget_metric", *QUANTIZE_KEYS)  # keep is only comparable within one metric

REQUIRED_COLUMNS = ("model", "dataset", "method", "status", "top1")
STRING_COLUMNS = (
    "sweep", "trial_id", "model_uri", "status", "model", "dataset", "method", "granularity", "schedule", "sampler", "budget_metric", "iterative",
    "stage", "quantizer",
)
NUMBER_COLUMNS = (
    "seed", "budget", "ratio", "prune_steps", "top1", "test_top1", "top1_pruned", "baseline_top1", "baseline_test_top1",
    "params_keep", "macs_keep", "latency_keep", "conv_threshold", "fc_threshold", "finetune_epochs", "time_prune_s",
    "time_finetune_s", "time_eval_s", "quantize_bits_conv", "quantize_bits_fc", "top1_quantized", "bytes_encoded",
    "file_bytes", "compression_ratio_total", "baseline_params", "time_quantize_s", "search_epochs",
)


def usable_rows(results: pd.DataFrame, include_screen: bool = False) -> pd.DataFrame:
    """The rows that count, with plain dtypes and every optional column present (null when absent).

    Only status "ok" rows with a top-1 count. Rows with stage "screen" are the short first-stage
    fine-tunes of a two-stage search: their accuracy is not comparable with full fine-tunes, so they
    are left out unless include_screen. Adds `keep`, the kept fraction of the budgeted resource.
    """
    missing = [name for name in REQUIRED_COLUMNS if name not in results]
    if missing:
        raise ValueError(f"results lack column {missing[0]!r}; needed: {', '.join(REQUIRED_COLUMNS)}")
    rows = pd.DataFrame(index=results.index)
    for name in STRING_COLUMNS:
        # object dtype with None for missing: Arrow's pd.NA would make comparisons return NA, not False
        column = results[name].astype(object) if name in results else pd.Series(None, index=results.index, dtype=object)
        rows[name] = column.where(column.notna(), None)
    for name in NUMBER_COLUMNS:
        rows[name] = results[name].astype("float64") if name in results else np.nan
    rows["point_detail"] = point_detail(results, rows)
    settle_quantization(rows)
    counted = rows["status"].eq("ok") & rows["top1"].notna()
    if not include_screen:
        counted &= ~rows["stage"].eq("screen")
    rows = rows[counted].reset_index(drop=True)
    rows["keep"] = resource_keep(rows)
    return rows


def settle_quantization(rows: pd.DataFrame) -> None:
    """Rows written before schema v7 had no quantisation: quantizer 'none', and their model's bytes
    are the saved files' (file_bytes), so that bytes_encoded and compression_ratio_total (baseline
    float32 parameter bytes / bytes) place them on the same axis as quantised rows. Adds
    `quantize_label`: the quantizer, with its bits per conv/fc code when it has them ('kmeans 8/5')."""
    rows["quantizer"] = rows["quantizer"].where(rows["quantizer"].notna(), "none")
    rows["bytes_encoded"] = rows["bytes_encoded"].fillna(rows["file_bytes"])
    rows["compression_ratio_total"] = rows["compression_ratio_total"].fillna(4 * rows["baseline_params"] / rows["bytes_encoded"])
    bits = rows["quantize_bits_conv"].notna() & rows["quantize_bits_fc"].notna()
    rows["quantize_label"] = [
        f"{name} {conv:g}/{fc:g}" if has_bits else name
        for name, conv, fc, has_bits in zip(rows["quantizer"], rows["quantize_bits_conv"], rows["quantize_bits_fc"], bits)
    ]


def frontier_search(rows: pd.DataFrame) -> pd.Series:
    """Rows of a frontier search: no budget, no single ratio, and a sampler (per-layer fixed ratio
    mappings have neither budget nor ratio, but no sampler: only searched schedules record one)."""
    return rows["budget"].isna() & rows["ratio"].isna() & rows["sampler"].notna()


def point_detail(results: pd.DataFrame, rows: pd.DataFrame) -> pd.Series:
    """What else makes a point, where budget and ratio are both null: each trial of a frontier
    search (it proposes its own kept fraction) is a point of its own, named by its trial id; fixed
    ratios given per layer (a mapping) are told apart by the layer ratios they pruned to, which do
    not depend on the seed. Null for every other row."""
    detail = pd.Series(None, index=results.index, dtype=object)
    no_point = (rows["budget"].isna() & rows["ratio"].isna()).to_numpy(bool)
    frontier = frontier_search(rows).to_numpy(bool)
    mapped = no_point & ~frontier
    if "trial_id" in results:
        detail[frontier] = results["trial_id"].astype(object)[frontier]
    if "layer_ratios" in results:
        detail[mapped] = [
            None if ratios is None or ratios is pd.NA else "layer ratios " + " ".join(f"{r:.3f}" for r in ratios)
            for ratios in results["layer_ratios"].astype(object)[mapped]
        ]
    return detail


def resource_keep(rows: pd.DataFrame, lowest_supported: bool = False) -> pd.Series:
    """The kept fraction of the resource each row was budgeted on: params_keep, macs_keep or
    latency_keep by its budget_metric. Rows without a metric (written before the column) follow the
    `auto` rule of the method registry (prune.auto_metric of their granularity). The one rule behind
    the trial's budget check, Tune's report, the pick order, the frontier and model retention.

    lowest_supported: a latency row's lowest kept fraction its paired timing supports (1 /
    speedup_high, the end of the interval the trial's budget check accepts) instead of its median
    (latency_keep); counted resources are exact either way. A missing value is NaN."""
    granularity = rows["granularity"] if "granularity" in rows else pd.Series(None, index=rows.index, dtype=object)
    stated = rows["budget_metric"] if "budget_metric" in rows else pd.Series(None, index=rows.index, dtype=object)
    metric = stated.where(stated.notna(), granularity.map(auto_metric, na_action="ignore"))
    kept = pd.Series(np.nan, index=rows.index, dtype="float64")
    for name, column in KEPT_COLUMNS.items():
        if name == "latency" and lowest_supported:
            values = 1 / rows["speedup_high"].astype("float64") if "speedup_high" in rows else np.nan
        else:
            values = rows[column].astype("float64") if column in rows else np.nan
        kept = kept.where(~metric.eq(name), values)
    return kept


def row_resource_keep(row: Mapping[str, Any], lowest_supported: bool = False) -> float | None:
    """`resource_keep` of one trial's row (a dict); None where it has no value (a failed trial)."""
    value = float(resource_keep(pd.DataFrame([{key: row.get(key) for key in (
        "budget_metric", "granularity", "speedup_high", *KEPT_COLUMNS.values())}]), lowest_supported).iloc[0])
    return None if math.isnan(value) else value


def in_pick_order(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` in the order a point's trials are picked, the pick first: the highest validation
    top-1, then on a tie the smaller kept fraction (`keep`). The one rule behind the analysis, the
    end-of-sweep summary, the models `artifacts.save: best` keeps and `export --pick`."""
    return rows.sort_values(["top1", "keep"], ascending=[False, True], kind="stable")


def best_trial_per_run(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (operating point, sweep, seed): its pick (in_pick_order).

    Averaging every trial of a search would mix its poor proposals into the result; the search
    reports its best trial, so that is what a seed contributes.
    """
    return in_pick_order(rows).drop_duplicates(subset=[*POINT_KEYS, *RUN_KEYS], keep="first")


def _joined(uris: pd.Series) -> str | None:
    """The saved models of a point's runs (one per seed), space-separated in sorted order; None when none was kept."""
    kept = sorted(str(uri) for uri in uris if uri is not None)
    return " ".join(kept) or None


def point_summary(results: pd.DataFrame, include_screen: bool = False) -> pd.DataFrame:
    """Aggregate over seeds: one row per operating point (POINT_KEYS), sorted by model, dataset,
    method and keep. Columns: the keys, then means (keep, params_keep, macs_keep, top1_mean,
    test_top1_mean, top1_pruned, top1_quantized, bytes_encoded, compression_ratio_total,
    baseline_top1, conv_threshold, fc_threshold), quantize_label, the stds top1_std and
    test_top1_std (sample std over runs; NaN for one run), n (runs, i.e. seeds), trials (all
    trials tried for the point) and model_uri (the runs' saved models, space-separated, or None). Accuracies stay fractions in [0, 1]."""
    rows = usable_rows(results, include_screen)
    keys = list(POINT_KEYS)
    rows["trials"] = rows.groupby(keys, dropna=False)["top1"].transform("size")
    runs = best_trial_per_run(rows)
    points = runs.groupby(keys, dropna=False, sort=False).agg(
        keep=("keep", "mean"),
        params_keep=("params_keep", "mean"),
        macs_keep=("macs_keep", "mean"),
        top1_mean=("top1", "mean"),
        top1_std=("top1", "std"),
        test_top1_mean=("test_top1", "mean"),
        test_top1_std=("test_top1", "std"),
        top1_pruned=("top1_pruned", "mean"),
        top1_quantized=("top1_quantized", "mean"),
        bytes_encoded=("bytes_encoded", "mean"),
        compression_ratio_total=("compression_ratio_total", "mean"),
        quantize_label=("quantize_label", "first"),
        baseline_top1=("baseline_top1", "mean"),
        conv_threshold=("conv_threshold", "mean"),
        fc_threshold=("fc_threshold", "mean"),
        n=("top1", "size"),
        trials=("trials", "first"),
        model_uri=("model_uri", _joined),
    )
    points = points.reset_index()
    return points.sort_values(["model", "dataset", "method", "keep"], kind="stable").reset_index(drop=True)


def baselines(results: pd.DataFrame, include_screen: bool = False) -> pd.DataFrame:
    """Baseline top-1 per (model, dataset): mean and std over the distinct (sweep, seed) baselines,
    and its parameters (mean; NaN where unrecorded)."""
    rows = usable_rows(results, include_screen).dropna(subset=["baseline_top1"])
    distinct = rows.drop_duplicates(subset=["model", "dataset", *RUN_KEYS])
    table = distinct.groupby(["model", "dataset"], sort=True).agg(
        top1_mean=("baseline_top1", "mean"), top1_std=("baseline_top1", "std"), n=("baseline_top1", "size"),
        params=("baseline_params", "mean"),
    )
    return table.reset_index()


def non_dominated(keep: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Boolean mask: True where no other point has keep <= and accuracy >=, one of them strictly."""
    keep, accuracy = np.asarray(keep, dtype=float), np.asarray(accuracy, dtype=float)
    # [i, j] compares candidate dominator j with point i
    no_more = keep[None, :] <= keep[:, None]
    no_worse = accuracy[None, :] >= accuracy[:, None]
    strictly = (keep[None, :] < keep[:, None]) | (accuracy[None, :] > accuracy[:, None])
    return ~(no_more & no_worse & strictly).any(axis=1)


def pareto_front(
    points: pd.DataFrame,
    keep_column: str = "keep",
    accuracy_column: str = "top1_mean",
    by: Sequence[str] = FRONTIER_KEYS,
) -> pd.DataFrame:
    """The non-dominated points of each group `by`, sorted by group and then by keep_column.
    Points with a null keep or accuracy cannot be placed and are left out."""
    placed = points.dropna(subset=[keep_column, accuracy_column])
    by = [key for key in by if key in points or key not in QUANTIZE_KEYS]  # points made before quantisation lack those
    fronts = [
        group[non_dominated(group[keep_column].to_numpy(), group[accuracy_column].to_numpy())]
        for _, group in placed.groupby(by, dropna=False, sort=False)
    ]
    if not fronts:
        return placed.iloc[0:0]
    front = pd.concat(fronts)
    return front.sort_values([*by, keep_column], kind="stable").reset_index(drop=True)


def literature_points(literature: pd.DataFrame, model: str, dataset: str) -> pd.DataFrame:
    """Published points for one model and dataset, with params_keep and macs_keep (fractions of the
    paper's own baseline) derived from the removed fractions; macs_keep falls back on 1 / speedup
    when a paper reports only the speedup. Unknown values stay NaN."""
    match = literature[(literature["model"] == model) & (literature["dataset"] == dataset)].copy()
    match["params_keep"] = 1 - match["params_removed"]
    match["macs_keep"] = (1 - match["macs_removed"]).fillna(1 / match["speedup"])
    return match.reset_index(drop=True)
