"""A trial's row, apart from running it: the config hash that identifies a result, the measured
columns derived from counts and timings, the budget rule, and the search score a search learns from.
Plain functions of the spec, the trial's config and measurements (`trial.py` runs the phases)."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import subprocess
from typing import Any

import torch

from .measure import Measurement, Speedup, TimingOptions
from .points import TrialConfig
from .prune.unstructured import weight_layers
from .spec import PlanOptions, SweepSpec, stage_epochs
from .train import TrainRecipe

# where and how fast a trial runs does not change its result: left out of config_hash
INCIDENTAL = ("name", "storage", "search", "resources", "max_failures", "netadapt.parallel", "artifacts",
              "finetune.compile", "baseline.train.compile")


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def config_hash(spec: SweepSpec, config: TrialConfig) -> str:
    identity = dataclasses.asdict(spec)
    for path in INCIDENTAL:
        *parents, leaf = path.split(".")
        section = identity
        for parent in parents:
            section = section[parent]
        section.pop(leaf)
    identity["screen_epochs"] = spec.search.screen_epochs  # a screen row's result depends on it
    # and every row's on the plan options (spec.search's PlanOptions fields)
    identity["plan"] = {key: value for key, value in dataclasses.asdict(spec.search).items()
                        if key in {option.name for option in dataclasses.fields(PlanOptions)}}
    blob = json.dumps({"spec": identity, "trial": config.as_dict()}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def derived(base: Measurement, pruned: Measurement) -> dict[str, float | None]:
    return {
        "params_keep": pruned.params_nonzero / base.params,
        "macs_keep": pruned.macs / base.macs,
        "compression_ratio": base.params / max(pruned.params_nonzero, 1),
        "speedup_theoretical": base.macs / max(pruned.macs, 1),
    }


def timing_options(spec: SweepSpec) -> TimingOptions:
    options = spec.measure
    return TimingOptions(warmup=options.latency_warmup, min_passes=options.latency_repeats,
                         min_time_ms=options.latency_min_time_ms)


def within_budget(achieved: float, target: float | None) -> bool:
    """The one rule a trial's resource is checked by: no budget (a frontier search) always holds."""
    return target is None or achieved <= target * (1 + 1e-9)


def speed_columns(speed: Speedup) -> dict[str, float | str]:
    """The row's latency columns from the interleaved timing of the baseline and the pruned model."""
    return {
        "latency_ms": speed.pruned.median_ms, "latency_iqr_ms": speed.pruned.iqr_ms,
        "baseline_latency_ms": speed.baseline.median_ms, "speedup_measured": speed.median,
        "speedup_low": speed.low, "speedup_high": speed.high, "latency_keep": 1 / speed.median,
        "latency_method": speed.method,  # how the samples were timed
    }


def layer_ratios(model: torch.nn.Module, method, removed: dict[str, int], layers) -> tuple[list[str], list[float]]:
    """Per-layer fraction removed: measured zeros for masks (global thresholds spread unevenly),
    the plan's exact counts for channels and ranks."""
    if method.granularity == "unstructured":
        names = [layer.name for layer in weight_layers(model)]
        weights = [model.get_submodule(name).weight for name in names]
        return names, [1 - int(torch.count_nonzero(w)) / w.numel() for w in weights]
    return [layer.name for layer in layers], [removed[layer.name] / layer.units for layer in layers]


def finetune_recipe(spec: SweepSpec, stage: str) -> TrainRecipe:
    """The fine-tuning recipe of a trial of `stage`, with its epochs per pruning step (stage_epochs)."""
    return dataclasses.replace(spec.finetune, epochs=stage_epochs(spec, stage))


def search_score(spec: SweepSpec, config: TrialConfig, row: dict[str, Any]) -> float:
    """What a search (and the final stage's ranking) learns from a finished trial: its validation
    top-1; for a BatchNorm screen without fine-tuning, its accuracy after recalibration. 0 if failed."""
    if row["status"] == "failed":
        return 0.0
    screening_bn = config.stage == "screen" and spec.search.screen_bn and finetune_recipe(spec, "screen").epochs == 0
    return row["top1_pruned_bn"] if screening_bn and row.get("top1_pruned_bn") is not None else row["top1"]


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
