"""Do denormal (subnormal) floats explain a masked model's speed-up on the CPU?

    python benchmarks/denormals.py [--epochs 3] [--ratio 0.9] [--batch 32] [--repeats 3]

A digits_cnn trained for --epochs (the test suite's fixture trains 2), a copy with --ratio of every
conv/linear layer's weights masked (magnitude) and folded in, both timed in interleaved pairs
(prune_ray.measure.time_paired, the trials' timing) with `torch.set_flush_denormal(False)` (the
default) and `True` (subnormal inputs and results read as zero), --repeats times each, alternating.
It also counts the subnormal values among the weights and the activations of one batch. If the
masked model's speed-up disappears with flushing, denormals are its cause, and both sides of every
pair must be timed under the same, recorded setting.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform

import torch

from prune_ray.data import load_dataset
from prune_ray.measure import TimingOptions, time_paired
from prune_ray.models import create_model
from prune_ray.prune import get_method
from prune_ray.prune.unstructured import make_masks_permanent
from prune_ray.train import TrainRecipe, train

TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32


def subnormal(tensor: torch.Tensor) -> int:
    return int(((tensor != 0) & (tensor.abs() < TINY)).sum())


def subnormal_counts(model: torch.nn.Module, batch: torch.Tensor) -> dict[str, int]:
    """Subnormal weights, and subnormal values among every module's outputs on `batch`."""
    seen = {"activations": 0, "activation_values": 0}

    def hook(module, args, output):
        if isinstance(output, torch.Tensor):
            seen["activations"] += subnormal(output)
            seen["activation_values"] += output.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    with torch.no_grad():
        model.eval()(batch)
    for handle in handles:
        handle.remove()
    return {"weights": sum(subnormal(p) for p in model.parameters()), **seen}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--ratio", type=float, default=0.9)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset("digits")
    torch.manual_seed(0)
    dense = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=8)
    train(dense, data, TrainRecipe(epochs=args.epochs), seed=0)
    method = get_method("magnitude")
    layers = method.layers(dense, data.example_inputs(1))
    masked = make_masks_permanent(method.prune(copy.deepcopy(dense), {l.name: int(args.ratio * l.units) for l in layers}, None))
    batch = data.val_x[: args.batch]
    counts = {"dense": subnormal_counts(dense, batch), "masked": subnormal_counts(masked, batch)}
    runs = []
    for repeat in range(args.repeats):
        for flush in (False, True):
            torch.set_flush_denormal(flush)
            speed = time_paired(dense, masked, batch, TimingOptions(min_passes=200, min_time_ms=1000))
            runs.append({"repeat": repeat, "flush_denormal": flush, "dense_ms": speed.baseline.median_ms,
                         "masked_ms": speed.pruned.median_ms, "speedup": speed.median, "low": speed.low, "high": speed.high})
    torch.set_flush_denormal(False)
    print(f"{datetime.date.today()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread; "
          f"digits_cnn trained {args.epochs} epochs, masked copy {args.ratio:.0%} of weights, batch {args.batch}")
    print(f"subnormal values: {json.dumps(counts)}")
    print("| flush_denormal | dense ms | masked ms | speed-up (median, 95% of pairs) |")
    print("|---|---|---|---|")
    for run in runs:
        print(f"| {run['flush_denormal']} | {run['dense_ms']:.3f} | {run['masked_ms']:.3f} | "
              f"{run['speedup']:.3f}x ({run['low']:.3f}-{run['high']:.3f}) |")


if __name__ == "__main__":
    main()
