"""One readable training loop for baselines and fine-tuning, and evaluation (plain PyTorch).

Hyperparameters live in `TrainRecipe`; every other knob is derived from it and the device
(`DeviceSettings`: on a GPU bf16 autocast, channels_last and cudnn.benchmark). Batches come from
the loader the dataset was placed for (prune_ray.data.loaders: slices of tensors on the device, or
a streaming DataLoader); evaluation runs on tensors on the device.

The step (forward, loss, backward) is compiled by `torch.compile` when `TrainRecipe.compile` says
so (`auto`: on a CUDA device for a run of more than COMPILE_MIN_STEPS steps, where a launch-bound
step gains and the compilation is paid back); compiled, every step sees one batch shape (a last,
partial batch of an epoch is dropped). Unstructured masks are re-applied by one
`torch._foreach_mul_` after each optimiser step instead of a forward pre-hook per layer
(prune_ray.prune.unstructured.plain_masked_weights).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import Dataset
from .data.loaders import training_batches

LR_SCHEDULES = ("cosine", "step", "constant")
COMPILE = ("auto", "on", "off")  # TrainRecipe.compile
COMPILE_MIN_STEPS = 300  # compile auto: on a CUDA device, runs of more optimiser steps than this
COMPILE_BACKEND = "inductor"  # torch.compile's backend for the step
# set to 1: the GPU's settings (bf16 autocast, channels_last) on the CPU too, so that their dtype
# and layout bugs show on a machine without a GPU (tests, benchmarks/gpu_check.py --tiny)
GPU_SETTINGS_ON_CPU = "PRUNE_RAY_GPU_SETTINGS_ON_CPU"


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
    # knowledge distillation from a teacher (a pruned model's fine-tuning: the dense model it was
    # pruned from): loss = (1 - distill) CE + distill T^2 KL(teacher_T || student_T); 0: plain CE
    distill: float = 0.0
    distill_temperature: float = 4.0  # T: both logits divided by it before the softmax
    # torch.compile the training step: auto (on for a CUDA device and more than COMPILE_MIN_STEPS
    # steps), on, off; how fast, not what is learnt: left out of config and baseline hashes
    compile: str = "auto"


@dataclass(frozen=True)
class DeviceSettings:
    """How a device trains and evaluates: bf16 autocast and channels_last on a GPU."""

    device_type: str  # autocast's device_type: "cuda" or "cpu"
    autocast: bool  # bf16 autocast (fp32 master weights)
    channels_last: bool  # NHWC activations and weights while training

    @staticmethod
    def of(device: torch.device) -> "DeviceSettings":
        gpu_like = device.type == "cuda" or os.environ.get(GPU_SETTINGS_ON_CPU) == "1"
        return DeviceSettings(device.type, gpu_like, gpu_like)


def compiles(recipe: TrainRecipe, device: torch.device, total_steps: int) -> bool:
    """Whether train() compiles its step (TrainRecipe.compile)."""
    if recipe.compile not in COMPILE:
        raise ValueError(f"unknown compile {recipe.compile!r}; allowed: {', '.join(COMPILE)}")
    if recipe.compile == "auto":
        return device.type == "cuda" and total_steps > COMPILE_MIN_STEPS
    return recipe.compile == "on"


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
    settings = DeviceSettings.of(x.device)
    for start in range(0, len(x), batch_size):
        with torch.autocast(settings.device_type, dtype=torch.bfloat16, enabled=settings.autocast):
            logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == target).sum()
        correct5 += (top == target[:, None]).any(dim=1).sum()
    model.train(was_training)
    return int(correct1) / len(x), int(correct5) / len(x)


RECALIBRATION_EXAMPLES = 512  # training examples that re-estimate BatchNorm statistics after pruning


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


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, weight: float,
                      temperature: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """Hinton et al. 2015: (1 - weight) CE(logits, targets) + weight T^2 KL(softmax(teacher/T) ||
    softmax(logits/T)), the KL averaged over the batch (T^2 keeps its gradient's scale as T grows)."""
    hard = F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    student = F.log_softmax(logits.float() / temperature, dim=1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    soft = F.kl_div(student, teacher, reduction="batchmean", log_target=True)
    return (1 - weight) * hard + weight * temperature**2 * soft


def _loss_function(model: nn.Module, recipe: TrainRecipe, settings: DeviceSettings, teacher: nn.Module | None = None):
    """(inputs, targets) -> the batch's mean cross-entropy, or with a `teacher` the distillation
    loss: the part of the step torch.compile takes (its backward is compiled with it; the
    optimiser's foreach step stays eager)."""

    def loss_of(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.autocast(settings.device_type, dtype=torch.bfloat16, enabled=settings.autocast):
            logits = model(inputs)
            if teacher is None:
                return F.cross_entropy(logits, targets, label_smoothing=recipe.label_smoothing)
            with torch.no_grad():
                teacher_logits = teacher(inputs)
        return distillation_loss(logits, teacher_logits, targets, recipe.distill, recipe.distill_temperature,
                                 recipe.label_smoothing)

    return loss_of


def steps_per_epoch(examples: int, batch_size: int, compiled: bool) -> int:
    """Optimiser steps of an epoch: every batch, or compiled only the full ones (one shape), unless
    there is none."""
    return examples // batch_size if compiled and examples >= batch_size else -(-examples // batch_size)


def train(
    model: nn.Module,
    data: Dataset,
    recipe: TrainRecipe,
    *,
    seed: int,
    on_epoch: Callable[[EpochStats], None] | None = None,
    before_epoch: Callable[[int], None] | None = None,
    first_epoch: int = 1,
    validate: bool = True,
    teacher: nn.Module | None = None,
) -> list[EpochStats]:
    """Train `model` in place on data.train_*, validating after each epoch; returns the history.
    validate=False skips the per-epoch validation (its top-1 and top-5 are NaN): a caller that only
    needs the end result (a race's or netadapt's candidate) evaluates once itself.

    With a `teacher` (kept in eval mode, never updated) and recipe.distill > 0, the loss is
    `distillation_loss` against the teacher's logits on the same batch; without one, distill is unused.

    `before_epoch(epoch)` runs at the start of each epoch (gradual pruning hooks in there; it may
    only change masks, not replace parameters). Epochs are numbered from `first_epoch`, so
    successive calls (prune/retrain cycles) report one continuous count.

    Raises DivergedError on a NaN/inf loss, so callers can record a failed run instead of crashing.
    """
    from .prune.unstructured import plain_masked_weights  # here: importing prune_ray.prune loads torch-pruning

    torch.manual_seed(seed)
    settings = DeviceSettings.of(data.device)
    loader = training_batches(data, recipe.batch_size, seed)  # the device's or the streaming loader (data.loader)
    if data.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one batch shape: each conv's fastest algorithm, chosen once
    if settings.channels_last:  # tensor cores prefer NHWC while training; bf16 autocast keeps fp32 master weights
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov and recipe.momentum > 0,
        weight_decay=recipe.weight_decay,
    )
    eager_steps = len(loader)
    compiled = compiles(recipe, data.device, recipe.epochs * eager_steps)
    steps = steps_per_epoch(len(data.train_x), recipe.batch_size, compiled)
    total_steps = max(1, recipe.epochs * steps)
    warmup_steps = recipe.warmup_epochs * steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(recipe, step, total_steps, warmup_steps)
    )
    teacher = teacher if recipe.distill > 0 else None  # distill 0: plain cross-entropy, no teacher pass
    if teacher is not None:
        teacher.eval()
        if settings.channels_last:
            teacher.to(memory_format=torch.channels_last)
    loss_of = _loss_function(model, recipe, settings, teacher)
    if compiled:
        loss_of = torch.compile(loss_of, backend=COMPILE_BACKEND, dynamic=False)

    batchnorms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]
    history = []
    for epoch in range(first_epoch, first_epoch + recipe.epochs):
        if before_epoch is not None:
            before_epoch(epoch)
        began = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=data.device)
        with plain_masked_weights(model) as reapply_masks:  # masks: one foreach multiply per step, no hooks
            scales = [bn.weight for bn in batchnorms]
            for batch, (inputs, targets) in enumerate(loader):
                if batch == steps:  # compiled: the last, partial batch is dropped (one shape)
                    break
                if settings.channels_last:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                loss = loss_of(inputs, targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.bn_l1 > 0:  # subgradient of bn_l1 * sum|gamma|: drives unneeded channels to 0
                    with torch.no_grad():
                        torch._foreach_add_([s.grad for s in scales], torch._foreach_sign(scales), alpha=recipe.bn_l1)
                optimizer.step()
                if reapply_masks is not None:
                    reapply_masks()
                scheduler.step()
                loss_sum += loss.detach()
        train_loss = float(loss_sum) / steps  # one device sync per epoch, not per batch
        if not math.isfinite(train_loss):
            raise DivergedError(f"training diverged: loss {train_loss} in epoch {epoch} (lr {recipe.lr})")
        top1, top5 = evaluate(model, data.val_x, data.val_y) if validate else (math.nan, math.nan)
        stats = EpochStats(epoch, train_loss, top1, top5, time.perf_counter() - began)
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    if settings.channels_last:  # hand the model back in NCHW, the layout its baseline's latency was measured in
        model.to(memory_format=torch.contiguous_format)
    return history
