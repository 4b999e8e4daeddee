"""One command for a lent GPU: training speed, GPU sharing, trials and the gpu-marked tests.

    python benchmarks/gpu_check.py --out DIR [--tiny]

Runs without network, Ray, Optuna or an installed prune-ray (the tree is on sys.path; torch-pruning
and pytest come from wheels carried beside it, docs/gpu.md), and writes DIR/gpu_check.json and
DIR/gpu_check.md:

(a) ResNet-56 on CIFAR-shaped synthetic data, one epoch of 45,000 images after a warm-up epoch:
    prune-ray's step eager and compiled (prune_ray.train.train) vs a plain PyTorch loop (fp32,
    NCHW, eager) vs an airbench-style loop (bf16 autocast, channels_last, torch.compile, batch 512);
(b) 1, 2 and 4 processes training at once on the one GPU (prune-ray's eager step, the epoch's
    images split between them): combined images/s;
(c) 4 trials of a small spec (resnet20 on synthetic CIFAR-10 files, resources.gpu 0.25, the step
    compiled) through the Ray-free `run_trial` as parallel processes: l1_filter, magnitude, tucker
    and magnitude + kmeans; their rows read back from Parquet;
(d) the gpu-marked tests (pytest -m gpu);
plus torch, CUDA and cuDNN versions and the device. Every section records its error instead of
stopping the others. `--tiny` (a test runs it on the CPU): a LeNet-5, a few hundred images, 1 and 2
processes, a sweep of 2 trials (eager), the aot_eager backend and the GPU's settings forced on the CPU.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from fixtures import make_cifar10  # noqa: E402  (synthetic CIFAR-10 files: tests/fixtures.py)

from prune_ray import train as training  # noqa: E402
from prune_ray.data import Dataset  # noqa: E402
from prune_ray.models import create_model  # noqa: E402
from prune_ray.train import GPU_SETTINGS_ON_CPU, TrainRecipe, train  # noqa: E402

FORBIDDEN = ("ray", "optuna")  # absent on a lent GPU machine: nothing here may import them


@dataclass(frozen=True)
class Size:
    model: str  # section (a) and (b)'s network
    images: int  # training images of the timed epoch
    batch: int  # prune-ray's and the plain loop's batch
    airbench_batch: int
    processes: tuple[int, ...]  # section (b)
    trial_model: str  # section (c)
    cifar_per_batch: int  # section (c): images per synthetic CIFAR-10 training batch file (5 files)
    trials: tuple[tuple[str, float, str], ...]  # (method, budget, quantizer)
    backend: str  # torch.compile backend
    trial_compile: str  # section (c): finetune.compile


FOUR = (("l1_filter", 0.5, "none"), ("magnitude", 0.3, "none"), ("tucker", 0.6, "none"), ("magnitude", 0.5, "kmeans"))
FULL = Size("resnet56", 45_000, 128, 512, (1, 2, 4), "resnet20", 2_000, FOUR, "inductor", "on")
# tiny: the compiled trial step is covered by tests/test_gpu_settings_on_cpu.py; here the plumbing
TINY = Size("lenet5", 256, 64, 128, (2,), "lenet5", 40, FOUR[:2], "aot_eager", "off")


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def forbidden_modules() -> list[str]:
    return sorted({name.split(".")[0] for name in sys.modules} & set(FORBIDDEN))


def synthetic(images: int, where: torch.device, seed: int = 0) -> Dataset:
    """CIFAR-shaped random data on the device (2 validation images: train() reports training)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(images + 2, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (len(x),), generator=generator)
    n = images
    return Dataset("cifar_synthetic", x[:n], y[:n], x[n:], y[n:], x[n:], y[n:], num_classes=10, augment=True).to(where)


def model_of(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=10, in_channels=3, image_size=32).to(device())


# ---------------------------------------------------------------------------------------------
# (a) one epoch, four loops


def prune_ray_step(size: Size, compiled: bool) -> float:
    """Seconds of prune-ray's second epoch (the first pays for compilation and kernel choice)."""
    data = synthetic(size.images, device())
    recipe = TrainRecipe(epochs=2, batch_size=size.batch, lr=0.05, compile="on" if compiled else "off")
    synchronize()
    return train(model_of(size.model), data, recipe, seed=0)[-1].seconds


def _two_epochs(step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], data: Dataset, batch: int) -> float:
    """Seconds of the second of two epochs of `step` over shuffled, flipped batches of data."""
    seconds = 0.0
    for _ in range(2):
        synchronize()
        began = time.perf_counter()
        order = torch.randperm(len(data.train_x), device=data.train_x.device)
        total = torch.zeros((), device=data.train_x.device)
        for start in range(0, len(order) - batch + 1, batch):  # full batches: one shape
            index = order[start : start + batch]
            x = data.train_x[index]
            x = torch.where(torch.rand(len(x), 1, 1, 1, device=x.device) < 0.5, x.flip(-1), x)
            total += step(x, data.train_y[index]).detach()
        float(total)
        seconds = time.perf_counter() - began
    return seconds


def plain_loop(size: Size) -> float:
    """A plain PyTorch loop: fp32, NCHW, eager, SGD with Nesterov momentum."""
    model = model_of(size.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return _two_epochs(step, synthetic(size.images, device()), size.batch)


def airbench_loop(size: Size) -> float:
    """An airbench-style loop: bf16 autocast, channels_last, the model compiled, batch 512."""
    model = model_of(size.model).to(memory_format=torch.channels_last)
    compiled = torch.compile(model, backend=size.backend)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    kind = device().type

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(kind, dtype=torch.bfloat16):
            loss = F.cross_entropy(compiled(x.contiguous(memory_format=torch.channels_last)), y, label_smoothing=0.2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return _two_epochs(step, synthetic(size.images, device()), size.airbench_batch)


def loops(size: Size) -> list[dict]:
    runs = [("prune-ray step, eager", lambda: prune_ray_step(size, False)),
            ("prune-ray step, compiled", lambda: prune_ray_step(size, True)),
            ("plain PyTorch (fp32, NCHW, eager)", lambda: plain_loop(size)),
            (f"airbench-style (bf16, channels_last, compiled, batch {size.airbench_batch})", lambda: airbench_loop(size))]
    rows = []
    for name, run in runs:
        try:
            seconds = run()
            rows.append({"loop": name, "s_per_epoch": seconds, "images_per_s": size.images / seconds})
        except Exception:  # noqa: BLE001  (a GPU bug is a finding, not the end of the check)
            rows.append({"loop": name, "error": traceback.format_exc(limit=8)})
    return rows


# ---------------------------------------------------------------------------------------------
# (b) processes sharing the GPU


def _sharing_worker(size: Size, images: int, barrier, results) -> None:
    data = synthetic(images, device())
    recipe = TrainRecipe(epochs=2, batch_size=size.batch, lr=0.05, compile="off")
    history = train(model_of(size.model), data, recipe, seed=0, before_epoch=lambda epoch: barrier.wait() if epoch == 2 else None)
    results.put((images / history[-1].seconds, forbidden_modules()))


def sharing(size: Size, processes: int) -> dict:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    images = size.images // processes
    workers = [context.Process(target=_sharing_worker, args=(size, images, barrier, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    rates = [rate for rate, _ in outcomes]
    return {"processes": processes, "images_each": images, "each_images_per_s": rates, "total_images_per_s": sum(rates),
            "forbidden_modules": sorted({name for _, names in outcomes for name in names})}


# ---------------------------------------------------------------------------------------------
# (c) trials through run_trial, as parallel processes


def trial_spec(size: Size, root: str):
    from prune_ray.data import DataOptions
    from prune_ray.spec import ArtifactOptions, BaselineOptions, Resources, SweepSpec

    return SweepSpec(name="gpu_check", model=size.trial_model, dataset="cifar10", data=DataOptions(root=os.path.join(root, "cifar")),
                     methods=tuple(dict.fromkeys(method for method, _, _ in size.trials)),
                     baseline=BaselineOptions(train=TrainRecipe(epochs=1)), finetune=TrainRecipe(epochs=1, lr=0.01, compile=size.trial_compile),
                     artifacts=ArtifactOptions(save="none"), resources=Resources(cpu=1.0, gpu=0.25),
                     storage=os.path.join(root, "results"))


def _trial_worker(size: Size, root: str, case: tuple[str, float, str], results) -> None:
    from prune_ray.points import OperatingPoint, Proposal, TrialConfig
    from prune_ray.trial import TrialContext, run_trial

    training.COMPILE_BACKEND = size.backend
    method, budget, quantizer = case
    config = TrialConfig(OperatingPoint(budget, method, 0, quantizer=quantizer), Proposal({}))
    run_trial(config, TrialContext(trial_spec(size, root), "gpu_check", {}, None), f"{method}-{quantizer}")
    results.put(forbidden_modules())


def trials(size: Size, root: str) -> dict:
    from prune_ray.results import read_results
    from prune_ray.trial_setup import obtain_baseline, trial_data

    make_cifar10(os.path.join(root, "cifar"), per_batch=size.cifar_per_batch, test=size.cifar_per_batch)
    spec = trial_spec(size, root)
    obtain_baseline(spec, trial_data(spec), 0)  # trained once into the store; the trials load it
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_trial_worker, args=(size, root, case, results)) for case in size.trials]
    for worker in workers:
        worker.start()
    forbidden = sorted({name for _ in workers for name in results.get(timeout=600)})
    for worker in workers:
        worker.join()
    frame = read_results(spec.storage, "gpu_check")
    columns = [c for c in ("trial_id", "method", "quantizer", "status", "error", "device", "top1", "macs_keep",
                           "params_keep", "latency_ms", "speedup_measured", "latency_method", "time_finetune_s")
               if c in frame.columns]
    rows = json.loads(frame[columns].to_json(orient="records"))
    return {"rows": rows, "forbidden_modules": forbidden}


# ---------------------------------------------------------------------------------------------
# (d) the gpu-marked tests, and versions


def gpu_tests() -> dict:
    tests = os.path.join(ROOT, "tests")
    files = sorted(os.path.join(tests, name) for name in os.listdir(tests)
                   if name.startswith("test_") and "mark.gpu" in open(os.path.join(tests, name)).read())
    if importlib.util.find_spec("pytest") is None:
        return {"files": files, "error": "pytest is not installed (docs/gpu.md: carry its wheel)"}
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-o", "addopts=", "-p", "no:cacheprovider", *files]
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))  # this tree's prune_ray, installed or not
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": path})
    return {"files": [os.path.relpath(f, ROOT) for f in files], "returncode": done.returncode,
            "summary": (done.stdout.strip().splitlines() or [""])[-1], "tail": done.stdout[-3000:] + done.stderr[-2000:]}


def versions() -> dict:
    cuda = torch.cuda.is_available()
    return {"device": torch.cuda.get_device_name() if cuda else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)",
            "capability": ".".join(map(str, torch.cuda.get_device_capability())) if cuda else None,
            "memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
            "python": platform.python_version(),
            "packages": {name: importlib.util.find_spec(name) is not None
                         for name in ("torch_pruning", "optuna", "ray", "pytest", "yaml", "pandas", "pyarrow", "safetensors")},
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def markdown(report: dict) -> str:
    v, size = report["versions"], report["size"]
    lines = [f"# gpu_check{' --tiny' if report['tiny'] else ''}: {v['device']}", "",
             f"{v['date']}; torch {v['torch']}, CUDA {v['cuda']}, cuDNN {v['cudnn']}; {report['seconds']:.0f} s in all "
             f"({', '.join(f'{k} {t:.0f} s' for k, t in report['section_seconds'].items())})", "",
             f"## (a) {size['model']}, one epoch of {size['images']} images after a warm-up epoch", "",
             "| loop | s/epoch | images/s |", "|---|---|---|"]
    for row in report["loops"]:
        lines.append(f"| {row['loop']} | {row['s_per_epoch']:.2f} | {row['images_per_s']:.0f} |" if "error" not in row
                     else f"| {row['loop']} | error: {row['error'].strip().splitlines()[-1]} | |")
    lines += ["", "## (b) processes sharing the device (prune-ray's eager step)", "",
              "| processes | images/s each | total images/s |", "|---|---|---|"]
    for row in report["sharing"]:
        lines.append(f"| {row['processes']} | {', '.join(f'{r:.0f}' for r in row['each_images_per_s'])} | {row['total_images_per_s']:.0f} |"
                     if "error" not in row else f"| {row['processes']} | error: {row['error'].strip().splitlines()[-1]} | |")
    trial_rows = report["trials"].get("rows", [])
    lines += ["", "## (c) trials through run_trial, in parallel processes", "",
              "| trial | status | top1 | latency ms | speed-up | timed by | fine-tune s |", "|---|---|---|---|---|---|---|"]
    for row in trial_rows:
        status = row["status"] if row["status"] == "ok" else f"{row['status']}: {(row.get('error') or '').splitlines()[0]}"
        lines.append(f"| {row['trial_id']} | {status} | {row.get('top1')} | {row.get('latency_ms')} | {row.get('speedup_measured')} | "
                     f"{row.get('latency_method', '')} | {row.get('time_finetune_s')} |")
    if "error" in report["trials"]:
        lines.append(f"\nerror: {report['trials']['error'].strip().splitlines()[-1]}")
    tests = report["gpu_tests"]
    lines += ["", "## (d) gpu-marked tests", "", f"{tests.get('summary') or tests.get('error')}", "",
              f"Ray or Optuna imported anywhere: {report['forbidden_modules'] or 'no'}"]
    return "\n".join(lines) + "\n"


def guarded(run: Callable[[], dict]) -> dict:
    try:
        return run()
    except Exception:  # noqa: BLE001  (a GPU bug is a finding, not the end of the check)
        return {"error": traceback.format_exc(limit=8)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory for gpu_check.json and gpu_check.md")
    parser.add_argument("--tiny", action="store_true", help="a few hundred images and 2 trials (a CPU test)")
    args = parser.parse_args(argv)
    size = TINY if args.tiny else FULL
    if args.tiny:  # the GPU's settings (bf16 autocast, channels_last) on the CPU as well, inherited by children
        os.environ[GPU_SETTINGS_ON_CPU] = "1"
    training.COMPILE_BACKEND = size.backend
    os.makedirs(args.out, exist_ok=True)
    began, sections = time.perf_counter(), {}

    def timed(name: str, run: Callable[[], object]) -> object:
        start = time.perf_counter()
        result = run()
        sections[name] = time.perf_counter() - start
        return result

    report = {"tiny": args.tiny, "size": asdict(size), "versions": versions(), "section_seconds": sections}
    report["loops"] = timed("a", lambda: loops(size))
    report["sharing"] = timed("b", lambda: [guarded(lambda p=p: sharing(size, p)) | {"processes": p} for p in size.processes])
    report["trials"] = timed("c", lambda: guarded(lambda: trials(size, os.path.join(args.out, "trials"))))
    report["gpu_tests"] = timed("d", lambda: guarded(gpu_tests))
    children = [name for row in report["sharing"] for name in row.get("forbidden_modules", [])]
    report["forbidden_modules"] = sorted(set(forbidden_modules() + children + report["trials"].get("forbidden_modules", [])))
    report["seconds"] = time.perf_counter() - began
    with open(os.path.join(args.out, "gpu_check.json"), "w") as handle:
        json.dump(report, handle, indent=1)
    with open(os.path.join(args.out, "gpu_check.md"), "w") as handle:
        handle.write(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
