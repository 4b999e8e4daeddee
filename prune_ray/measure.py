"""What a model costs: parameters, nonzeros, MACs, bytes and latency.

MAC convention: multiply-accumulates of convolutions and matrix products (Conv/Linear layers) for
ONE input example, counted by torch's FlopCounterMode (which reports 2 FLOPs per MAC). BatchNorm,
activations, pooling and residual additions are not counted, as in most pruning papers
(ResNet-20 on CIFAR: 40.6M MACs). Unstructured masks do not reduce MACs: the dense work remains.

Latency: forward passes timed after warm-up, until a minimum number and a minimum total time, with
median and quartiles (`time_model`); a baseline and its pruned model timed in interleaved pairs,
with the speedup's median and 95% interval from the per-pair ratios (`time_paired`).

A timed sample is one pass on the CPU (the wall clock around it). On a GPU one pass between a pair
of CUDA events from an idle queue measures kernel launches, not the model (a pruned network's
speed-up is squeezed towards 1x): a sample there is K passes queued back to back between one pair
of events, K doubled from 1 until a sample takes `TimingOptions.sample_min_ms`, and its time is
their mean. Every Timing says how it was timed (`Timing.method`, the row's latency_method).
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

SPARSE_INDEX_BYTES = 4  # one int32 index stored beside each nonzero value


@dataclass(frozen=True)
class Measurement:
    params: int  # parameters, zeros included
    params_nonzero: int  # parameters that are not exactly zero
    macs: int  # multiply-accumulates per example (convention above)
    bytes_dense: int  # bytes of all parameters stored densely
    bytes_sparse: int  # bytes with each tensor stored as min(dense, nonzeros * (value + int32 index))
    latency_ms: float | None  # median forward time of the example batch (ms); None when not measured


def effective_parameters(model: nn.Module) -> Iterator[torch.Tensor]:
    """Parameters as the forward pass sees them: a masked weight (torch.nn.utils.prune) counts as
    `weight` = weight_orig * weight_mask, not as the dense `weight_orig`."""
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name.endswith("_orig") and hasattr(module, name[: -len("_orig")]):
                yield getattr(module, name[: -len("_orig")])
            else:
                yield param


def count_params(model: nn.Module) -> tuple[int, int]:
    """(parameters, nonzero parameters)."""
    total = nonzero = 0
    for tensor in effective_parameters(model):
        total += tensor.numel()
        nonzero += int(torch.count_nonzero(tensor.detach()))
    return total, nonzero


def count_bytes(model: nn.Module) -> tuple[int, int]:
    """(dense bytes, sparse bytes) of the parameters."""
    dense = sparse = 0
    for tensor in effective_parameters(model):
        value_bytes = tensor.element_size()
        tensor_dense = tensor.numel() * value_bytes
        nonzero = int(torch.count_nonzero(tensor.detach()))
        dense += tensor_dense
        sparse += min(tensor_dense, nonzero * (value_bytes + SPARSE_INDEX_BYTES))
    return dense, sparse


@torch.no_grad()
def count_macs(model: nn.Module, example_inputs: torch.Tensor) -> int:
    """MACs of one example (the first of `example_inputs`)."""
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(example_inputs[:1])
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


# ---------------------------------------------------------------------------------------------
# Timing forward passes


@dataclass(frozen=True)
class TimingOptions:
    """How forward passes are timed (`time_model`, `time_paired`)."""

    warmup: int = 3  # untimed passes of each model first (allocation, kernel choice, caches)
    min_passes: int = 20  # timed passes of each model, at least
    min_time_ms: float = 200.0  # and more passes until each model's timed passes add up to this (ms)
    max_passes: int = 5000  # never more passes than this per model (a few microseconds each)
    # CUDA: passes per sample doubled from 1 until a sample's back-to-back passes take this long (ms)
    sample_min_ms: float = 2.0
    max_sample_passes: int = 256  # and at most this many passes per sample


@dataclass(frozen=True)
class Timing:
    """One model's timed forward passes (ms)."""

    median_ms: float  # median time of a pass
    q1_ms: float  # 25th percentile
    q3_ms: float  # 75th percentile
    passes: int  # timed samples
    total_ms: float  # their sum (ms per pass, summed)
    method: str = "wall clock, 1 pass per sample"  # how a sample was timed (the row's latency_method)

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms


@dataclass(frozen=True)
class Speedup:
    """A baseline and a pruned model timed in interleaved pairs (`time_paired`)."""

    baseline: Timing
    pruned: Timing
    median: float  # median over pairs of baseline time / pruned time (x)
    low: float  # 2.5th percentile of the per-pair ratios (x)
    high: float  # 97.5th percentile of the per-pair ratios (x)

    @property
    def method(self) -> str:
        return self.baseline.method


def _timing(times_ms: list[float], method: str) -> Timing:
    q1, median, q3 = statistics.quantiles(times_ms, n=4, method="inclusive")
    return Timing(median, q1, q3, len(times_ms), sum(times_ms), method)


# (model, inputs, passes) -> ms that `passes` forward passes take, queued back to back
PassClock = Callable[[nn.Module, torch.Tensor, int], float]


def wall_clock(model: nn.Module, inputs: torch.Tensor, passes: int) -> float:
    """The CPU's clock: the wall time of `passes` forward passes (ms)."""
    began = time.perf_counter_ns()
    for _ in range(passes):
        model(inputs)
    return (time.perf_counter_ns() - began) / 1e6


def cuda_events(model: nn.Module, inputs: torch.Tensor, passes: int) -> float:
    """A GPU's clock: `passes` forward passes queued between one pair of CUDA events (ms), after a
    synchronize so that earlier queued work is not counted, and waited for so that all of theirs is."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(inputs.device)
    start.record()
    for _ in range(passes):
        model(inputs)
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


@dataclass(frozen=True)
class Sampler:
    """How one sample is timed: `passes` back-to-back passes on `clock`, their mean per pass."""

    clock: PassClock
    passes: int
    method: str

    def __call__(self, model: nn.Module, inputs: torch.Tensor) -> float:
        return self.clock(model, inputs, self.passes) / self.passes


def sample_passes(clock: PassClock, models: list[nn.Module], inputs: torch.Tensor, options: TimingOptions) -> int:
    """Passes per sample: doubled from 1 until every model's sample takes options.sample_min_ms (so
    one sample of the fastest model covers launch gaps and is mostly kernel time), at most
    options.max_sample_passes. The models are warm (called after their warm-up)."""
    passes = 1
    while passes < options.max_sample_passes and min(clock(m, inputs, passes) for m in models) < options.sample_min_ms:
        passes *= 2
    return min(passes, options.max_sample_passes)


def sampler_for(models: list[nn.Module], inputs: torch.Tensor, options: TimingOptions,
                clock: PassClock | None = None) -> Sampler:
    """The CPU's one pass per sample on the wall clock; on a GPU (or with an injected `clock`) K
    passes per sample between one pair of events (sample_passes)."""
    if clock is None and not inputs.is_cuda:
        return Sampler(wall_clock, 1, "wall clock, 1 pass per sample")
    name = "injected clock" if clock is not None else "cuda events"
    clock = clock or cuda_events
    if clock is cuda_events:
        torch.backends.cudnn.benchmark = True  # the convolution algorithms training uses
    passes = sample_passes(clock, models, inputs, options)
    return Sampler(clock, passes, f"{name}, {passes} passes per sample")


@contextlib.contextmanager
def _quiet(*models: nn.Module) -> Iterator[None]:
    """Eval mode, no autograd and no garbage collection while timing; training flags restored."""
    modes = [model.training for model in models]
    collecting = gc.isenabled()
    gc.disable()
    try:
        with torch.no_grad():
            for model in models:
                model.eval()
            yield
    finally:
        for model, mode in zip(models, modes):
            model.train(mode)
        if collecting:
            gc.enable()


def _enough(times_ms: list[float], options: TimingOptions, passes: int) -> bool:
    """Enough samples (of `passes` passes each): min_passes of them whose passes took min_time_ms."""
    count = len(times_ms)
    return count >= options.max_passes or (count >= options.min_passes and sum(times_ms) * passes >= options.min_time_ms)


def time_model(model: nn.Module, inputs: torch.Tensor, options: TimingOptions = TimingOptions(),
               clock: PassClock | None = None) -> Timing:
    """Median and quartiles of forward passes of `model` over `inputs`, on their device, after
    `options.warmup` untimed passes; at least `min_passes` samples, and until they add up to
    `min_time_ms` (a sample: module docstring; `clock` replaces the device's clock)."""
    times: list[float] = []
    with _quiet(model):
        for _ in range(options.warmup):
            model(inputs)
        sample = sampler_for([model], inputs, options, clock)
        while not _enough(times, options, sample.passes):
            times.append(sample(model, inputs))
    return _timing(times, sample.method)


def time_paired(baseline: nn.Module, pruned: nn.Module, inputs: torch.Tensor,
                options: TimingOptions = TimingOptions(), clock: PassClock | None = None) -> Speedup:
    """Time `baseline` and `pruned` in interleaved pairs of forward passes, and their speedup.

    Pass k of one model runs right beside pass k of the other, so both see the same machine state
    (a neighbour's load, the clock frequency, the caches), and the order alternates within pairs
    (baseline first, then pruned first), so neither profits from going second. Each model gets
    `warmup` untimed passes, then pairs run until each model has `min_passes` and `min_time_ms`.
    Both models' samples hold the same number of passes (on a GPU, as many as the faster needs).

    The speedup is the median of the per-pair ratios baseline time / pruned time, and its interval
    the 2.5th and 97.5th percentiles of those ratios: the range in which 95% of single paired
    comparisons fall on this machine. This is deliberately not a confidence interval of the median
    (a bootstrap, say): that one narrows as pairs accumulate and assumes pairs are independent, but
    on a shared machine they are not (load comes and goes in bursts longer than a pass, and small
    systematic effects remain): on the 2-core development machine a bootstrap interval of the median
    excluded 1.0 for a masked digits_cnn and its dense baseline in 12 of 20 runs, this interval in
    none. It does not shrink with more pairs: it says how far one paired comparison can be trusted
    on this machine, so a model and its copy get an interval around 1.0, and models of identical
    shapes get intervals that overlap. (A masked model does the same dense work, yet on the
    development CPU one with 90% zeros runs 6-7% faster, a value effect, not a timing error.)
    """
    base_ms: list[float] = []
    pruned_ms: list[float] = []
    with _quiet(baseline, pruned):
        for _ in range(options.warmup):
            baseline(inputs)
            pruned(inputs)
        sample = sampler_for([baseline, pruned], inputs, options, clock)
        while not (_enough(base_ms, options, sample.passes) and _enough(pruned_ms, options, sample.passes)):
            if len(base_ms) % 2 == 0:
                base_ms.append(sample(baseline, inputs))
                pruned_ms.append(sample(pruned, inputs))
            else:
                pruned_ms.append(sample(pruned, inputs))
                base_ms.append(sample(baseline, inputs))
    ratios = [b / max(p, 1e-9) for b, p in zip(base_ms, pruned_ms)]
    cuts = statistics.quantiles(ratios, n=40, method="inclusive")  # cuts[0]: 2.5%, cuts[-1]: 97.5%
    return Speedup(_timing(base_ms, sample.method), _timing(pruned_ms, sample.method), statistics.median(ratios),
                   cuts[0], cuts[-1])


def measure(model: nn.Module, example_inputs: torch.Tensor, *, latency: bool = True,
            timing: TimingOptions = TimingOptions()) -> Measurement:
    """Counts of `model` and, with `latency`, the median time of a forward pass over
    `example_inputs` (timed alone; `time_paired` compares two models fairly)."""
    params, params_nonzero = count_params(model)
    bytes_dense, bytes_sparse = count_bytes(model)
    return Measurement(
        params=params,
        params_nonzero=params_nonzero,
        macs=count_macs(model, example_inputs),
        bytes_dense=bytes_dense,
        bytes_sparse=bytes_sparse,
        latency_ms=time_model(model, example_inputs, timing).median_ms if latency else None,
    )


def resource(model: nn.Module, example_inputs: torch.Tensor, metric: str) -> float:
    """The budgeted quantity: 'macs' or 'params' (nonzero parameters)."""
    if metric == "macs":
        return float(count_macs(model, example_inputs))
    if metric == "params":
        return float(count_params(model)[1])
    raise ValueError(f"unknown budget metric {metric!r}; allowed: macs, params")
