"""Quantiser registry (the method registry's pattern): what a pruned, fine-tuned model's weights
become before they are stored, Deep Compression's second stage (Han et al., ICLR 2016).

A quantiser is one small registered factory. `quantize(model, bits)` changes the model in place:
every conv and linear weight is computed from quantised parameters (a torch parametrization, as
torch.nn.utils.prune computes masked weights), so evaluating it measures the quantised model and
fine-tuning it trains what the quantiser keeps trainable (k-means centroids, binary latent weights).
`Quantization.freeze()` turns the weights back into plain tensors holding exactly the quantised
values and returns their integer codes (`QuantizedTensor`), which `encoding` stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from ..registry import Registry
from .tensor import Quantization, QuantizedTensor

MAX_BITS = 16  # kmeans: at most 2**16 shared values per layer


@dataclass(frozen=True)
class BitWidths:
    """Bits per stored weight code, by layer type (Deep Compression's defaults: 8 conv, 5 fc)."""

    conv: int = 8  # Conv2d weights: 2**conv shared values per layer (kmeans)
    fc: int = 5  # Linear weights: 2**fc shared values per layer (kmeans)

    def of(self, module: nn.Module) -> int:
        return self.conv if isinstance(module, nn.Conv2d) else self.fc


# (model, bits per layer type: Quantizer.widths, None for none) -> the model's weights quantised in place
QuantizeFn = Callable[[nn.Module, "BitWidths | None"], Quantization]


@dataclass(frozen=True)
class Quantizer:
    name: str
    paper: str  # where it comes from
    takes_bits: bool  # quantize_bits applies (each entry its own operating point)
    fixed_bits: BitWidths | None  # what it stores when it takes no bits; None: float32 kept
    trains: bool  # quantize_epochs of fine-tuning change the quantised model
    quantize: QuantizeFn

    def widths(self, asked: BitWidths | None) -> BitWidths | None:
        """The bits its codes take per layer type (`asked`: quantize_bits' entry, for a quantiser
        that takes bits); None when it leaves the weights float32."""
        return (asked or BitWidths()) if self.takes_bits else self.fixed_bits

    def label(self, asked: BitWidths | None) -> str:
        """'kmeans8/5', 'int8', 'binary'; '' for one that keeps float32 (names stay as without it)."""
        widths = self.widths(asked)
        if widths is None:
            return ""
        return f"{self.name}{widths.conv}/{widths.fc}" if self.takes_bits else self.name


_QUANTIZERS: Registry[Quantizer] = Registry("quantizer")


def register_quantizer(name: str, *, paper: str, takes_bits: bool, fixed_bits: BitWidths | None,
                       trains: bool) -> Callable[[QuantizeFn], QuantizeFn]:
    def decorate(fn: QuantizeFn) -> QuantizeFn:
        _QUANTIZERS.add(name, Quantizer(name, paper, takes_bits, fixed_bits, trains, fn))
        return fn

    return decorate


def list_quantizers() -> list[str]:
    return _QUANTIZERS.names()


def get_quantizer(name: str) -> Quantizer:
    return _QUANTIZERS.get(name)


__all__ = ["BitWidths", "MAX_BITS", "Quantization", "QuantizedTensor", "Quantizer", "get_quantizer",
           "list_quantizers", "register_quantizer"]

from . import quantizers  # noqa: E402,F401  (registers the built-in quantisers)
