"""Does the race beat the best one-shot allocation, at equal fine-tuning cost? Paired over seeds.

    OMP_NUM_THREADS=1 python benchmarks/search_quality.py [--mnist ../shared/data/mnist]
        [--points lenet5 lenet5_caffe digits] [--seeds 0 1 2 3 4] [--workers 2]
        [--train-limit 5000] [--finetune-epochs 2] [--storage ~/.cache/prune-ray-bench/quality]
    python benchmarks/search_quality.py --report-only --storage ...
    python benchmarks/search_quality.py --smoke --points digits --seeds 0 --finetune-epochs 1  (CI's twin)

Points: `magnitude` at 0.02 and 0.01 of the nonzero parameters and `l1_filter` at 0.2 and 0.1 of
the MACs, on real MNIST with LeNet-5 (`lenet5`) and the wider Caffe LeNet-5 (`lenet5_caffe`), and
on digits (`digits_cnn`). MNIST trains on a seeded subset of --train-limit images (validation
3,000 held out of the training split, test 10,000 whole), baselines 10 epochs at lr 0.05 after 1
epoch of warm-up (without it LeNet-5's seed 3 stayed at chance, 11% test top-1), fine-tunes
at lr 0.05 (cosine); MNIST points are left out when the MNIST files are absent (a fresh clone).

Strategies, each one trial per (point, seed) on that seed's baseline: the one-shot allocations
`uniform`, `global`, `lamp`, `knapsack` fine-tuned --finetune-epochs epochs; the race (`race`, the
schedule's defaults: 128 proposals, 8 -> 2 -> 1 at 1 and 2 epochs, then the portfolio lamp,
global, knapsack at the full epochs); and `global`, `lamp`, `knapsack` fine-tuned for the race's
total epochs in one long fine-tune (`<name>-long`): "search vs more fine-tuning". Every trial is
`prune_ray.trial.run_trial`, the code Ray Tune's trainable runs, here in a process pool (no Ray:
a trial's result does not depend on who schedules it), writing the usual Parquet rows, one sweep
directory per (model, method, strategy), so `python -m prune_ray.analyze <storage> --table
strategies` reads them too.

Printed: per point, each strategy's test top-1 per seed, its total fine-tuning epochs, and its
paired difference from the best one-shot allocation at equal epochs and from the best long
one-shot fine-tune (mean and 95% t-interval over seeds); then the proxies' Spearman rank
correlation with the top-1 after each of the race's rounds.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mnist_papers import unpack_mnist  # noqa: E402
from paired import t_interval  # noqa: E402

from prune_ray.results import read_results, read_steps  # noqa: E402
from prune_ray.results.parquet import SAVED_SPEC  # noqa: E402
from prune_ray.results.storage import open_storage  # noqa: E402
from prune_ray.spec import spec_from_yaml, spec_to_yaml  # noqa: E402

# magnitude: 0.015, not 0.01, as the second point: every layer keeps at least 1 - max_ratio (1%) of its
# weights and the biases stay, so no allocation reaches 0.01 of LeNet-5's parameters
POINTS = {"magnitude": (0.02, 0.015), "l1_filter": (0.2, 0.1)}
MODELS = {"lenet5": "mnist", "lenet5_caffe": "mnist", "digits": "digits"}  # --points name -> dataset
ZOO = {"lenet5": "lenet5", "lenet5_caffe": "lenet5_caffe", "digits": "digits_cnn"}
ONE_SHOT = ("uniform", "global", "lamp", "knapsack")
LONG = ("global", "lamp", "knapsack")


SMOKE = "search: {proposals: 6, race_keep: [2, 1], race_epochs: [1], curve_points: 4}\n"  # --smoke: the same code, seconds


def spec_text(point: str, method: str, schedule: str, epochs: int, args) -> str:
    baseline_epochs = 2 if args.smoke else 10
    data = ("data: {root: %s, download: false, val_fraction: 0.05, train_limit: %d}\n" % (args.data_root, args.train_limit)
            if MODELS[point] == "mnist" else "")
    return (f"name: quality\nmodel: {ZOO[point]}\ndataset: {MODELS[point]}\n{data}methods: [{method}]\n"
            f"budgets: {list(POINTS[method])}\nschedule: {schedule}\nseeds: {list(args.seeds)}\n"
            f"baseline: {{train: {{epochs: {baseline_epochs}, warmup_epochs: 1}}}}\n"
            f"finetune: {{epochs: {epochs}, lr: 0.05}}\n"
            f"measure: {{latency_repeats: 3, latency_min_time_ms: 20}}\nartifacts: {{save: none}}\n"
            f"storage: {args.storage}\n" + (SMOKE if args.smoke else ""))


def race_epochs(spec) -> int:
    """Total fine-tuning epochs of one race: its rounds, then the last round's survivors and the portfolio."""
    search = spec.search
    rounds = sum(keep * epochs for keep, epochs in zip(search.race_keep[:-1], search.race_epochs))
    return rounds + (search.race_keep[-1] + len(search.portfolio)) * spec.finetune.epochs


def sweeps(point: str, method: str, args) -> dict[str, object]:
    """strategy -> its spec."""
    race = spec_from_yaml(spec_text(point, method, "race", args.finetune_epochs, args), "race")
    found = {name: spec_from_yaml(spec_text(point, method, name, args.finetune_epochs, args), name) for name in ONE_SHOT}
    found["race"] = race
    for name in LONG:
        found[f"{name}-long"] = spec_from_yaml(spec_text(point, method, name, race_epochs(race), args), name)
    return found


def run_one(job: tuple) -> str:
    spec_yaml, sweep, method, budget, seed = job
    import torch

    torch.set_num_threads(1)
    from prune_ray.points import OperatingPoint, TrialConfig
    from prune_ray.results.parquet import read_trial
    from prune_ray.trial import TrialContext, run_trial

    spec = spec_from_yaml(spec_yaml, sweep)
    trial_id = f"{method}-{budget:g}-s{seed}"
    context = TrialContext(spec, sweep, {}, None)
    done = read_trial(context.storage, sweep, trial_id)
    if done is not None and done["status"] == "ok":
        return f"{sweep}/{trial_id}: kept"
    began = time.perf_counter()
    row = run_trial(TrialConfig(OperatingPoint(budget, method, seed)), context, trial_id)
    return f"{sweep}/{trial_id}: {row['status']} test top-1 {row.get('test_top1')} in {time.perf_counter() - began:.0f} s"


def train_baselines(spec_yaml: str, seed: int) -> str:
    import torch

    torch.set_num_threads(1)
    from prune_ray.trial_setup import obtain_baseline, trial_data

    spec = spec_from_yaml(spec_yaml, "baseline")
    baseline = obtain_baseline(spec, trial_data(spec), seed)
    return f"baseline {spec.model} seed {seed}: test top-1 {baseline.test_top1:.4f}"


def interval(values: pd.Series) -> str:
    """Mean and 95% t-interval over the seeds that have a value (a failed trial has none)."""
    mean, half = t_interval(values.dropna().tolist())
    return f"{mean:+.2f}" if math.isnan(half) else f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]"


def paired_tables(frame: pd.DataFrame) -> str:
    """Markdown, per point: each strategy's test top-1 per seed (%), total fine-tuning epochs, and
    its paired difference from the best one-shot allocation at equal epochs and from the best long
    fine-tune (mean and 95% t-interval over the seeds every strategy has)."""
    frame = frame[frame["sweep"].str.startswith("q-") & frame["status"].eq("ok")].copy()
    frame["strategy"] = [str(sweep).split("--")[-1] for sweep in frame["sweep"]]
    frame["epochs"] = frame["finetune_epochs"].fillna(0) + frame["search_epochs"].fillna(0)
    out = []
    for (model, method, budget), rows in frame.groupby(["model", "method", "budget"], sort=False):
        test = rows.pivot_table(index="strategy", columns="seed", values="test_top1") * 100
        epochs = rows.groupby("strategy")["epochs"].mean()
        seeds = list(test.columns)  # a failed trial leaves its strategy's cell empty ("failed") on that seed
        complete = test.notna().all(axis=1)  # the best is chosen among strategies that ran on every seed
        one_shot = test.loc[test.index.isin(ONE_SHOT) & complete].mean(axis=1)
        long = test.loc[test.index.str.endswith("-long") & complete].mean(axis=1)
        if one_shot.empty or not seeds:
            continue
        best, best_long = one_shot.idxmax(), (long.idxmax() if len(long) else None)
        base = rows.drop_duplicates("seed").set_index("seed")["baseline_test_top1"] * 100
        resource = "params" if rows["budget_metric"].iloc[0] == "params" else rows["budget_metric"].iloc[0]
        out += [f"`{model}` `{method}` at {budget:g} of the {resource}, {len(seeds)} seeds; baseline test top-1 "
                + ", ".join(f"{base[s]:.2f}" for s in seeds) + f"; best one-shot: {best}"
                + (f", best long: {best_long}" if best_long else ""), "",
                "| strategy | epochs | " + " | ".join(f"seed {s}" for s in seeds) + f" | mean | minus {best} (95% CI) |"
                + (f" minus {best_long} (95% CI) |" if best_long else ""),
                "| --- | --- |" + " --- |" * (len(seeds) + 2) + (" --- |" if best_long else "")]
        for strategy in test.mean(axis=1).sort_values(ascending=False).index:
            values = test.loc[strategy]
            line = (f"| {strategy} | {epochs[strategy]:g} | "
                    + " | ".join("failed" if pd.isna(v) else f"{v:.2f}" for v in values)
                    + f" | {values.mean():.2f} | {interval(values - test.loc[best])} |")
            out.append(line + (f" {interval(values - test.loc[best_long])} |" if best_long else ""))
        if {"knapsack", "global"} <= set(test.index):
            out += ["", f"knapsack minus global, paired: {interval(test.loc['knapsack'] - test.loc['global'])}"]
        out.append("")
    return "\n".join(out)


def proxy_correlations(storage: str, sweeps: list[str]) -> pd.DataFrame:
    """Per race sweep and round: Spearman of each proxy (sign flipped: lower proxy, closer) with the
    validation top-1 the round's entrants reached, mean and std over runs."""
    rows = []
    for sweep in sweeps:
        steps = read_steps(storage, sweep, "race")
        for (trial, round_), entrants in steps[steps["round"] > 0].groupby(["trial_id", "round"]):
            if len(entrants) >= 3:
                rows.append({"sweep": sweep.split("--")[0], "round": int(round_), "entrants": len(entrants),
                             "kl": -entrants["proxy_kl"].rank().corr(entrants["top1"].rank()),
                             "bn_loss": -entrants["proxy_loss"].rank().corr(entrants["top1"].rank())})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).groupby(["sweep", "round"]).agg(
        entrants=("entrants", "mean"), kl=("kl", "mean"), kl_std=("kl", "std"), bn_loss=("bn_loss", "mean"),
        bn_loss_std=("bn_loss", "std"), runs=("kl", "size")).reset_index()


def report(storage: str) -> None:
    frame = read_results(storage)
    print(paired_tables(frame))
    races = sorted(sweep for sweep in frame["sweep"].unique() if sweep.startswith("q-") and sweep.endswith("--race"))
    correlations = proxy_correlations(storage, races)
    if len(correlations):
        print("Spearman rank correlation of each proxy (sign flipped: a lower proxy is closer) with the validation "
              "top-1 after each round of the race, over the round's entrants; mean and std over runs:\n")
        print(correlations.to_string(index=False, float_format=lambda value: f"{value:.2f}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default=os.path.join("..", "shared", "data", "mnist"))
    parser.add_argument("--points", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--methods", nargs="+", default=list(POINTS), choices=list(POINTS))
    parser.add_argument("--strategies", nargs="+", help="only these (names as printed)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--train-limit", type=int, default=5000)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--storage", default=os.path.expanduser("~/.cache/prune-ray-bench/quality"))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="CI's twin: tiny race, 2-epoch baselines, each method's first point (use with --points digits)")
    args = parser.parse_args()
    args.storage = os.path.abspath(args.storage)
    if args.report_only:
        report(args.storage)
        return
    points = list(args.points)
    if any(MODELS[p] == "mnist" for p in points):
        if os.path.isdir(args.mnist):
            args.data_root = unpack_mnist(args.mnist, os.path.join(args.storage, "data"))
        else:
            print(f"{args.mnist} absent: the MNIST points are left out", file=sys.stderr)
            points = [p for p in points if MODELS[p] != "mnist"]
    storage = open_storage(args.storage)
    began = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        for point in points:
            specs = {method: sweeps(point, method, args) for method in args.methods}
            first = spec_to_yaml(next(iter(specs[args.methods[0]].values())))
            for line in pool.map(train_baselines, [first] * len(args.seeds), args.seeds):
                print(line, flush=True)
            jobs = []
            for method, by_strategy in specs.items():
                for strategy, spec in by_strategy.items():
                    if args.strategies and strategy not in args.strategies:
                        continue
                    sweep = f"q-{point}-{method}--{strategy}"
                    storage.write_bytes_atomic(storage.path(sweep, SAVED_SPEC), spec_to_yaml(spec).encode())
                    budgets = POINTS[method][:1] if args.smoke else POINTS[method]  # --smoke: the first point only
                    jobs += [(spec_to_yaml(spec), sweep, method, budget, seed)
                             for seed in args.seeds for budget in budgets]
            jobs.sort(key=lambda job: job[1].endswith("--race"), reverse=True)  # the longest first
            for line in pool.map(run_one, jobs):
                print(f"[{time.perf_counter() - began:.0f} s] {line}", flush=True)
    print(f"done in {time.perf_counter() - began:.0f} s", flush=True)
    report(args.storage)


if __name__ == "__main__":
    main()
