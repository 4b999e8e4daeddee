"""One trial: baseline -> schedule -> prune -> evaluate -> fine-tune -> measure -> Parquet row.

`run_trial` is plain Python (callable without Ray, as the tests do); `tune_trial` adapts it to
Ray Tune, reporting each fine-tuning epoch so schedulers and searchers see progress.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import hashlib
import json
import os
import socket
import subprocess
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch

from . import __version__
from .baseline import Baseline, BaselineConfig, BaselineStore, build_model, load_checkpoint_file
from .data import Dataset, load_dataset
from .iterative import prune_and_finetune
from .measure import Measurement, measure
from .prune import Calibration, get_method
from .prune.unstructured import magnitude_thresholds, make_masks_permanent, weight_layers
from .netadapt import Candidate, CandidateOutcome, ShortTune, local_short_tune, netadapt, short_tune_candidate
from .results import write_epochs, write_steps, write_trial
from .schedule import KEEP_KEY, SEARCHED, plan_removal
from .spec import SweepSpec, resolved_metric
from .storage import open_storage
from .train import TrainRecipe, evaluate, train

Reporter = Callable[[dict[str, Any]], None]
CALIBRATION_EXAMPLES = 256  # labelled training examples shown to gradient-based importance (taylor)


@dataclass(frozen=True)
class TrialContext:
    spec: SweepSpec
    sweep: str  # directory name of the sweep under the storage root
    baseline_seconds: dict[int, float]  # per seed: spent training the baseline in this sweep (0: loaded)
    git_sha: str | None


def baseline_config(spec: SweepSpec, seed: int) -> BaselineConfig:
    return BaselineConfig(spec.model, spec.dataset, spec.data, spec.baseline.train, seed)


def obtain_baseline(spec: SweepSpec, data: Dataset, seed: int) -> Baseline:
    """The spec's checkpoint file if it names one, else the store's baseline (trained if absent)."""
    config = baseline_config(spec, seed)
    if spec.baseline.checkpoint:
        model = load_checkpoint_file(build_model(config, data), spec.baseline.checkpoint).to(data.train_x.device)
        top1, top5 = evaluate(model, data.val_x, data.val_y)
        test_top1, _ = evaluate(model, data.test_x, data.test_y)
        return Baseline(model, f"file:{spec.baseline.checkpoint}", top1, top5, test_top1, 0.0, trained_now=False)
    store = BaselineStore(open_storage(spec.storage))
    return store.get_or_train(config, data, retrain_corrupt=spec.baseline.retrain_corrupt)


def trial_device(spec: SweepSpec) -> torch.device:
    return torch.device("cuda") if spec.resources.gpu > 0 and torch.cuda.is_available() else torch.device("cpu")


@functools.lru_cache(maxsize=2)
def _dataset_on(name: str, options, device: str) -> Dataset:
    return load_dataset(name, options).to(device)


def trial_data(spec: SweepSpec) -> Dataset:
    """The spec's dataset on the trial's device, read once per process: Ray reuses its workers for
    trials and netadapt's candidate tasks, and nothing writes into these tensors."""
    return _dataset_on(spec.dataset, spec.data, str(trial_device(spec)))


def calibration_of(data: Dataset) -> Calibration:
    return Calibration(data.train_x[:CALIBRATION_EXAMPLES], data.train_y[:CALIBRATION_EXAMPLES])


def _node() -> str:
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except ImportError:
        pass
    return socket.gethostname()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def config_hash(spec: SweepSpec, config: dict[str, Any]) -> str:
    identity = dataclasses.asdict(spec)
    for incidental in ("name", "storage", "search", "resources", "max_failures"):
        identity.pop(incidental)  # where and how fast a trial runs does not change its result
    identity["netadapt"].pop("parallel")  # candidates at once: fitted to the machine, same result
    identity["screen_epochs"] = spec.search.screen_epochs  # a screen row's result depends on it
    blob = json.dumps({"spec": identity, "trial": config}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _derived(base: Measurement, pruned: Measurement) -> dict[str, float | None]:
    return {
        "params_keep": pruned.params_nonzero / base.params,
        "macs_keep": pruned.macs / base.macs,
        "compression_ratio": base.params / max(pruned.params_nonzero, 1),
        "speedup_theoretical": base.macs / max(pruned.macs, 1),
        "speedup_measured": base.latency_ms / pruned.latency_ms if pruned.latency_ms else None,
    }


def layer_ratios(model: torch.nn.Module, method, removed: dict[str, int], layers) -> tuple[list[str], list[float]]:
    """Per-layer fraction removed: measured zeros for masks (global thresholds spread unevenly),
    the plan's exact counts for channels and ranks."""
    if method.granularity == "unstructured":
        names = [layer.name for layer in weight_layers(model)]
        weights = [model.get_submodule(name).weight for name in names]
        return names, [1 - int(torch.count_nonzero(w)) / w.numel() for w in weights]
    return [layer.name for layer in layers], [removed[layer.name] / layer.units for layer in layers]


def run_trial(config: dict[str, Any], context: TrialContext, trial_id: str, report: Reporter) -> dict[str, Any]:
    """Run one trial and write its row (status 'ok' or 'failed'); returns the row."""
    spec, group = context.spec, dict(config["group"])
    shape = config.get("shape") or {}
    target_keep = group["budget"] if group["budget"] is not None else shape.get(KEEP_KEY)  # frontier: proposed
    stage = config.get("stage", "single")
    finetune = dataclasses.replace(spec.finetune, epochs=spec.search.screen_epochs) if stage == "screen" else spec.finetune
    method = get_method(group["method"])
    metric = resolved_metric(spec, method.name)
    row: dict[str, Any] = {
        "sweep": context.sweep,
        "trial_id": trial_id,
        "config_hash": config_hash(spec, config),
        "seed": group["seed"],
        "started_at": _now(),
        "model": spec.model,
        "dataset": spec.dataset,
        "method": method.name,
        "granularity": method.granularity,
        "schedule": spec.schedule,
        "sampler": spec.search.sampler if spec.schedule in SEARCHED else None,
        "budget_metric": metric,
        "budget": group["budget"],
        "ratio": group["ratio"] if isinstance(group.get("ratio"), float) else None,
        "iterative": spec.iterative,
        "prune_steps": group.get("prune_steps", 1),
        "stage": stage,
        "finetune_epochs": finetune.epochs * (group.get("prune_steps", 1) if spec.iterative == "cycles" else 1),
        "node": _node(),
        "torch_version": torch.__version__,
        "ray_version": _ray_version(),
        "prune_ray_version": __version__,
        "git_sha": context.git_sha,
    }
    storage = open_storage(spec.storage)
    epochs: list[dict[str, Any]] = []
    try:
        torch.manual_seed(group["seed"])  # random methods and fine-tuning are reproducible per seed
        device = trial_device(spec)
        row["device"] = str(device) if device.type == "cpu" else f"cuda:{torch.cuda.get_device_name(device)}"
        data = trial_data(spec)

        began = time.perf_counter()
        baseline = obtain_baseline(spec, data, group["seed"])
        model = baseline.model.to(device)
        row["time_baseline_s"] = context.baseline_seconds.get(group["seed"], 0.0) + (time.perf_counter() - began)
        example = data.example_inputs(1)
        timing_batch = data.val_x[: spec.measure.latency_batch_size]
        base = measure(model, timing_batch, latency_repeats=spec.measure.latency_repeats)
        row.update(
            baseline_top1=baseline.top1,
            baseline_top5=baseline.top5,
            baseline_test_top1=baseline.test_top1,
            baseline_params=base.params,
            baseline_macs=base.macs,
        )

        layers = method.layers(model, example)
        baseline_resource = base.params if metric == "params" else base.macs
        calibration = calibration_of(data)

        def on_pruned(top1: float, top5: float) -> None:
            row["top1_pruned"], row["top5_pruned"] = top1, top5
            # epoch 0 of the curve is top1_pruned: after the last pruning step so far (cycles and
            # agp prune more than once; agp calls this only after some epochs have run)
            pruned_point = {"epoch": 0, "top1": top1, "top5": top5}
            if epochs and epochs[0]["epoch"] == 0:
                epochs[0] = pruned_point
            else:
                epochs.insert(0, pruned_point)
            # the trial's row while it fine-tunes: what remains if early stopping ends it here
            write_trial(storage, {**row, "status": "running"})

        def on_epoch(stats) -> None:
            epochs.append(dataclasses.asdict(stats))
            write_epochs(storage, context.sweep, trial_id, epochs)  # a stopped trial keeps its curve
            report({"top1": stats.top1, "top5": stats.top5, "epoch": stats.epoch, "status": "running"})

        began = time.perf_counter()
        if spec.schedule == "netadapt":
            searched = run_netadapt(spec, method, model, data, calibration, metric, target_keep, group["seed"], context, trial_id)
            model, removed = searched.model, searched.removed
            row["time_prune_s"] = time.perf_counter() - began
            began = time.perf_counter()
            on_pruned(*evaluate(model, data.val_x, data.val_y))
            train(model, data, finetune, seed=group["seed"], on_epoch=on_epoch)  # NetAdapt's long fine-tune
        else:
            point = group["ratio"] if spec.schedule == "fixed" else target_keep
            removed = plan_removal(spec.schedule, model, method, layers, point, shape, example, metric, baseline_resource)
            row["time_prune_s"] = time.perf_counter() - began
            began = time.perf_counter()
            model = prune_and_finetune(
                model, method, removed, mode=spec.iterative, steps=row["prune_steps"], data=data,
                recipe=finetune, calibration=calibration, seed=group["seed"], on_epoch=on_epoch, on_pruned=on_pruned,
            ).model
        row["time_finetune_s"] = time.perf_counter() - began

        began = time.perf_counter()
        if method.records_thresholds:
            row["conv_threshold"], row["fc_threshold"] = magnitude_thresholds(model)
        make_masks_permanent(model)
        row["layer_names"], row["layer_ratios"] = layer_ratios(model, method, removed, layers)
        row["top1"], row["top5"] = evaluate(model, data.val_x, data.val_y)
        row["test_top1"], row["test_top5"] = evaluate(model, data.test_x, data.test_y)
        pruned = measure(model, timing_batch, latency_repeats=spec.measure.latency_repeats)
        row["time_eval_s"] = time.perf_counter() - began
        row.update(dataclasses.asdict(pruned), **_derived(base, pruned))
        row["status"] = "ok"
        if target_keep is not None:
            achieved = row[f"{metric}_keep"]  # params_keep counts nonzero parameters
            if achieved > target_keep * (1 + 1e-9):
                raise AssertionError(f"pruned model keeps {achieved:.4f} of {metric}, over budget {target_keep}")
    except Exception as error:  # a failed trial is a row, never a crashed sweep
        row["status"] = "failed"
        row["error"] = f"{type(error).__name__}: {error}"
        if not isinstance(error, (ValueError, RuntimeError)):
            row["error"] += "\n" + traceback.format_exc(limit=5)
    row["finished_at"] = _now()
    write_epochs(storage, context.sweep, trial_id, epochs)
    write_trial(storage, row)
    return row


def run_netadapt(spec: SweepSpec, method, model, data: Dataset, calibration: Calibration, metric: str,
                 budget: float, seed: int, context: TrialContext, trial_id: str):
    """NetAdapt's greedy steps; their trace goes to <sweep>/netadapt/<trial_id>.parquet."""
    recipe = dataclasses.replace(spec.finetune, epochs=spec.netadapt.short_epochs, warmup_epochs=0)
    task_pids: list[set[int]] = []  # per step: the Ray worker processes that ran its candidates
    remote = ray_short_tune(spec, method.name, recipe, seed, task_pids)
    local = local_short_tune(method, data, recipe, calibration, seed)
    tried: list[int] = []

    def short_tune(current: torch.nn.Module, candidates: list[Candidate]) -> list[CandidateOutcome]:
        tried.append(len(candidates))
        return (remote or local)(current, candidates)

    searched = netadapt(model, method, data.example_inputs(1), metric, budget, spec.netadapt.step_fraction, short_tune)
    steps = [
        {"step": step.index, "layer": step.layer, "removed": step.removed, "candidates": count,
         "task_processes": len(pids), "resource_keep": step.resource_keep, "top1": step.top1}
        for step, count, pids in zip(searched.steps, tried, task_pids if remote else [set()] * len(tried))
    ]
    write_steps(open_storage(spec.storage), context.sweep, trial_id, steps)
    return searched


def ray_short_tune(
    spec: SweepSpec, method_name: str, recipe: TrainRecipe, seed: int, task_pids: list[set[int]]
) -> ShortTune | None:
    """Candidates short-fine-tuned in parallel as Ray tasks in the trial's placement group (its
    extra bundles, so trials never wait on each other's tasks); None outside a Ray trial."""
    try:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    except ImportError:
        return None
    placement = ray.util.get_current_placement_group() if ray.is_initialized() else None
    if placement is None or len(placement.bundle_specs) < 2:
        return None

    @ray.remote(num_returns=3, num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu, max_retries=spec.max_failures)
    def tune_candidate(model: torch.nn.Module, candidate: Candidate) -> tuple[float, int, torch.nn.Module]:
        torch.set_num_threads(max(1, int(spec.resources.cpu)))
        data = trial_data(spec)
        top1, tuned = short_tune_candidate(model.to(trial_device(spec)), get_method(method_name), candidate, data, recipe,
                                           calibration_of(data), seed)
        return top1, os.getpid(), tuned.cpu()

    strategy = PlacementGroupSchedulingStrategy(placement, placement_group_capture_child_tasks=True)

    def short_tune(model: torch.nn.Module, candidates: list[Candidate]) -> list[CandidateOutcome]:
        device = next(model.parameters()).device
        shared = ray.put(copy.deepcopy(model).cpu())
        refs = [tune_candidate.options(scheduling_strategy=strategy).remote(shared, c) for c in candidates]
        top1s = ray.get([top1 for top1, _, _ in refs])
        task_pids.append(set(ray.get([pid for _, pid, _ in refs])))
        return [CandidateOutcome(top1, lambda ref=ref: ray.get(ref).to(device)) for top1, (_, _, ref) in zip(top1s, refs)]

    return short_tune


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def trial_resources(spec: SweepSpec):
    """What one trial holds: its cores and GPU share, and for netadapt as many more bundles as
    candidates it fine-tunes at once (its Ray tasks run there, so trials never starve each other)."""
    from ray import tune

    bundle = {"CPU": spec.resources.cpu, **({"GPU": spec.resources.gpu} if spec.resources.gpu else {})}
    extra = spec.netadapt.parallel if spec.schedule == "netadapt" else 0
    return tune.PlacementGroupFactory([bundle] * (1 + extra))


def _ray_version() -> str | None:
    try:
        import ray

        return ray.__version__
    except ImportError:
        return None


def tune_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Ray Tune entry point: runs the trial and reports the final row's key figures."""
    from ray import tune

    torch.set_num_threads(max(1, int(context.spec.resources.cpu)))
    trial_id = tune.get_context().get_trial_id()
    config = config.get("trial", config)  # second-stage trials come as a grid of whole configs
    row = run_trial(config, context, trial_id, report=tune.report)
    failed = row["status"] == "failed"
    tune.report(
        {
            "top1": 0.0 if failed else row["top1"],
            "top1_pruned": row.get("top1_pruned"),
            "params_keep": row.get("params_keep"),
            "macs_keep": row.get("macs_keep"),
            # the budgeted resource kept: a frontier search's second objective
            "resource_keep": row.get(f"{row['budget_metric']}_keep"),
            "status": row["status"],
            "error": row.get("error") or "",
        }
    )
