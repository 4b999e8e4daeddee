"""One readable training loop for baselines and fine-tuning, and evaluation (plain PyTorch).

Hyperparameters live in `TrainRecipe`; every other knob is derived from it. Batches come from the
loader the dataset was placed for (prune_ray.data.loaders: slices of tensors on the device, or a
streaming DataLoader); evaluation runs on tensors on the device.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import Dataset
from .data.loaders import training_batches

LR_SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class TrainRecipe:
    epochs: int = 20  # passes over the training split
    batch_size: int = 128  # examples per optimiser step
    lr: float = 0.05  # peak SGD learning rate (per step of batch_size examples)
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = True  # Nesterov momentum
    weight_decay: float = 5e-4  # L2 penalty coefficient, applied to every parameter
    lr_schedule: str = "cosine"  # "cosine": decay to 0 over all steps; "step"; "constant"
    step_milestones: tuple[float, ...] = (0.5, 0.75)  # "step": fractions of training where lr *= step_gamma
    step_gamma: float = 0.1  # "step": learning-rate factor at each milestone
    warmup_epochs: int = 0  # linear warm-up from 0 to lr over this many epochs
    label_smoothing: float = 0.0  # cross-entropy label smoothing, 0 = none
    bn_l1: float = 0.0  # L1 penalty on BatchNorm scales (network slimming; Liu et al. 2017 use 1e-4)


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    train_loss: float  # mean cross-entropy over the epoch's batches
    top1: float  # validation top-1 accuracy in [0, 1]
    top5: float  # validation top-5 accuracy in [0, 1]
    seconds: float  # wall time of the epoch (training + validation)


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> tuple[float, float]:
    """(top-1, top-5) accuracy of `model` on (x, y); top-5 is capped at the number of classes."""
    was_training = model.training
    model.eval()
    correct1 = torch.zeros((), dtype=torch.long, device=x.device)  # summed on the device: one sync at the end
    correct5 = torch.zeros_like(correct1)
    for start in range(0, len(x), batch_size):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=x.is_cuda):
            logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == target).sum()
        correct5 += (top == target[:, None]).any(dim=1).sum()
    model.train(was_training)
    return int(correct1) / len(x), int(correct5) / len(x)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 128) -> bool:
    """EagleEye's adaptive BatchNorm (Li et al., ECCV 2020): re-estimate every BatchNorm's running
    statistics on the examples `x` (training images, no augmentation, no gradients), as a plain
    average over them. Pruning shifts each layer's activations, so the stored statistics no longer
    fit and accuracy right after pruning understates the pruned network. False without BatchNorm."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    was_training, momenta = model.training, [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: every batch counts equally
    model.train()
    for start in range(0, len(x), batch_size):
        model(x[start : start + batch_size])
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)
    return True


def lr_factor(recipe: TrainRecipe, step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of recipe.lr at optimiser step `step` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = step / total_steps
    if recipe.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if recipe.lr_schedule == "step":
        return recipe.step_gamma ** sum(progress >= milestone for milestone in recipe.step_milestones)
    if recipe.lr_schedule == "constant":
        return 1.0
    raise ValueError(f"unknown lr_schedule {recipe.lr_schedule!r}; allowed: {', '.join(LR_SCHEDULES)}")


def train(
    model: nn.Module,
    data: Dataset,
    recipe: TrainRecipe,
    *,
    seed: int,
    on_epoch: Callable[[EpochStats], None] | None = None,
    before_epoch: Callable[[int], None] | None = None,
    first_epoch: int = 1,
) -> list[EpochStats]:
    """Train `model` in place on data.train_*, validating after each epoch; returns the history.

    `before_epoch(epoch)` runs at the start of each epoch (gradual pruning hooks in there; it may
    only change masks, not replace parameters). Epochs are numbered from `first_epoch`, so
    successive calls (prune/retrain cycles) report one continuous count.

    Raises DivergedError on a NaN/inf loss, so callers can record a failed run instead of crashing.
    """
    torch.manual_seed(seed)
    cuda = data.device.type == "cuda"
    loader = training_batches(data, recipe.batch_size, seed)  # the device's or the streaming loader (data.loader)
    if cuda:  # tensor cores prefer NHWC while training; bf16 autocast keeps fp32 master weights
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov and recipe.momentum > 0,
        weight_decay=recipe.weight_decay,
    )
    total_steps = max(1, recipe.epochs * len(loader))
    warmup_steps = recipe.warmup_epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(recipe, step, total_steps, warmup_steps)
    )

    batchnorms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]
    history = []
    for epoch in range(first_epoch, first_epoch + recipe.epochs):
        if before_epoch is not None:
            before_epoch(epoch)
        began = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=data.device)
        for inputs, targets in loader:
            if cuda:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                loss = F.cross_entropy(model(inputs), targets, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.bn_l1 > 0:  # subgradient of bn_l1 * sum|gamma|: drives unneeded channels to 0
                for bn in batchnorms:
                    bn.weight.grad.add_(torch.sign(bn.weight.detach()), alpha=recipe.bn_l1)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach()
        train_loss = float(loss_sum) / len(loader)  # one device sync per epoch, not per batch
        if not math.isfinite(train_loss):
            raise DivergedError(f"training diverged: loss {train_loss} in epoch {epoch} (lr {recipe.lr})")
        top1, top5 = evaluate(model, data.val_x, data.val_y)
        stats = EpochStats(epoch, train_loss, top1, top5, time.perf_counter() - began)
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    if cuda:  # hand the model back in NCHW, the layout its baseline's latency was measured in
        model.to(memory_format=torch.contiguous_format)
    return history
