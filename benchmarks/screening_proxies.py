"""How much room is there around a search's prior, and how well do cheap scores and selection rules
find it? Ray-free, on digits, at every point of the search-quality benchmark.

    python benchmarks/screening_proxies.py [--points magnitude@0.02 magnitude@0.05 l1_filter@0.2 l1_filter@0.1]
        [--proposals 15] [--seeds 0 1 2 3 4 5] [--storage benchmarks/out/proxies]
        [--csv benchmarks/out/proxies.csv] [--from-csv]

Per point (method@budget, on the method's default resource) and seed (its own baseline from the
store): the `searched` schedule's prior (theta = 0: `lamp` for `magnitude`, `global` for
`l1_filter`) and --proposals random proposals (theta_i uniform in [-1, 1], the default
search.log_range), each planned for the budget, pruned, and:
fine-tuned as a trial is (3 epochs, lr 0.01, from BatchNorm statistics recalibrated on 512
training examples): validation and test top-1; scored cheaply: accuracy right after pruning (raw),
after BatchNorm recalibration, and after 1 epoch of fine-tuning (search.screen_epochs: 1).

Prints per point: the Spearman rank correlation of each score with the final test top-1, the
prior's place among all proposals by test top-1 (0: none better), the room (the best test top-1
of all proposals minus the prior's: what an oracle pick of all of them gains), and what each
selection rule gains on the prior's test top-1 (best of a random 8 or 16 including the prior, 300
draws). Room is an upper bound for every search of this space with this many proposals: no rule
that sees only validation can pick better than the test split's best. --from-csv analyses the
proposals of an earlier run from --csv instead of running them.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import warnings

import numpy as np
import pandas as pd
import torch

from prune_ray.measure import measure
from prune_ray.plan import PlanOptions, Proposal, Subject, plan_removal
from prune_ray.plan.searched import theta_key
from prune_ray.prune import get_method
from prune_ray.prune.iterative import Cadence, FineTune, prune_and_finetune
from prune_ray.prune.unstructured import make_masks_permanent
from prune_ray.spec import SweepSpec
from prune_ray.train import TrainRecipe, evaluate, recalibrate_batchnorm, train
from prune_ray.train import RECALIBRATION_EXAMPLES
from prune_ray.trial_setup import calibration_of, obtain_baseline, trial_data

POINTS = ("magnitude@0.02", "magnitude@0.05", "l1_filter@0.2", "l1_filter@0.1")
RULES = {  # name -> the index a rule picks among a frame of proposals
    "best validation top-1 (the default)": lambda g: g["val"].idxmax(),
    "best by 1-epoch screen": lambda g: g["one_epoch"].idxmax(),
    "1-epoch screen, best 2 on validation": lambda g: g.loc[g["one_epoch"].nlargest(2).index, "val"].idxmax(),
    "BatchNorm screen, best 2 on validation": lambda g: g.loc[g["bn"].nlargest(2).index, "val"].idxmax(),
    "the prior unless beaten by 1.5 val points": lambda g: (
        g["val"].idxmax() if g["val"].max() > g.loc[g["proposal"] == 0, "val"].iloc[0] + 0.015
        else g.index[g["proposal"] == 0][0]),
    "oracle (best test top-1)": lambda g: g["test"].idxmax(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", nargs="+", default=list(POINTS), help="method@budget, each its own point")
    parser.add_argument("--proposals", type=int, default=15, help="random proposals per point and seed, besides the prior")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--storage", default=os.path.join("benchmarks", "out", "proxies"))
    parser.add_argument("--csv", default=os.path.join("benchmarks", "out", "proxies.csv"))
    parser.add_argument("--from-csv", action="store_true", help="analyse the proposals in --csv, run nothing")
    args = parser.parse_args()
    frame = pd.read_csv(args.csv) if args.from_csv else run(args)
    for point, rows in frame.groupby("point", sort=False):
        report(point, rows.reset_index(drop=True))


def parse_point(text: str) -> tuple[str, float]:
    method, _, budget = text.partition("@")
    get_method(method)  # an unknown method fails here, naming the allowed ones
    return method, float(budget)


def run(args: argparse.Namespace) -> pd.DataFrame:
    torch.set_num_threads(1)
    points = [parse_point(text) for text in args.points]
    spec = SweepSpec(storage=os.path.abspath(args.storage))
    data = trial_data(spec)
    recalibration = data.train_head(RECALIBRATION_EXAMPLES)[0]
    example = data.example_inputs(1)
    rows = []
    for seed in args.seeds:
        model = obtain_baseline(spec, data, seed).model
        base = measure(model, data.val_x[:32], latency=False)
        for (name, budget), text in zip(points, args.points):
            method = get_method(name)
            metric = method.default_metric
            subject = Subject(model, method, method.layers(model, example), example, metric,
                              base.params_nonzero if metric == "params" else base.macs)
            rng = random.Random(f"{seed}-{text}")
            for index in range(args.proposals + 1):
                values = {theta_key(j): (0.0 if index == 0 else rng.uniform(-1, 1)) for j in range(len(subject.layers))}
                removed = plan_removal("searched", subject, budget, Proposal(values), PlanOptions())
                rows.append({"point": text, "seed": seed, "proposal": index,
                             **scores_of(model, method, removed, data, recalibration, seed)})
                print(f"{text} seed {seed} proposal {index}: " + " ".join(
                    f"{k} {v:.3f}" for k, v in rows[-1].items() if k not in ("point", "seed", "proposal")), flush=True)
    frame = pd.DataFrame(rows)
    os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
    frame.to_csv(args.csv, index=False)
    return frame


def scores_of(model, method, removed, data, recalibration, seed: int) -> dict[str, float]:
    """A proposal's cheap scores and its validation and test top-1 after a trial's fine-tuning."""
    scores = {}
    tuning = FineTune(data, TrainRecipe(epochs=3, lr=0.01), seed, recalibration=recalibration,
                      on_pruned=lambda top1, top5, bn: scores.update(raw=top1, bn=bn))
    torch.manual_seed(seed)
    tuned = prune_and_finetune(copy.deepcopy(model), method, removed, Cadence(), tuning, calibration_of(data)).model
    make_masks_permanent(tuned)
    short = method.prune(copy.deepcopy(model), removed, calibration_of(data))
    recalibrate_batchnorm(short, recalibration)
    train(short, data, TrainRecipe(epochs=1, lr=0.01), seed=seed)
    return {**scores, "one_epoch": evaluate(short, data.val_x, data.val_y)[0],
            "val": evaluate(tuned, data.val_x, data.val_y)[0], "test": evaluate(tuned, data.test_x, data.test_y)[0]}


def report(point: str, frame: pd.DataFrame) -> None:
    seeds = sorted(frame["seed"].unique())
    print(f"\n## {point}: {frame.groupby('seed').size().iloc[0]} proposals per seed (the prior included), seeds "
          + " ".join(map(str, seeds)))
    prior = {seed: g.loc[g["proposal"] == 0, "test"].iloc[0] for seed, g in frame.groupby("seed")}
    print("\nThe prior's test top-1 %: " + " ".join(f"{100 * prior[s]:.2f}" for s in seeds))
    print("Proposals better than the prior on test: " + " ".join(
        str(int((g["test"] > prior[s]).sum())) for s, g in frame.groupby("seed")))
    room = [100 * (g["test"].max() - prior[s]) for s, g in frame.groupby("seed")]
    print("Room (best test top-1 of all minus the prior's, points): " + " ".join(f"{gain:+.2f}" for gain in room)
          + f"   mean {np.mean(room):+.2f} ± {np.std(room, ddof=1) if len(room) > 1 else 0:.2f}")
    print("\nSpearman rank correlation with the final test top-1, per seed (nan: a score that is the same for all):\n")
    for score in ("raw", "bn", "one_epoch", "val"):
        with warnings.catch_warnings():  # scipy warns of a constant input; its nan says so in the table
            warnings.simplefilter("ignore")
            per_seed = [g[score].corr(g["test"], method="spearman") for _, g in frame.groupby("seed")]
        print(f"  {score:10s} " + " ".join(f"{value:+.2f}" for value in per_seed) + f"   mean {np.nanmean(per_seed):+.2f}")
    print("\nTest top-1 gained on the prior (points), per seed and mean ± std over seeds, by selection rule:\n")
    draws = np.random.default_rng(0)
    for size in (8, 16):
        for name, rule in RULES.items():
            gains = []
            for seed, g in frame.groupby("seed"):
                first, others = g[g["proposal"] == 0], g[g["proposal"] > 0]
                if len(others) < size - 1:
                    continue
                picked = [g.loc[rule(pd.concat([first, others.sample(size - 1, random_state=int(draws.integers(1 << 30)))])), "test"]
                          for _ in range(300)]
                gains.append(100 * (np.mean(picked) - prior[seed]))
            if gains:
                spread = np.std(gains, ddof=1) if len(gains) > 1 else 0.0
                print(f"  of {size:2d}, {name:44s} " + " ".join(f"{gain:+.2f}" for gain in gains)
                      + f"   mean {np.mean(gains):+.2f} ± {spread:.2f}")


if __name__ == "__main__":
    main()
