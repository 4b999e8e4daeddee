"""Paired seeds on real MNIST: per seed, a recipe's own baseline and one of its pruned operating
points, so the pruned model's test error is compared with the baseline it was pruned from.

    python benchmarks/mnist_paired.py sweeps/han2015_lenet300_mnist.yaml --point 1 --seeds 0 1 2 3 4 \
        [--ratios '{"fc1": 0.92, ...}'] [--finetune distill=0.5 epochs=8] [--baseline lr=0.01] \
        [--prune-steps 5] [--mnist ../shared/data/mnist] [--storage DIR]

Each trial runs in this process on one thread through `run_trial` (the sweep's own trial, without
Ray); baselines go to (and are read back from) the store under DIR, so a second run with another
fine-tuning recipe trains none. It prints one line per seed and the mean paired difference (pruned
test error minus its own baseline's, in points) with a 95% t interval over the seeds and the
one-sided 95% upper bound (what a "within X points of the baseline" target is tested by).
`--summarise LOG...` reads the lines of earlier runs' --log files instead and summarises each
setting (recipe, ratios, cycles, overrides) over all its seeds. docs/papers.md has the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.mnist_papers import IDX_FILES, unpack_mnist  # noqa: E402
from benchmarks.paired import t_interval  # noqa: E402
from prune_ray.points import OperatingPoint, TrialConfig  # noqa: E402
from prune_ray.spec import ArtifactOptions, Resources, SweepSpec, load_spec  # noqa: E402
from prune_ray.trial import TrialContext, run_trial  # noqa: E402


def parse_override(text: str, recipe) -> tuple[str, object]:
    """'key=value' for a TrainRecipe field, the value cast to the field's type."""
    key, sep, value = text.partition("=")
    fields = {f.name: f for f in dataclasses.fields(recipe)}
    if not sep or key not in fields:
        raise SystemExit(f"--finetune {text!r}: expected key=value with key one of {', '.join(fields)}")
    kind = type(getattr(recipe, key))
    return key, (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)


def paired_spec(path: str, data_root: str, storage: str, seed: int, finetune: list[str],
                baseline: list[str]) -> SweepSpec:
    spec = load_spec(path)
    tune = dict(parse_override(item, spec.finetune) for item in finetune)
    base = dict(parse_override(item, spec.baseline.train) for item in baseline)
    return dataclasses.replace(
        spec, data=dataclasses.replace(spec.data, root=data_root, download=False), storage=storage,
        resources=Resources(cpu=1, gpu=0), artifacts=ArtifactOptions(save="none"), seeds=(seed,),
        finetune=dataclasses.replace(spec.finetune, **tune),
        baseline=dataclasses.replace(spec.baseline, train=dataclasses.replace(spec.baseline.train, **base)))


def summary(differences: list[float]) -> str:
    mean, half = t_interval(differences)
    _, one_sided = t_interval(differences, 0.95)
    return (f"mean paired difference over {len(differences)} seeds: {mean:+.3f} point, 95% interval "
            f"[{mean - half:+.3f}, {mean + half:+.3f}], one-sided 95% upper bound {mean + one_sided:+.3f}")


def summarise(logs: list[str]) -> int:
    """Each setting in the --log files over all its seeds (a seed logged twice: its last line)."""
    settings: dict[str, dict[int, float]] = {}
    for path in logs:
        with open(path) as handle:
            for line in filter(str.strip, handle):
                row = json.loads(line)
                key = json.dumps({k: row[k] for k in ("recipe", "ratios", "steps", "finetune", "baseline_override")},
                                 sort_keys=True)
                settings.setdefault(key, {})[row["seed"]] = row["difference"]
    for key, by_seed in settings.items():
        print(f"{key}\n  seeds {sorted(by_seed)}\n  {summary(list(by_seed.values()))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", help="a han2015_*_mnist.yaml or similar recipe with schedule fixed")
    parser.add_argument("--point", type=int, default=1, help="index into the recipe's fixed_ratios")
    parser.add_argument("--ratios", type=json.loads, help='per-layer ratios instead of --point, e.g. \'{"fc1": 0.92}\'')
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--prune-steps", type=int, help="default: the recipe's first prune_steps")
    parser.add_argument("--finetune", nargs="*", default=[], help="finetune overrides, key=value")
    parser.add_argument("--baseline", nargs="*", default=[], help="baseline.train overrides, key=value")
    parser.add_argument("--baseline-only", action="store_true", help="train (or load) the baselines only")
    parser.add_argument("--mnist", default=os.path.join(ROOT, "..", "shared", "data", "mnist"))
    parser.add_argument("--storage", default=os.path.expanduser("~/.cache/prune-ray-bench/mnist-paired"))
    parser.add_argument("--log", help="append one JSON line per seed to this file")
    parser.add_argument("--summarise", nargs="+", metavar="LOG", help="summarise these --log files; run nothing")
    args = parser.parse_args(argv)
    if args.summarise:
        return summarise(args.summarise)
    if args.recipe is None:
        parser.error("the recipe is required (or --summarise LOG...)")
    if not all(os.path.exists(os.path.join(args.mnist, f + ".gz")) for f in IDX_FILES):
        print(f"--mnist: {args.mnist} does not hold the four MNIST .gz files", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    storage = os.path.abspath(args.storage)
    data_root = unpack_mnist(args.mnist, os.path.join(storage, "data"))
    differences = []
    for seed in args.seeds:
        spec = paired_spec(args.recipe, data_root, storage, seed, args.finetune, args.baseline)
        steps = args.prune_steps or spec.prune_steps[0]
        if args.baseline_only:
            from prune_ray.data import load_dataset
            from prune_ray.trial_setup import obtain_baseline

            began = time.perf_counter()
            baseline = obtain_baseline(spec, load_dataset(spec.dataset, spec.data), seed)
            print(f"seed {seed}: baseline test error {100 * (1 - baseline.test_top1):.2f}% "
                  f"({'trained' if baseline.trained_now else 'loaded'}, {time.perf_counter() - began:.0f} s)", flush=True)
            continue
        ratios = args.ratios if args.ratios is not None else spec.fixed_ratios[args.point]
        point = OperatingPoint(None, spec.methods[0], seed, ratios, steps)
        began = time.perf_counter()
        row = run_trial(TrialConfig(point), TrialContext(spec, "paired", {}, None), f"paired-{seed}")
        if row["status"] != "ok":
            print(f"seed {seed}: failed: {row.get('error')}", flush=True)
            return 1
        base, pruned = 100 * (1 - row["baseline_test_top1"]), 100 * (1 - row["test_top1"])
        differences.append(pruned - base)
        line = {"recipe": os.path.basename(args.recipe), "ratios": ratios, "seed": seed, "steps": steps,
                "finetune": args.finetune, "baseline_override": args.baseline, "baseline_error": round(base, 2),
                "pruned_error": round(pruned, 2), "difference": round(pruned - base, 2),
                "seconds": round(time.perf_counter() - began)}
        print(json.dumps(line), flush=True)
        if args.log:
            with open(args.log, "a") as handle:
                handle.write(json.dumps(line) + "\n")
    if differences:
        print(summary(differences), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
