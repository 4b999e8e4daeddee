"""Strategies side by side: per (model, dataset, method, budget), each allocation strategy's
accuracy over seeds and what it cost (fine-tuning epochs, seconds). Pure pandas, no I/O.

A strategy is the schedule, plus the sampler for searched schedules, plus "+screen" for a
two-stage search, plus the quantiser and its bits for a quantised model. Per run (sweep, seed) a strategy contributes the trial it would pick (best
validation top-1 among its fully fine-tuned trials) and the cost of all its trials, screening
included, and a race's rounds (`search_epochs`); the table reports mean and std over runs.
"""

from __future__ import annotations

import pandas as pd

from .frontier import RUN_KEYS, in_pick_order, usable_rows

STRATEGY_KEYS = ("model", "dataset", "method", "budget_metric", "budget", "strategy")


def strategy_of(rows: pd.DataFrame) -> pd.Series:
    """Schedule, /sampler, for a two-stage search " +screen" (ranked by accuracy after BatchNorm
    recalibration, no fine-tuning) or " +screen N ep" (ranked after N epochs of fine-tuning: the
    sweep's screen rows say which), and the quantiser of a quantised model."""
    sampler = rows["sampler"].where(rows["sampler"].notna(), None)
    label = rows["schedule"].astype(str) + sampler.map(lambda value: f"/{value}" if value else "")
    screens = rows[rows["stage"].eq("screen")].groupby("sweep")["finetune_epochs"].max()
    epochs = rows["sweep"].map(screens).fillna(0)
    screen = epochs.map(lambda n: f" +screen {n:g} ep" if n > 0 else " +screen")
    label += screen.where(rows["stage"].isin(["screen", "final"]), "")
    quantized = rows["quantize_bits_conv"].notna()  # a quantised model is a strategy of its own: 'lamp kmeans 8/5'
    return label + rows["quantize_label"].where(quantized, "").map(lambda name: f" {name}" if name else "")


def strategy_summary(results: pd.DataFrame) -> pd.DataFrame:
    """One row per STRATEGY_KEYS: top1_mean/std, test_top1_mean/std (the picked trial's), epochs and
    seconds per run (all trials, screening included), trials per run, n runs; accuracies in [0, 1]."""
    rows = usable_rows(results, include_screen=True)
    rows["strategy"] = strategy_of(rows)
    rows["seconds"] = rows[["time_prune_s", "time_finetune_s", "time_quantize_s", "time_eval_s"]].fillna(0).sum(axis=1)
    # a trial's fine-tuning and what its schedule spent on candidates before it (a race's rounds)
    rows["epochs"] = rows["finetune_epochs"].fillna(0) + rows["search_epochs"].fillna(0)
    keys = [*STRATEGY_KEYS, *RUN_KEYS]
    cost = rows.groupby(keys, dropna=False).agg(epochs=("epochs", "sum"), seconds=("seconds", "sum"),
                                                 trials=("top1", "size"))
    full = in_pick_order(rows[~rows["stage"].eq("screen")])
    picked = full.drop_duplicates(subset=keys, keep="first").set_index(keys)[["top1", "test_top1"]]
    runs = picked.join(cost).reset_index()
    table = runs.groupby(list(STRATEGY_KEYS), dropna=False, sort=True).agg(
        top1_mean=("top1", "mean"), top1_std=("top1", "std"), test_top1_mean=("test_top1", "mean"),
        test_top1_std=("test_top1", "std"), epochs=("epochs", "mean"), seconds=("seconds", "mean"),
        trials=("trials", "mean"), n=("top1", "size"),
    )
    return table.reset_index()
