"""Smoke twins: a recipe shrunk to a CPU-minute that runs the same code (CI runs one per recipe)."""

from __future__ import annotations

import dataclasses

from .data import DataOptions
from .spec import MeasureOptions, Resources, SweepSpec


def _ends(values: tuple) -> tuple:
    return values if len(values) <= 2 else (values[0], values[-1])


SMOKE_TRAIN_EXAMPLES = 192  # of digits' 1150: 19 examples per class (the training loop runs all the same)


def smoke_twin(spec: SweepSpec) -> SweepSpec:
    """The spec shrunk to a CPU-minute: bundled digits data (SMOKE_TRAIN_EXAMPLES of its training
    split), 1 epoch, 1 trial per group, only the tightest budget (another budget runs the same
    code), the first and last fixed ratio (they may name different layer kinds), the largest step
    count (at most 3 steps), one core per trial, fast timing. Model, methods, schedule, iterative
    mode and search stay, so the smoke run exercises the same code."""
    prune_steps = (min(max(spec.prune_steps), 3),)  # 9 cycles prove no more than 3; 1 step adds no code
    # recipes without fine-tuning stay without; agp prunes once per epoch, so it needs one per step
    finetune_epochs = 0 if spec.finetune.epochs == 0 else max(prune_steps) if spec.iterative == "agp" else 1
    if spec.search.early_stopping == "asha":  # ASHA needs a rung before the last epoch
        finetune_epochs = max(finetune_epochs, spec.search.grace_epochs + 1)
    return dataclasses.replace(
        spec,
        name=f"{spec.name}-smoke",
        dataset="digits",
        data=DataOptions(train_limit=SMOKE_TRAIN_EXAMPLES),
        budgets=(min(spec.budgets),) if spec.budgets else (),
        fixed_ratios=_ends(spec.fixed_ratios),
        prune_steps=prune_steps,
        resources=Resources(cpu=1.0, gpu=spec.resources.gpu),
        baseline=dataclasses.replace(spec.baseline, train=dataclasses.replace(spec.baseline.train, epochs=1, warmup_epochs=0), checkpoint=None),
        finetune=dataclasses.replace(spec.finetune, epochs=finetune_epochs, warmup_epochs=0),
        search=dataclasses.replace(spec.search, num_samples=1),
        # two greedy steps judged right after pruning: every candidate is still tried once
        netadapt=dataclasses.replace(spec.netadapt, short_epochs=0, step_fraction=max(spec.netadapt.step_fraction, 0.25)),
        measure=MeasureOptions(latency_batch_size=8, latency_repeats=3, latency_min_time_ms=50.0),
        quantize_epochs=min(spec.quantize_epochs, 1),
    )
