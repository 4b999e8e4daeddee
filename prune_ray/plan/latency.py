"""Latency lookup tables (NetAdapt, Yang et al. 2018): predict a pruned model's latency from its shapes.

Each convolution and linear layer of the baseline is rebuilt alone, with its kernel, stride and
padding, at a grid of input x output channel counts (fractions GRID of its own, the classifier's
outputs and the input image's channels fixed) and timed on the trial's device at the batch size
and spatial size it sees in the model. A model's predicted latency is the sum over its layers of
the table (made monotone: a wider layer never costs less) interpolated bilinearly at the layer's
current channel counts, plus a constant
`offset_ms`: the baseline's measured latency minus that sum at full size (BatchNorm, activations,
pooling, additions and framework overhead, taken as unchanged by pruning). The prediction is
therefore exact at the baseline and falls monotonically as channels are removed; the trial still
measures the final model and records both.

On a GPU each entry is timed as every latency is (prune_ray.measure): warm, K passes back to back
between one pair of CUDA events, so that a 10-30 us convolution is timed by its kernels, not by
its launch and a synchronize; `LatencyTable.method` says how the table was timed.

Tables are cached at `<storage>/latency/<model>-<dataset>-<device>-b<batch>.json`, so trials of
one sweep (and later sweeps) time each layer once per device and batch size.
"""

from __future__ import annotations

import bisect
import copy
import json
import re
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..measure import TimingOptions, time_model
from ..results.storage import Storage

GRID = (0.05, 0.25, 0.5, 0.75, 1.0)  # fractions of a layer's channels timed (0.05: structured max_ratio 0.95)
ENTRY_TIMING = TimingOptions(warmup=2, min_passes=5, min_time_ms=20.0)  # per table entry
TIMED = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class LayerTable:
    ins: list[int]  # input channel counts timed (ascending)
    outs: list[int]  # output channel counts timed (ascending)
    ms: list[list[float]]  # ms[i][j]: median time at ins[i] x outs[j]


@dataclass(frozen=True)
class LatencyTable:
    layers: dict[str, LayerTable]  # by module name in the baseline
    offset_ms: float  # baseline latency minus the layers' sum at full size (ms)
    baseline_ms: float  # the baseline's measured median latency when the table was made (ms)
    method: str = "wall clock, 1 pass per sample"  # how the baseline was timed (measure.Timing.method)


def _counts(full: int, fixed: bool) -> list[int]:
    return [full] if fixed or full <= 4 else sorted({max(1, round(f * full)) for f in GRID})


def _units(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Conv2d):
        return module.in_channels, module.out_channels
    return module.in_features, module.out_features


def _rebuilt(module: nn.Module, c_in: int, c_out: int) -> nn.Module:
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise ValueError(f"latency tables time dense convolutions; a grouped one ({module}) is not supported")
        return nn.Conv2d(c_in, c_out, module.kernel_size, module.stride, module.padding, module.dilation,
                         bias=module.bias is not None)
    return nn.Linear(c_in, c_out, bias=module.bias is not None)


def _input_shapes(model: nn.Module, batch: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """The input shape of every conv and linear layer on `batch` (one traced forward pass)."""
    shapes, hooks = {}, []

    def record(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            shapes.setdefault(name, tuple(args[0].shape))

        return hook

    for name, module in model.named_modules():
        if isinstance(module, TIMED):
            hooks.append(module.register_forward_hook(record(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(batch)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return shapes


def build_table(model: nn.Module, batch: torch.Tensor, classifier: str) -> LatencyTable:
    """Time every conv/linear layer of `model` at the grid (module docstring) on batch's device."""
    layers, first = {}, _first(model)  # the first layer's inputs are the image's channels
    for name, shape in _input_shapes(model, batch).items():
        module = model.get_submodule(name)
        full_in, full_out = _units(module)
        ins, outs = _counts(full_in, fixed=name == first), _counts(full_out, fixed=name == classifier)
        grid = []
        for c_in in ins:
            row = []
            for c_out in outs:
                probe = _rebuilt(module, c_in, c_out).to(batch.device)
                x = torch.randn((shape[0], c_in, *shape[2:]), device=batch.device)
                row.append(time_model(probe, x, ENTRY_TIMING).median_ms)
            grid.append(row)
        layers[name] = LayerTable(ins, outs, _monotone(grid))
    baseline = time_model(model, batch)
    table = LatencyTable(layers, 0.0, baseline.median_ms)
    return LatencyTable(layers, baseline.median_ms - layer_sum(table, model), baseline.median_ms, baseline.method)


def _monotone(grid: list[list[float]]) -> list[list[float]]:
    """Each entry at least every entry with fewer channels (a running maximum along both axes):
    timing noise must not make a wider layer look faster, or the projection's resource would not
    fall monotonically as channels are removed."""
    out = [list(row) for row in grid]
    for i, row in enumerate(out):
        for j in range(len(row)):
            row[j] = max(row[j], row[j - 1] if j else 0.0, out[i - 1][j] if i else 0.0)
    return out


def _first(model: nn.Module) -> str:
    return next(name for name, module in model.named_modules() if isinstance(module, TIMED))


def _between(values: list[int], x: int) -> tuple[int, int, float]:
    """Indices (i, j) around x in ascending `values` and x's weight towards j (linear; outside the
    grid, extrapolated from its nearest two values)."""
    if len(values) == 1:
        return 0, 0, 0.0
    j = min(max(bisect.bisect_left(values, x), 1), len(values) - 1)
    i = j - 1
    return i, j, (x - values[i]) / (values[j] - values[i])


def _interpolate(layer: LayerTable, c_in: int, c_out: int) -> float:
    i0, i1, wi = _between(layer.ins, c_in)
    j0, j1, wj = _between(layer.outs, c_out)
    top = layer.ms[i0][j0] * (1 - wj) + layer.ms[i0][j1] * wj
    bottom = layer.ms[i1][j0] * (1 - wj) + layer.ms[i1][j1] * wj
    return max(0.0, top * (1 - wi) + bottom * wi)


def layer_sum(table: LatencyTable, model: nn.Module) -> float:
    return sum(_interpolate(layer, *_units(model.get_submodule(name))) for name, layer in table.layers.items())


def predict_ms(table: LatencyTable, model: nn.Module) -> float:
    """Predicted latency of `model` (the baseline or a structured pruning of it) in ms."""
    return table.offset_ms + layer_sum(table, model)


def table_key(model: str, dataset: str, device: torch.device, batch_size: int) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu{torch.get_num_threads()}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model}-{dataset}-{name}-b{batch_size}")


def cached_table(storage: Storage, key: str, model: nn.Module, batch: torch.Tensor, classifier: str) -> LatencyTable:
    """The table at `<storage>/latency/<key>.json`, built (timed) and stored if absent."""
    path = storage.path("latency", f"{key}.json")
    if storage.exists(path):
        data = json.loads(storage.read_bytes(path))
        layers = {name: LayerTable(**layer) for name, layer in data["layers"].items()}
        return LatencyTable(layers, data["offset_ms"], data["baseline_ms"], data.get("method", LatencyTable.method))
    table = build_table(copy.deepcopy(model), batch, classifier)
    blob = {"layers": {name: vars(layer) for name, layer in table.layers.items()},
            "offset_ms": table.offset_ms, "baseline_ms": table.baseline_ms, "method": table.method}
    storage.write_bytes_atomic(path, json.dumps(blob).encode())
    return table
