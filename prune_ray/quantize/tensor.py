"""Quantised weights as integers: `QuantizedTensor` (codes and what turns them into floats) and
`Quantization`, the parametrized weights of a model being quantised, frozen into plain tensors.

Two value formats, one per way of sharing values:
- "codebook" (k-means weight sharing): value = codebook[code - 1], codes 1..2**bits;
- "scaled" (int8, binary): value = code x scale[output channel], codes in [-levels, levels].
Code 0 is exactly 0 in both: a pruned weight, which stays pruned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize

FORMATS = ("codebook", "scaled")
QUANTIZED_TYPES = (nn.Conv2d, nn.Linear)  # the layers whose weights are quantised


@dataclass(frozen=True)
class QuantizedTensor:
    format: str  # one of FORMATS
    bits: int  # bits of one code as stored (kmeans: as asked; int8: 8; binary: 1)
    codes: torch.Tensor  # int64, the weight's shape; 0 where the weight is 0
    table: torch.Tensor  # float32: the codebook (at most 2**bits values) or the per-output-channel scales
    levels: int  # largest |code| ("scaled"), or the codebook's size ("codebook")

    def dequantize(self) -> torch.Tensor:
        """The float32 weight the codes stand for (the same arithmetic as the quantised forward)."""
        return dequantize(self.format, self.codes, self.table)


def dequantize(format: str, codes: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    if format == "codebook":
        return torch.cat([table.new_zeros(1), table])[codes]
    if format == "scaled":
        return codes.to(table.dtype) * table.view(-1, *([1] * (codes.dim() - 1)))
    raise ValueError(f"unknown quantised format {format!r}; allowed: {', '.join(FORMATS)}")


class QuantizedWeight(nn.Module):
    """A parametrization of one layer's weight: forward(original) -> the quantised weight.
    `tensor()` gives its current codes and table."""

    def tensor(self) -> QuantizedTensor:
        raise NotImplementedError


def quantized_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every conv and linear layer (and a low-rank method's factor convs), in module order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, QUANTIZED_TYPES)]


class Quantization:
    """The quantised weights of a model: registered as parametrizations by a quantiser."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.layers: dict[str, nn.Module] = {}  # layer name -> its module (parametrized)

    def parametrize(self, name: str, module: nn.Module, weight: QuantizedWeight) -> None:
        parametrize.register_parametrization(module, "weight", weight, unsafe=True)
        self.layers[name] = module

    def freeze(self) -> dict[str, QuantizedTensor]:
        """Make every quantised weight a plain parameter holding its quantised values (exactly what
        the codes decode to) and return the codes, keyed by state-dict name (`<layer>.weight`)."""
        frozen = {}
        for name, module in self.layers.items():
            quantized = module.parametrizations.weight[0].tensor()
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
            with torch.no_grad():
                module.weight = nn.Parameter(quantized.dequantize().to(module.weight.device))
            frozen[f"{name}.weight" if name else "weight"] = quantized
        self.layers = {}
        return frozen
