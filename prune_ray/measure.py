"""What a model costs: parameters, nonzeros, MACs, bytes and latency.

MAC convention: multiply-accumulates of convolutions and matrix products (Conv/Linear layers) for
ONE input example, counted by torch's FlopCounterMode (which reports 2 FLOPs per MAC). BatchNorm,
activations, pooling and residual additions are not counted, as in most pruning papers
(ResNet-20 on CIFAR: 40.6M MACs). Unstructured masks do not reduce MACs: the dense work remains.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Iterator

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
    latency_ms: float | None  # median forward time of the example batch; None when not measured


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


@torch.no_grad()
def measure_latency_ms(
    model: nn.Module, example_inputs: torch.Tensor, *, warmup: int = 3, repeats: int = 20
) -> float:
    """Median wall time of one forward pass over `example_inputs` on their device.

    On CUDA each pass is timed with CUDA events after a synchronize, so queued kernels are counted.
    """
    was_training = model.training
    model.eval()
    cuda = example_inputs.is_cuda
    times = []
    try:
        for i in range(warmup + repeats):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record()
                model(example_inputs)
                end.record()
                torch.cuda.synchronize()
                elapsed = start.elapsed_time(end)
            else:
                began = time.perf_counter()
                model(example_inputs)
                elapsed = (time.perf_counter() - began) * 1000.0
            if i >= warmup:
                times.append(elapsed)
    finally:
        model.train(was_training)
    return statistics.median(times)


def measure(
    model: nn.Module,
    example_inputs: torch.Tensor,
    *,
    latency: bool = True,
    latency_repeats: int = 20,
) -> Measurement:
    params, params_nonzero = count_params(model)
    bytes_dense, bytes_sparse = count_bytes(model)
    return Measurement(
        params=params,
        params_nonzero=params_nonzero,
        macs=count_macs(model, example_inputs),
        bytes_dense=bytes_dense,
        bytes_sparse=bytes_sparse,
        latency_ms=measure_latency_ms(model, example_inputs, repeats=latency_repeats)
        if latency
        else None,
    )


def resource(model: nn.Module, example_inputs: torch.Tensor, metric: str) -> float:
    """The budgeted quantity: 'macs' or 'params' (nonzero parameters)."""
    if metric == "macs":
        return float(count_macs(model, example_inputs))
    if metric == "params":
        return float(count_params(model)[1])
    raise ValueError(f"unknown budget metric {metric!r}; allowed: macs, params")
