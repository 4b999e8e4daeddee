"""Does the searched schedule beat the best one-shot allocation? Every strategy side by side on
digits, 3 seeds, under tight budgets.

    python benchmarks/search_quality.py [--seeds 0 1 2] [--samples 8] [--screen-samples 16]
        [--finetune-epochs 3] [--storage benchmarks/out/quality] [--only magnitude]
        [--strategies lamp global searched-tpe ...]

Methods and budgets: `magnitude` at 0.05 and 0.02 of the nonzero params, `l1_filter` at 0.2 and 0.1
of the MACs. Strategies: the one-shot allocations uniform, global, lamp, erk (weights only) and
sensitivity (1 trial per operating point: each fine-tuned once), and the searched schedule
(log-multipliers around its prior, trial 0 = the prior) with the TPE and CMA-ES samplers,
each without screening (--samples trials, every one fine-tuned: --samples times the fine-tuning
of a one-shot allocation) and with BatchNorm-recalibration screening (--screen-samples proposals
ranked without fine-tuning, only the best fine-tuned: the same fine-tuning as a one-shot
allocation), and TPE with screening by one epoch of fine-tuning (`searched-tpe-epoch`:
--screen-samples proposals fine-tuned for 1 epoch, the best 2 for the full epochs). Each strategy is
one real sweep (python -m prune_ray.sweep) over both budgets and every seed; the baselines are
trained once per seed and shared through the store.

The table is `python -m prune_ray.analyze <storage> --table strategies`: per run (seed) the trial
a strategy picks (best validation top-1), mean ± std over seeds of its validation and test top-1,
and the fine-tuning epochs and seconds it spent. The screening score's quality is the Spearman rank
correlation, over the trials of each unscreened search, between the accuracy right after pruning
(raw, and after BatchNorm recalibration) and the final top-1 after fine-tuning.

The seeds' baselines differ (at 0.02 of the weights `lamp` ends at 86-94% test top-1 depending on
the seed's baseline), and every strategy of a seed prunes that seed's baseline, so the spread over
seeds of one strategy mostly measures the baselines. The paired table says what a strategy changes:
per seed, its picked trial's test top-1 minus that of the best one-shot allocation (the one with
the highest mean test top-1) on the same baseline, mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import pandas as pd

from prune_ray.results import read_results
from prune_ray.results.frontier import in_pick_order, usable_rows
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
            "screen_bn: true, finalists: 1}\n")
    found["searched-tpe-epoch"] = (f"schedule: searched\nsearch: {{sampler: tpe, num_samples: {screen_samples}, "
                                   "max_concurrent: 2, screen_epochs: 1, finalists: 2}\n")
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


def picks(frame: pd.DataFrame, stamp: str) -> pd.DataFrame:
    """Per (method, budget, strategy, seed): the picked trial (best validation top-1 of the fully
    fine-tuned trials, fewer resources kept breaking ties) and the seed's baseline test top-1."""
    rows = usable_rows(frame)  # ok rows, no screening stage, with `keep`
    rows["strategy"] = [sweep[len(method) + 1: -len(stamp) - 1] for sweep, method in zip(rows["sweep"], rows["method"])]
    return in_pick_order(rows).drop_duplicates(["method", "budget", "strategy", "seed"])[
        ["method", "budget", "strategy", "seed", "top1", "test_top1", "baseline_test_top1"]]


def paired_table(picked: pd.DataFrame) -> str:
    """Markdown: per method and budget, each strategy's test top-1 per seed, and its difference from
    the best one-shot allocation's on the same seed (mean ± std over seeds), in %."""
    sections = []
    for (method, budget), rows in picked.groupby(["method", "budget"], sort=False):
        test = rows.pivot(index="strategy", columns="seed", values="test_top1") * 100
        one_shot = test.loc[test.index.isin(ONE_SHOT)]
        if one_shot.empty:
            continue
        best = one_shot.mean(axis=1).idxmax()
        diff = test.sub(test.loc[best], axis=1)
        base = rows.drop_duplicates("seed").set_index("seed")["baseline_test_top1"] * 100
        seeds = list(test.columns)
        lines = [f"`{method}` at {budget:g} (best one-shot: {best}); baseline test top-1 per seed: "
                 + ", ".join(f"{base[seed]:.2f}" for seed in seeds), "",
                 "| strategy | " + " | ".join(f"seed {seed}" for seed in seeds) + f" | mean ± std | minus {best}, mean ± std |",
                 "| --- |" + " --- |" * (len(seeds) + 2)]
        for strategy in test.mean(axis=1).sort_values(ascending=False).index:
            values, delta = test.loc[strategy], diff.loc[strategy]
            lines.append(f"| {strategy} | " + " | ".join(f"{value:.2f}" for value in values)
                         + f" | {values.mean():.2f} ± {values.std():.2f} | {delta.mean():+.2f} ± {delta.std():.2f} |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=8, help="trials per point of an unscreened search")
    parser.add_argument("--screen-samples", type=int, default=16, help="proposals per point a screened search ranks")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--storage", default=os.path.join("benchmarks", "out", "quality"))
    parser.add_argument("--only", nargs="+", choices=sorted(METHODS), help="run only these methods")
    parser.add_argument("--strategies", nargs="+", help="run only these strategies (names as in strategies())")
    args = parser.parse_args()
    known = strategies(args.samples, args.screen_samples)
    unknown = sorted(set(args.strategies or ()) - set(known))
    if unknown:
        parser.error(f"--strategies: unknown {', '.join(unknown)}; allowed: {', '.join(known)}")

    os.makedirs(args.storage, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for method in args.only or METHODS:
        for name, lines in known.items():
            if (name in WEIGHTS_ONLY and method != "magnitude") or (args.strategies and name not in args.strategies):
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
    print("Per seed, paired with the best one-shot allocation on the same baseline (test top-1 %):\n")
    print(paired_table(picks(frame, stamp)))
    correlations = screening_correlations(frame)
    if len(correlations):
        summary = correlations.groupby(["method", "budget"]).agg(trials=("trials", "mean"), raw_mean=("raw", "mean"),
                                                                 raw_std=("raw", "std"), bn_mean=("bn", "mean"),
                                                                 bn_std=("bn", "std"), runs=("bn", "size"))
        print("Spearman rank correlation with the final top-1, over the trials of each unscreened search:\n")
        print(summary.reset_index().to_string(index=False, float_format=lambda value: f"{value:.3f}"))


if __name__ == "__main__":
    main()
