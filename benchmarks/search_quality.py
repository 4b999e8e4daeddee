"""Does the searched schedule beat the best one-shot allocation? Every strategy side by side on
digits, 3 seeds, under tight budgets.

    python benchmarks/search_quality.py [--seeds 0 1 2] [--samples 8] [--screen-samples 16]
        [--finetune-epochs 3] [--storage benchmarks/out/quality] [--only magnitude]

Methods and budgets: `magnitude` at 0.05 and 0.02 of the nonzero params, `l1_filter` at 0.2 and 0.1
of the MACs. Strategies: the one-shot allocations uniform, global, lamp, erk (weights only) and
sensitivity (1 trial per operating point: each fine-tuned once), and the searched schedule
(log-multipliers around its prior, trial 0 = the prior) with the TPE and CMA-ES samplers,
each without screening (--samples trials, every one fine-tuned: --samples times the fine-tuning
of a one-shot allocation) and with BatchNorm-recalibration screening (--screen-samples proposals
ranked without fine-tuning, only the best fine-tuned: the same fine-tuning as a one-shot
allocation). Each strategy is one real sweep (python -m prune_ray.sweep) over both budgets and every
seed; the baselines are trained once per seed and shared through the store.

The table is `python -m prune_ray.analyze <storage> --table strategies`: per run (seed) the trial
a strategy picks (best validation top-1), mean ± std over seeds of its validation and test top-1,
and the fine-tuning epochs and seconds it spent. The screening score's quality is the Spearman rank
correlation, over the trials of each unscreened search, between the accuracy right after pruning
(raw, and after BatchNorm recalibration) and the final top-1 after fine-tuning.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import pandas as pd

from prune_ray.results import read_results
from prune_ray.results.tables import render

METHODS = {"magnitude": [0.05, 0.02], "l1_filter": [0.2, 0.1]}
ONE_SHOT = ("uniform", "global", "lamp", "erk", "sensitivity")
WEIGHTS_ONLY = ("erk",)


def strategies(samples: int, screen_samples: int) -> dict[str, str]:
    """name -> the spec lines that make the strategy."""
    found = {name: f"schedule: {name}\nsearch: {{max_concurrent: 2}}\n" for name in ONE_SHOT}
    for sampler in ("tpe", "cmaes"):
        found[f"searched-{sampler}"] = (f"schedule: searched\nsearch: {{sampler: {sampler}, num_samples: {samples}, "
                                        "max_concurrent: 2}\n")
        found[f"searched-{sampler}-screen"] = (
            f"schedule: searched\nsearch: {{sampler: {sampler}, num_samples: {screen_samples}, max_concurrent: 2, "
            "screen_bn: true, keep_best: 1}\n")
    return found


def spearman(a: pd.Series, b: pd.Series) -> float:
    return float(a.rank().corr(b.rank()))


def screening_correlations(frame: pd.DataFrame) -> pd.DataFrame:
    """Per unscreened searched operating point and seed: Spearman of the pruned accuracies with top-1."""
    searched = frame[(frame["schedule"] == "searched") & (frame["stage"] == "single") & (frame["status"] == "ok")]
    rows = []
    for (method, budget, seed, sweep), trials in searched.groupby(["method", "budget", "seed", "sweep"]):
        if len(trials) >= 4:
            rows.append({"method": method, "budget": budget, "seed": seed, "sweep": sweep, "trials": len(trials),
                         "raw": spearman(trials["top1_pruned"], trials["top1"]),
                         "bn": spearman(trials["top1_pruned_bn"], trials["top1"])})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=8, help="trials per point of an unscreened search")
    parser.add_argument("--screen-samples", type=int, default=16, help="proposals per point a screened search ranks")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--storage", default=os.path.join("benchmarks", "out", "quality"))
    parser.add_argument("--only", nargs="+", choices=sorted(METHODS), help="run only these methods")
    args = parser.parse_args()

    os.makedirs(args.storage, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for method in args.only or METHODS:
        for name, lines in strategies(args.samples, args.screen_samples).items():
            if name in WEIGHTS_ONLY and method != "magnitude":
                continue
            spec_path = os.path.join(args.storage, f"{method}-{name}.yaml")
            with open(spec_path, "w") as handle:
                handle.write(f"name: quality\nmethods: [{method}]\nbudgets: {METHODS[method]}\nseeds: {args.seeds}\n"
                             f"finetune: {{epochs: {args.finetune_epochs}, lr: 0.01}}\nmeasure: {{latency_repeats: 3}}\n"
                             + lines)
            sweep = f"{method}-{name}-{stamp}"
            began = time.perf_counter()
            subprocess.run([sys.executable, "-m", "prune_ray.sweep", spec_path, "--storage", args.storage, "--name", sweep],
                           check=True, stdout=subprocess.DEVNULL)
            print(f"{sweep}: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    frame = read_results(args.storage)
    frame = frame[frame["sweep"].str.endswith(stamp)]
    print(render(frame, "strategies", "markdown"))
    correlations = screening_correlations(frame)
    if len(correlations):
        summary = correlations.groupby(["method", "budget"]).agg(trials=("trials", "mean"), raw_mean=("raw", "mean"),
                                                                 raw_std=("raw", "std"), bn_mean=("bn", "mean"),
                                                                 bn_std=("bn", "std"), runs=("bn", "size"))
        print("Spearman rank correlation with the final top-1, over the trials of each unscreened search:\n")
        print(summary.reset_index().to_string(index=False, float_format=lambda value: f"{value:.3f}"))


if __name__ == "__main__":
    main()
