"""How well do cheap scores rank a search's proposals at an extreme budget? Ray-free, on digits.

    python benchmarks/screening_proxies.py [--budget 0.02] [--proposals 30] [--seeds 0 1 2]
        [--storage benchmarks/out/proxies] [--csv benchmarks/out/proxies.csv] [--from-csv]

Per seed (its own baseline from the store), the `searched` schedule's prior (`lamp` for
`magnitude`: theta = 0) and --proposals random proposals (theta_i uniform in [-1, 1], the default
search.log_range), each planned for the budget on the nonzero params, pruned with `magnitude`, and:
fine-tuned as a trial is (3 epochs, lr 0.01, from BatchNorm statistics recalibrated on 512
training examples): validation and test top-1; scored cheaply: accuracy right after pruning (raw),
after BatchNorm recalibration, and after 1 epoch of fine-tuning (search.screen_epochs: 1). Prints
per seed the Spearman rank correlation of each score with the final test top-1, and what each
selection rule (best of a random 8 or 16 including the prior, 300 draws) gains on the prior's test
top-1. --from-csv reads the proposals of an earlier run from --csv instead of running them.
"""

from __future__ import annotations

import argparse
import copy
import os
import random

import numpy as np
import pandas as pd
import torch

from prune_ray.measure import measure
from prune_ray.plan import PlanOptions, Proposal, Subject, plan_removal
from prune_ray.prune import get_method
from prune_ray.prune.iterative import Cadence, FineTune, prune_and_finetune
from prune_ray.prune.unstructured import make_masks_permanent
from prune_ray.spec import SweepSpec
from prune_ray.train import TrainRecipe, evaluate, recalibrate_batchnorm, train
from prune_ray.trial import RECALIBRATION_EXAMPLES
from prune_ray.trial_setup import calibration_of, obtain_baseline, trial_data

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
    parser.add_argument("--budget", type=float, default=0.02)
    parser.add_argument("--proposals", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--storage", default=os.path.join("benchmarks", "out", "proxies"))
    parser.add_argument("--csv", default=os.path.join("benchmarks", "out", "proxies.csv"))
    parser.add_argument("--from-csv", action="store_true", help="analyse the proposals in --csv, run nothing")
    args = parser.parse_args()
    frame = pd.read_csv(args.csv) if args.from_csv else run(args)
    report(frame)


def run(args: argparse.Namespace) -> pd.DataFrame:
    torch.set_num_threads(1)
    spec = SweepSpec(storage=os.path.abspath(args.storage))
    data = trial_data(spec)
    recalibration = data.train_head(RECALIBRATION_EXAMPLES)[0]
    method, example = get_method("magnitude"), data.example_inputs(1)
    rows = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        model = obtain_baseline(spec, data, seed).model
        base = measure(model, data.val_x[:32], latency=False)
        subject = Subject(model, method, method.layers(model, example), example, "params", base.params)
        rng = random.Random(seed)
        for index in range(args.proposals + 1):
            values = {f"t{j:03d}": (0.0 if index == 0 else rng.uniform(-1, 1)) for j in range(len(subject.layers))}
            removed = plan_removal("searched", subject, args.budget, Proposal(values), PlanOptions())
            scores = {}
            tuning = FineTune(data, TrainRecipe(epochs=3, lr=0.01), seed, recalibration=recalibration,
                              on_pruned=lambda top1, top5, bn: scores.update(raw=top1, bn=bn))
            torch.manual_seed(seed)
            tuned = prune_and_finetune(copy.deepcopy(model), method, removed, Cadence(), tuning, calibration_of(data)).model
            make_masks_permanent(tuned)
            short = method.prune(copy.deepcopy(model), removed, calibration_of(data))
            recalibrate_batchnorm(short, recalibration)
            train(short, data, TrainRecipe(epochs=1, lr=0.01), seed=seed)
            rows.append({"seed": seed, "proposal": index, **scores, "one_epoch": evaluate(short, data.val_x, data.val_y)[0],
                         "val": evaluate(tuned, data.val_x, data.val_y)[0], "test": evaluate(tuned, data.test_x, data.test_y)[0]})
            print(f"seed {seed} proposal {index}: " + " ".join(f"{k} {v:.3f}" for k, v in rows[-1].items()
                                                              if k not in ("seed", "proposal")), flush=True)
    frame = pd.DataFrame(rows)
    os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
    frame.to_csv(args.csv, index=False)
    return frame


def report(frame: pd.DataFrame) -> None:
    print("\nSpearman rank correlation with the final test top-1, per seed:\n")
    for score in ("raw", "bn", "one_epoch", "val"):
        per_seed = [g[score].corr(g["test"], method="spearman") for _, g in frame.groupby("seed")]
        print(f"  {score:10s} " + " ".join(f"{value:+.2f}" for value in per_seed) + f"   mean {np.mean(per_seed):+.2f}")
    best = [100 * (g["test"].max() - g.loc[g["proposal"] == 0, "test"].iloc[0]) for _, g in frame.groupby("seed")]
    print("\nThe best test top-1 of all proposals minus the prior's (points): " + " ".join(f"{gain:+.2f}" for gain in best))
    print("\nTest top-1 gained on the prior (points), per seed and mean, by selection rule:\n")
    draws = np.random.default_rng(0)
    for size in (8, 16):
        for name, rule in RULES.items():
            gains = []
            for _, g in frame.groupby("seed"):
                prior, others = g[g["proposal"] == 0], g[g["proposal"] > 0]
                picked = [g.loc[rule(pd.concat([prior, others.sample(size - 1, random_state=int(draws.integers(1 << 30)))])), "test"]
                          for _ in range(300)]
                gains.append(100 * (np.mean(picked) - prior["test"].iloc[0]))
            print(f"  of {size:2d}, {name:44s} " + " ".join(f"{gain:+.2f}" for gain in gains) + f"   mean {np.mean(gains):+.2f}")


if __name__ == "__main__":
    main()
