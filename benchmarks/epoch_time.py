"""Training and evaluation speed of the CIFAR recipes' models: images/s and seconds per epoch.

    python benchmarks/epoch_time.py [--models resnet20 resnet56 vgg16_bn] [--images 50000]
                                    [--eval-images N] [--batch-size 128] [--epochs 2] [--steps eager compiled]
                                    [--round-to 8] [--shared auto|on|off] [--threads N] [--json OUT]

For each model (randomly initialised: speed does not depend on the weights) on CIFAR-shaped
synthetic data (3x32x32, 10 classes, --images training images, --eval-images evaluation images,
default a fifth of them as CIFAR-10's 10,000 test images are of its 50,000): the baseline, the
model pruned by l1_filter to a uniform shape at 0.5 of its MACs, and the same with `--round-to`
(every layer keeping a multiple of that many channels). Training runs the project's own loop
(`prune_ray.train.train`: SGD, the CIFAR recipes' augmentation, and on a GPU bf16 autocast and
channels_last) for --epochs epochs and reports the last (the first pays for kernel selection and,
compiled, for torch.compile), once per --steps entry: `eager`, and `compiled` (TrainRecipe.compile
on: the step through torch.compile), side by side; evaluation is `prune_ray.train.evaluate` (bf16 autocast on a
GPU), the median of 3 passes after one untimed. Every time is the wall clock between
`torch.cuda.synchronize()` calls on a GPU (each epoch ends on a host read of the loss, so all of
its kernels are done), so it is what a trial waits for, host overhead included.

`--shared` also runs two training processes on the one GPU at once (what two trials with
`resources: {gpu: 0.5}` do) and reports their combined images/s against one process alone; `auto`
does so only on a GPU. On a CPU two processes just split the cores, so `auto` skips it there and
says so.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from latency_vs_macs import pruned_copy  # noqa: E402  (the benchmark beside this one)

from prune_ray.data import Dataset  # noqa: E402
from prune_ray.measure import count_macs  # noqa: E402
from prune_ray.models import create_model  # noqa: E402
from prune_ray.prune import get_method  # noqa: E402
from prune_ray.train import TrainRecipe, evaluate, train  # noqa: E402

MODELS = ("resnet20", "resnet56", "vgg16_bn")
KEEP = 0.5  # fraction of the baseline's MACs the pruned variants keep
EVAL_REPEATS = 3


@dataclass(frozen=True)
class Setup:
    images: int  # training images per epoch
    eval_images: int  # evaluation images
    batch_size: int  # training examples per optimiser step
    epochs: int  # training epochs run; the last is reported
    steps: tuple[str, ...]  # training steps timed: eager, compiled (TrainRecipe.compile off / on)


@dataclass(frozen=True)
class Figures:
    model: str
    variant: str  # baseline, pruned, pruned+round_to
    step: str  # eager or compiled
    round_to: int  # channel rounding of the pruned variant (1: none)
    macs_keep: float  # MACs / baseline MACs
    channels: list[int]  # output channels of each prunable channel group
    train_images_per_s: float
    train_s_per_epoch: float  # of setup.images training images
    eval_images_per_s: float
    eval_s: float  # of setup.eval_images evaluation images


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synthetic(setup: Setup, where: torch.device, seed: int = 0) -> Dataset:
    """CIFAR-shaped random data on the device; a tiny validation split, so that the epochs train()
    reports are training alone (evaluation is timed by itself)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(setup.images + 2 + setup.eval_images, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (len(x),), generator=generator)
    n, v = setup.images, setup.images + 2
    return Dataset("cifar_synthetic", x[:n], y[:n], x[n:v], y[n:v], x[v:], y[v:], num_classes=10, augment=True).to(where)


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train_seconds(model: torch.nn.Module, data: Dataset, setup: Setup, before_epoch=None, step: str = "eager") -> float:
    """Seconds of the last of setup.epochs training epochs of the project's loop."""
    synchronize()
    recipe = TrainRecipe(epochs=setup.epochs, batch_size=setup.batch_size, lr=0.01,
                         compile="on" if step == "compiled" else "off")
    history = train(model, data, recipe, seed=0, before_epoch=before_epoch)
    synchronize()
    return history[-1].seconds


def eval_seconds(model: torch.nn.Module, data: Dataset) -> float:
    evaluate(model, data.test_x, data.test_y)  # untimed: kernel selection, allocations
    times = []
    for _ in range(EVAL_REPEATS):
        synchronize()
        began = time.perf_counter()
        evaluate(model, data.test_x, data.test_y)  # ends on a host read of the counts
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def variants(name: str, round_to: int) -> list[tuple[str, int, torch.nn.Module]]:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=3, image_size=32)
    example = torch.randn(1, 3, 32, 32)
    return [("baseline", 1, model), ("pruned", 1, pruned_copy(model, "l1_filter", KEEP, example)),
            ("pruned+round_to", round_to, pruned_copy(model, "l1_filter", KEEP, example, round_to=round_to))]


def measure_variant(name: str, variant: str, round_to: int, model: torch.nn.Module, base_macs: int,
                    data: Dataset, setup: Setup, step: str) -> Figures:
    example = torch.randn(1, 3, 32, 32)
    macs = count_macs(model, example)
    channels = [layer.units for layer in get_method("l1_filter").layers(model, example)]
    model = copy.deepcopy(model).to(data.train_x.device)  # each step trains the same starting weights
    train_s = train_seconds(model, data, setup, step=step)
    eval_s = eval_seconds(model, data)
    return Figures(name, variant, step, round_to, macs / base_macs, channels, setup.images / train_s, train_s,
                   setup.eval_images / eval_s, eval_s)


def _shared_worker(name: str, setup: Setup, barrier, results) -> None:
    """One of the processes sharing the GPU: its baseline's last training epoch, started together."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=3, image_size=32).to(device())
    data = synthetic(setup, device())
    seconds = train_seconds(model, data, setup, before_epoch=lambda epoch: barrier.wait() if epoch == setup.epochs else None,
                            step=setup.steps[0])
    results.put(setup.images / seconds)


def shared(name: str, setup: Setup, processes: int = 2) -> list[float]:
    """images/s of each of `processes` processes training `name` at once (spawned: CUDA needs it)."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_shared_worker, args=(name, setup, barrier, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    rates = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    return rates


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def markdown(rows: list[Figures], sharing: list[dict], setup: Setup, note: str) -> str:
    lines = [f"{device_name()}; {setup.images} training and {setup.eval_images} evaluation images, batch "
             f"{setup.batch_size}, last of {setup.epochs} epochs", "",
             "| model | variant | step | MACs kept | train images/s | train s/epoch | eval images/s | eval s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        variant = f"{r.variant} {r.round_to}" if r.round_to > 1 else r.variant
        lines.append(f"| {r.model} | {variant} | {r.step} | {r.macs_keep:.3f} | {r.train_images_per_s:.0f} | "
                     f"{r.train_s_per_epoch:.2f} | {r.eval_images_per_s:.0f} | {r.eval_s:.3f} |")
    for eager in (r for r in rows if r.step == "eager"):
        compiled = next((r for r in rows if r.step == "compiled" and (r.model, r.variant) == (eager.model, eager.variant)), None)
        if compiled is not None:
            lines.append(f"\n{eager.model} {eager.variant}: compiled step / eager step time = "
                         f"{compiled.train_s_per_epoch / eager.train_s_per_epoch:.2f}")
    if sharing:
        lines += ["", "| model | one process alone (images/s) | two sharing the GPU, each | combined | combined / alone |",
                  "|---|---|---|---|---|"]
        for s in sharing:
            each = ", ".join(f"{rate:.0f}" for rate in s["each"])
            lines.append(f"| {s['model']} | {s['alone']:.0f} | {each} | {sum(s['each']):.0f} | {sum(s['each']) / s['alone']:.2f}x |")
    return "\n".join(lines + ([f"\n{note}"] if note else []))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--images", type=int, default=50_000, help="training images per epoch")
    parser.add_argument("--eval-images", type=int, help="evaluation images (default: a fifth of --images)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2, help="training epochs; the last is reported")
    parser.add_argument("--steps", nargs="+", default=["eager"], choices=("eager", "compiled"),
                        help="training steps to time side by side (compiled: TrainRecipe.compile on)")
    parser.add_argument("--variants", nargs="+", default=["baseline", "pruned", "pruned+round_to"],
                        choices=("baseline", "pruned", "pruned+round_to"))
    parser.add_argument("--round-to", type=int, default=8, help="channel multiple of the rounded pruned variant")
    parser.add_argument("--shared", choices=("auto", "on", "off"), default="auto",
                        help="two training processes on one GPU at once (auto: only on a GPU)")
    parser.add_argument("--threads", type=int, help="CPU threads of torch (default: torch's own choice)")
    parser.add_argument("--json", help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    setup = Setup(args.images, args.eval_images or max(1, args.images // 5), args.batch_size, args.epochs, tuple(args.steps))
    where = device()
    data = synthetic(setup, where)
    rows, sharing = [], []
    for name in args.models:
        models = variants(name, args.round_to)
        base_macs = count_macs(models[0][2], torch.randn(1, 3, 32, 32))
        for variant, round_to, model in models:
            if variant not in args.variants:
                continue
            for step in setup.steps:
                began = time.perf_counter()
                rows.append(measure_variant(name, variant, round_to, model, base_macs, data, setup, step))
                print(f"  {name} {variant} {step}: {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
        run_shared = args.shared == "on" or (args.shared == "auto" and where.type == "cuda")
        if run_shared:
            alone = next(r for r in rows if r.model == name and r.variant == "baseline").train_images_per_s
            sharing.append({"model": name, "alone": alone, "each": shared(name, setup)})
    note = "" if sharing or args.shared == "off" else (
        "Two processes sharing one GPU: not run, no GPU here (on a CPU two processes only split the cores; --shared on runs it anyway).")
    print(markdown(rows, sharing, setup, note))
    figures = {"device": device_name(), "setup": asdict(setup), "rows": [asdict(r) for r in rows], "shared": sharing,
               "note": note}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=1)


if __name__ == "__main__":
    main()
