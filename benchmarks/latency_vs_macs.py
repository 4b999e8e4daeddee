"""Measured latency speedup against MACs reduction of the structured (and low-rank) methods.

    python benchmarks/latency_vs_macs.py [--model resnet56] [--keep 0.5] [--batch 64] [--repeats 30]

Prunes a (randomly initialised: speed does not depend on the weights) model with every
structured and low-rank method, each with a uniform shape projected onto the MACs budget, then
times forward passes of the same batch on this machine's device (CUDA events on a GPU, wall clock
on a CPU; median of --repeats after warm-up) and prints a Markdown table plus the figures as JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time

import torch

from prune_ray.measure import count_macs, count_params, measure_latency_ms
from prune_ray.models import create_model
from prune_ray.prune import Calibration, get_method, list_methods
from prune_ray.plan import Subject, plan_removal
from prune_ray.points import Proposal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--keep", type=float, default=0.5, help="fraction of MACs kept")
    parser.add_argument("--batch", type=int, default=64, help="examples per timed forward pass")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--methods", nargs="+", help="default: every structured and low-rank method")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10, in_channels=3, image_size=32).eval()
    example = torch.randn(1, 3, 32, 32)
    batch = torch.randn(args.batch, 3, 32, 32, device=device)
    base_macs = count_macs(model, example)
    base_ms = measure_latency_ms(model.to(device), batch, repeats=args.repeats)
    model = model.cpu()
    rows = []
    names = args.methods or [n for n in list_methods() if get_method(n).granularity != "unstructured"]
    for name in names:
        method = get_method(name)
        began = time.perf_counter()
        subject = Subject(model, method, method.layers(model, example), example, "macs", base_macs)
        removed = plan_removal("uniform", subject, args.keep, Proposal())
        pruned = method.prune(copy.deepcopy(model), removed, Calibration(torch.randn(32, 3, 32, 32),
                                                                              torch.randint(0, 10, (32,)))).eval()
        macs = count_macs(pruned, example)
        ms = measure_latency_ms(pruned.to(device), batch, repeats=args.repeats)
        print(f"  {name}: pruned and timed in {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
        rows.append({"method": name, "macs_keep": macs / base_macs, "params": count_params(pruned)[0],
                     "latency_ms": ms, "speedup_theoretical": base_macs / macs, "speedup_measured": base_ms / ms})
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({platform.processor() or 'x86_64'}, {torch.get_num_threads()} threads)"
    print(f"{args.model}, batch {args.batch}, {device_name}; baseline {base_macs / 1e6:.1f}M MACs, {base_ms:.2f} ms\n")
    print("| method | MACs kept | theoretical speedup | measured speedup | latency (ms) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['method']} | {row['macs_keep']:.3f} | {row['speedup_theoretical']:.2f}x | "
              f"{row['speedup_measured']:.2f}x | {row['latency_ms']:.2f} |")
    print("\n" + json.dumps({"model": args.model, "device": device_name, "baseline_ms": base_ms, "rows": rows}))


if __name__ == "__main__":
    main()
