"""Does searching per-layer ratios beat one ratio everywhere? Searched (TPE) against uniform and
random schedules, at equal trial counts, on digits.

    python benchmarks/search_strategies.py [--samples 12] [--budgets 0.5 0.3] [--seeds 0 1 2]
        [--method l1_filter] [--storage benchmarks/out/search]

Each strategy is one real sweep (Ray Tune + Optuna, python -m prune_ray.sweep) over the budgets
and seeds, with --samples trials per (budget, seed). Per (strategy, budget, seed) the trial with
the best validation top-1 is what the search returns; the table gives the mean and standard
deviation over seeds of its validation and test top-1. tpe-asha is TPE with ASHA early stopping
per (budget, seed): same trial count, fewer fine-tuning epochs. Uniform is one deterministic schedule per
point, so the sweep runs it once per (budget, seed): the baseline the searches must beat. TPE
starts from a third of the trials drawn at random (prune_ray.search.startup_trials), then models.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import pandas as pd

from prune_ray.results.frontier import point_summary
from prune_ray.results import read_results

# name -> (schedule, sampler, early stopping)
STRATEGIES = {
    "tpe": ("searched", "tpe", "none"),
    "tpe-asha": ("searched", "tpe", "asha"),
    "random": ("searched", "random", "none"),
    "uniform": ("uniform", "tpe", "none"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12, help="trials per (budget, seed) for every strategy")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--method", default="l1_filter")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--storage", default=os.path.join("benchmarks", "out", "search"))
    args = parser.parse_args()

    os.makedirs(args.storage, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    rows = []
    for strategy, (schedule, sampler, early_stopping) in STRATEGIES.items():
        spec_path = os.path.join(args.storage, f"{strategy}.yaml")
        with open(spec_path, "w") as handle:
            handle.write(
                f"name: search-{strategy}\nmethods: [{args.method}]\nbudgets: {args.budgets}\nseeds: {args.seeds}\n"
                f"schedule: {schedule}\nsearch: {{sampler: {sampler}, num_samples: {args.samples}, max_concurrent: 2, "
                f"early_stopping: {early_stopping}, grace_epochs: 1}}\n"
                f"finetune: {{epochs: {args.finetune_epochs}, lr: 0.01}}\nmeasure: {{latency_repeats: 3}}\n"
            )
        sweep = f"{strategy}-{stamp}"
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "prune_ray.sweep", spec_path, "--storage", args.storage, "--name", sweep],
                       check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - began
        frame = read_results(args.storage, sweep)
        # per budget, each seed's search returns its best ok trial; mean and std over seeds
        for point in point_summary(frame).itertuples():
            of_budget = frame[frame["budget"] == point.budget]
            rows.append({
                "strategy": strategy, "budget": point.budget, "trials_per_seed": len(of_budget) // point.n, "seeds": point.n,
                "top1_mean": point.top1_mean, "top1_std": point.top1_std,
                "test_top1_mean": point.test_top1_mean, "test_top1_std": point.test_top1_std,
                "top1_pruned_mean": point.top1_pruned, "failed": int((of_budget["status"] == "failed").sum()),
                # fine-tuning epochs all trials of the budget ran (stopped ones: as far as they got)
                "epochs_per_seed": of_budget["finetune_epochs"].sum() / point.n,
                "sweep_seconds": seconds,
            })
    table = pd.DataFrame(rows).sort_values(["budget", "strategy"], ascending=[False, True])
    print(f"\n{args.method} on digits_cnn/digits, {args.samples} trials per (budget, seed), seeds {args.seeds}\n")
    print("| budget | strategy | trials per seed | fine-tune epochs per seed | val top-1 (mean ± std) | "
          "test top-1 (mean ± std) | top-1 before fine-tune | sweep time |")
    print("|---|---|---|---|---|---|---|---|")
    for row in table.itertuples():
        print(f"| {row.budget} | {row.strategy} | {row.trials_per_seed} | {row.epochs_per_seed:.0f} | "
              f"{100 * row.top1_mean:.2f} ± {100 * row.top1_std:.2f} | "
              f"{100 * row.test_top1_mean:.2f} ± {100 * row.test_top1_std:.2f} | {100 * row.top1_pruned_mean:.2f} | "
              f"{row.sweep_seconds:.0f} s |")
    print("\n" + json.dumps(rows, default=float))


if __name__ == "__main__":
    main()
