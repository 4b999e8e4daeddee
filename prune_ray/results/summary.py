"""What a sweep prints when it ends, and the rows Tune left unfinished (plain pandas, no Ray)."""

from __future__ import annotations

import datetime
import sys
import textwrap
from typing import Iterable

import pandas as pd

from .frontier import frontier_search, in_pick_order, pareto_front, point_detail, resource_keep
from .parquet import read_trial, write_trial
from .storage import Storage

EXIT_ALL_FAILED = 3
WIDTH = 100  # columns of the widest line the summary prints
HEADINGS = {"budget_metric": "metric", "top1": "top-1", "top1_pruned": "pruned", "baseline_top1": "baseline",
            "params_keep": "params", "macs_keep": "macs", "speedup_measured": "speedup", "quantizer": "quant",
            "quantize_bits_conv": "conv", "quantize_bits_fc": "fc", "top1_quantized": "quantised",
            "bytes_encoded": "bytes", "compression_ratio_total": "compr", "prune_steps": "steps"}
OPTIONAL = ["speedup_measured", "top1_pruned", "top1_quantized", "params_keep", "baseline_top1", "budget_metric"]
DEFAULTS = {"prune_steps": 1, "stage": "single"}  # columns shown only where a row differs


def _constant_default(frame: pd.DataFrame, column: str) -> bool:
    return column in DEFAULTS and bool((frame[column] == DEFAULTS[column]).all())


def narrow(frame: pd.DataFrame, width: int = WIDTH) -> str:
    """The rows as text with short headings, leaving out OPTIONAL columns (in that order) until
    every line fits in `width` columns."""
    number = lambda value: f"{value:.4f}"  # noqa: E731
    columns = list(frame.columns)
    while True:
        text = frame[columns].rename(columns=HEADINGS).to_string(index=False, float_format=number)
        dropped = next((c for c in OPTIONAL if c in columns), None)
        if max(map(len, text.splitlines())) <= width or dropped is None:
            return text
        columns.remove(dropped)


def settle_unfinished(storage: Storage, sweep: str, results: Iterable) -> int:
    """Rows still 'running' once Tune is done: trials the scheduler stopped early (their last report
    was an epoch, whose accuracy becomes the row's) or trials that died past their retries.
    `results` are Tune's ray.tune.Result objects (anything with .metrics and .error). Returns how many rows
    changed."""
    settled = 0
    for result in results:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id")
        if not trial_id or (result.error is None and metrics.get("status") != "running"):
            continue  # its final row was written before its final report
        row = read_trial(storage, sweep, trial_id)
        if row is None or row["status"] != "running":
            continue
        if result.error is None and "epoch" in metrics:
            row.update(status="stopped", top1=metrics["top1"], top5=metrics["top5"], finetune_epochs=metrics["epoch"])
        else:
            row.update(status="failed", error=f"{type(result.error).__name__}: {str(result.error).splitlines()[0]}")
        row["finished_at"] = datetime.datetime.now(datetime.timezone.utc)
        write_trial(storage, row)
        settled += 1
    return settled


def summarize(frame: pd.DataFrame, trials_uri: str, seconds: float) -> int:
    """Print where the rows are and the best row per (budget, method, quantiser), or a frontier search's
    non-dominated rows; returns 3 if every trial failed."""
    ok = frame[frame["status"] == "ok"]
    failed = frame[frame["status"] == "failed"]
    stopped = frame[frame["status"] == "stopped"]
    print(f"\n[prune-ray] {len(frame)} trials ({len(ok)} ok, {len(stopped)} stopped early, {len(failed)} failed) "
          f"in {seconds:.1f} s")
    print(f"[prune-ray] results: {trials_uri}")
    columns = ["budget_metric", "top1", "top1_pruned", "baseline_top1", "params_keep", "macs_keep", "speedup_measured", "trial_id"]
    ok = ok.astype({"budget_metric": object, "granularity": object, "schedule": object})
    ok = ok.assign(keep=resource_keep(ok), point_detail=point_detail(ok, ok))
    frontier = ok[frontier_search(ok)]
    if len(frontier):
        front = pareto_front(frontier, accuracy_column="top1", by=["method"])
        print("[prune-ray] non-dominated rows (top-1 against resource kept):")
        print(narrow(front[["method", *columns]]))
    elif len(ok):
        point = ["budget", "ratio", "point_detail", "method", "prune_steps", "quantizer", "quantize_bits_conv",
                 "quantize_bits_fc", "stage"]
        quantization = ["quantizer", "quantize_bits_conv", "quantize_bits_fc", "top1_quantized", "bytes_encoded",
                        "compression_ratio_total"]  # absent from rows made before schema v7
        ok = ok.reindex(columns=[*ok.columns, *(c for c in quantization if c not in ok)]).astype({"quantizer": object})
        best = in_pick_order(ok).groupby(point, sort=True, dropna=False).head(1)  # the analysis's pick
        shown = [c for c in [*point, *columns, *quantization[3:]] if best[c].notna().any()]  # hide budget or ratio when unused
        if not best["quantize_bits_conv"].notna().any():  # nothing quantised: the quantizer columns say nothing
            shown = [c for c in shown if c not in quantization]
        shown = [c for c in shown if not _constant_default(best, c)]
        print("[prune-ray] best row per budget and method:")
        print(narrow(best.sort_values(point)[shown]))
    for _, row in failed.iterrows():
        where = f"budget {row['budget']:g}" if pd.notna(row["budget"]) else (
            f"ratio {row['ratio']:g}" if pd.notna(row["ratio"]) else "its point")
        line = f"[prune-ray] failed {row['trial_id']} ({row['method']}, {where}): {str(row['error']).splitlines()[0]}"
        print("\n".join(textwrap.wrap(line, WIDTH, subsequent_indent="    ")))  # the whole error, in WIDTH columns
    if len(ok) == 0:
        print("[prune-ray] error: every trial failed", file=sys.stderr)
        return EXIT_ALL_FAILED
    return 0
