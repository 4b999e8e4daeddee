"""One trial: baseline -> schedule -> prune -> evaluate -> fine-tune -> measure -> Parquet row.

`run_trial` is plain Python (callable without Ray, as the tests do); `tune_trial` adapts it to
Ray Tune, reporting each fine-tuning epoch so schedulers and searchers see progress.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import socket
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
from .results import write_epochs, write_trial
from .schedule import SEARCHED, plan_removal
from .spec import SweepSpec, resolved_metric
from .storage import open_storage
from .train import evaluate

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
    spec, group = context.spec, config["group"]
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
        data = load_dataset(spec.dataset, spec.data).to(device)

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

        began = time.perf_counter()
        layers = method.layers(model, example)
        baseline_resource = base.params if metric == "params" else base.macs
        removed = plan_removal(spec.schedule, model, method, layers, group, config.get("shape") or {}, example, metric, baseline_resource)
        row["time_prune_s"] = time.perf_counter() - began

        def on_pruned(top1: float, top5: float) -> None:
            row["top1_pruned"], row["top5_pruned"] = top1, top5

        def on_epoch(stats) -> None:
            epochs.append(dataclasses.asdict(stats))
            report({"top1": stats.top1, "top5": stats.top5, "epoch": stats.epoch, "status": "running"})

        began = time.perf_counter()
        calibration = Calibration(data.train_x[:CALIBRATION_EXAMPLES], data.train_y[:CALIBRATION_EXAMPLES])
        outcome = prune_and_finetune(
            model, method, removed, mode=spec.iterative, steps=row["prune_steps"], data=data,
            recipe=finetune, calibration=calibration, seed=group["seed"], on_epoch=on_epoch, on_pruned=on_pruned,
        )
        model = outcome.model
        row["time_finetune_s"] = time.perf_counter() - began
        epochs.insert(0, {"epoch": 0, "top1": row["top1_pruned"], "top5": row["top5_pruned"]})

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
        if group["budget"] is not None:
            achieved = (pruned.params_nonzero if metric == "params" else pruned.macs) / baseline_resource
            if achieved > group["budget"] * (1 + 1e-9):
                raise AssertionError(f"pruned model keeps {achieved:.4f} of {metric}, over budget {group['budget']}")
    except Exception as error:  # a failed trial is a row, never a crashed sweep
        row["status"] = "failed"
        row["error"] = f"{type(error).__name__}: {error}"
        if not isinstance(error, (ValueError, RuntimeError)):
            row["error"] += "\n" + traceback.format_exc(limit=5)
    row["finished_at"] = _now()
    write_epochs(storage, context.sweep, trial_id, epochs)
    write_trial(storage, row)
    return row


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
            "status": row["status"],
            "error": row.get("error") or "",
        }
    )
