"""Measured latency speedup against MACs reduction of the structured (and low-rank) methods.

    python benchmarks/latency_vs_macs.py [--model resnet56] [--keep 0.5] [--batch 64]
                                         [--min-passes 20] [--min-time-ms 200] [--masked] [--threads N]

Prunes a (randomly initialised: speed does not depend on the weights) model with every
structured and low-rank method, each with a uniform shape projected onto the MACs budget, then
times each pruned model against the baseline in interleaved pairs of forward passes of the same
batch on this machine's device (prune_ray.measure.time_paired: CUDA events on a GPU, wall clock on
a CPU, after warm-up; at least --min-passes pairs and --min-time-ms per model). It prints a
Markdown table with each speedup's median and 95% interval (2.5th-97.5th percentiles of the
per-pair ratios), plus the figures as JSON. `--masked` adds `magnitude` at the same kept fraction
of parameters as a control: masks keep the dense compute, so its interval should contain 1.0.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time

import torch

from prune_ray.measure import TimingOptions, count_macs, count_params, time_paired
from prune_ray.models import create_model
from prune_ray.plan import Subject, plan_removal
from prune_ray.points import Proposal
from prune_ray.prune import Calibration, get_method, list_methods
from prune_ray.prune.unstructured import make_masks_permanent


def pruned_copy(model: torch.nn.Module, name: str, keep: float, example: torch.Tensor, round_to: int = 1) -> torch.nn.Module:
    """`model` pruned by method `name` to a uniform shape keeping `keep` of its default resource
    (with round_to, every layer keeping a multiple of that many channels)."""
    method = get_method(name)
    metric = method.default_metric
    base = float(count_macs(model, example)) if metric == "macs" else float(count_params(model)[1])
    subject = Subject(model, method, method.layers(model, example), example, metric, base, round_to)
    removed = plan_removal("uniform", subject, keep, Proposal())
    calibration = Calibration(torch.randn(32, *example.shape[1:]), torch.randint(0, 10, (32,)))
    return make_masks_permanent(method.prune(copy.deepcopy(model), removed, calibration)).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--keep", type=float, default=0.5, help="fraction of MACs kept")
    parser.add_argument("--batch", type=int, default=64, help="examples per timed forward pass")
    parser.add_argument("--min-passes", type=int, default=20, help="timed passes of each model, at least")
    parser.add_argument("--min-time-ms", type=float, default=200.0, help="and until each model's passes add up to this")
    parser.add_argument("--methods", nargs="+", help="default: every structured and low-rank method")
    parser.add_argument("--masked", action="store_true", help="add magnitude (masks) as a control")
    parser.add_argument("--threads", type=int, help="CPU threads of torch (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    options = TimingOptions(min_passes=args.min_passes, min_time_ms=args.min_time_ms)
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10, in_channels=3, image_size=32).eval()
    example = torch.randn(1, 3, 32, 32)
    batch = torch.randn(args.batch, 3, 32, 32, device=device)
    base_macs = count_macs(model, example)
    rows = []
    names = args.methods or [n for n in list_methods() if get_method(n).granularity != "unstructured"]
    for name in names + (["magnitude"] if args.masked else []):
        began = time.perf_counter()
        pruned = pruned_copy(model, name, args.keep, example)
        macs = count_macs(pruned, example)
        speed = time_paired(model.to(device), pruned.to(device), batch, options)
        model = model.cpu()
        print(f"  {name}: pruned and timed in {time.perf_counter() - began:.1f} s ({speed.pruned.passes} pairs)",
              file=sys.stderr, flush=True)
        rows.append({"method": name, "macs_keep": macs / base_macs, "params": count_params(pruned)[1],
                     "baseline_ms": speed.baseline.median_ms, "latency_ms": speed.pruned.median_ms,
                     "latency_iqr_ms": speed.pruned.iqr_ms, "pairs": speed.pruned.passes,
                     "speedup_theoretical": base_macs / macs, "speedup_measured": speed.median,
                     "speedup_low": speed.low, "speedup_high": speed.high})
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({platform.processor() or 'x86_64'}, {torch.get_num_threads()} threads)"
    print(f"{args.model}, batch {args.batch}, {device_name}; baseline {base_macs / 1e6:.1f}M MACs\n")
    print("| method | MACs kept | theoretical speedup | measured speedup [95% interval] | latency (ms, median ± IQR/2) | baseline (ms) | pairs |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['method']} | {row['macs_keep']:.3f} | {row['speedup_theoretical']:.2f}x | "
              f"{row['speedup_measured']:.2f}x [{row['speedup_low']:.2f}, {row['speedup_high']:.2f}] | "
              f"{row['latency_ms']:.2f} ± {row['latency_iqr_ms'] / 2:.2f} | {row['baseline_ms']:.2f} | {row['pairs']} |")
    print("\n" + json.dumps({"model": args.model, "device": device_name, "batch": args.batch, "rows": rows}))


if __name__ == "__main__":
    main()
