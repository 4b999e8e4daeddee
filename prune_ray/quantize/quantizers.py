"""The built-in quantisers: none, int8 (per output channel), kmeans (Deep Compression's trained
weight sharing) and binary (sign x per-channel scale, trained through a straight-through estimator).
Each is one registered factory; pruned (zero) weights stay zero in every one of them."""

from __future__ import annotations

import torch
import torch.nn as nn

from . import BitWidths, register_quantizer
from .tensor import Quantization, QuantizedTensor, QuantizedWeight, dequantize, quantized_layers

KMEANS_ITERATIONS = 30  # Lloyd iterations at most (1-D; stops earlier when no assignment changes)
INT8_LEVELS = 127  # symmetric: codes in [-127, 127], 0 exactly 0


def _per_channel(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().reshape(weight.shape[0], -1)


@register_quantizer("none", paper="no quantisation: float32 weights", takes_bits=False, fixed_bits=None, trains=False)
def no_quantization(model: nn.Module, bits: BitWidths | None) -> Quantization:
    return Quantization(model)


# ---------------------------------------------------------------- int8: code x scale per channel


class Int8Weight(QuantizedWeight):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        rows = _per_channel(weight)
        scale = rows.abs().amax(dim=1) / INT8_LEVELS
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero channel: codes 0
        codes = torch.round(rows / scale[:, None]).clamp(-INT8_LEVELS, INT8_LEVELS).reshape(weight.shape)
        self.register_buffer("codes", codes.to(torch.int64))
        self.register_buffer("scale", scale.float())

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return dequantize("scaled", self.codes, self.scale)

    def tensor(self) -> QuantizedTensor:
        return QuantizedTensor("scaled", 8, self.codes.cpu(), self.scale.detach().cpu(), INT8_LEVELS)


@register_quantizer("int8", paper="per-output-channel symmetric int8 weights (Krishnamoorthi 2018); activations stay float",
                    takes_bits=False, fixed_bits=BitWidths(8, 8), trains=False)
def int8(model: nn.Module, bits: BitWidths | None) -> Quantization:
    quantization = Quantization(model)
    for name, module in quantized_layers(model):
        quantization.parametrize(name, module, Int8Weight(module.weight))
    return quantization


# ---------------------------------------------------------------- kmeans: shared values per layer


def linear_kmeans(values: torch.Tensor, clusters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D k-means of `values` with centroids initialised linearly over [min, max] (Deep
    Compression's best initialisation): (centroids, cluster index of each value). Centroids stay
    sorted; an empty cluster keeps its centroid."""
    values = values.detach().flatten().double()
    if values.numel() == 0:
        return torch.zeros(clusters, dtype=torch.float32), torch.zeros(0, dtype=torch.int64)
    centroids = torch.linspace(float(values.min()), float(values.max()), clusters, dtype=torch.float64)
    assigned = None
    for _ in range(KMEANS_ITERATIONS):
        bounds = (centroids[1:] + centroids[:-1]) / 2
        new = torch.bucketize(values, bounds)
        if assigned is not None and torch.equal(new, assigned):
            break
        assigned = new
        counts = torch.bincount(assigned, minlength=clusters)
        sums = torch.bincount(assigned, weights=values, minlength=clusters)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids.float(), assigned


class SharedWeight(QuantizedWeight):
    """Weight = centroids[code]: the gradients of a cluster's weights add up in its centroid
    (the index's backward is a scatter-add), Deep Compression's centroid fine-tuning."""

    def __init__(self, weight: torch.Tensor, bits: int):
        super().__init__()
        present = weight.detach() != 0
        centroids, assigned = linear_kmeans(weight.detach()[present].cpu(), 2**bits)
        codes = torch.zeros(weight.shape, dtype=torch.int64)
        codes[present.cpu()] = assigned + 1
        self.bits = bits
        self.register_buffer("codes", codes.to(weight.device))
        self.centroids = nn.Parameter(centroids.to(weight.device))

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return dequantize("codebook", self.codes, self.centroids)

    def tensor(self) -> QuantizedTensor:
        """The codes with the codebook cut to the centroids some weight uses (linear initialisation
        leaves tail clusters empty; a layer with fewer weights than 2**bits cannot use them all),
        renumbered in order: the same values, fewer of them to store."""
        codes = self.codes.cpu()
        used = torch.unique(codes[codes > 0])
        renumber = torch.zeros(2**self.bits + 1, dtype=torch.int64)
        renumber[used] = torch.arange(1, len(used) + 1)
        table = self.centroids.detach().float().cpu()[used - 1]
        return QuantizedTensor("codebook", self.bits, renumber[codes], table, len(used))


@register_quantizer("kmeans", paper="Han et al., ICLR 2016, Deep Compression: trained quantisation by weight sharing",
                    takes_bits=True, fixed_bits=None, trains=True)
def kmeans(model: nn.Module, bits: BitWidths) -> Quantization:
    quantization = Quantization(model)
    for name, module in quantized_layers(model):
        quantization.parametrize(name, module, SharedWeight(module.weight, bits.of(module)))
    return quantization


# ---------------------------------------------------------------- binary: sign x channel scale


class BinaryWeight(QuantizedWeight):
    """Weight = sign(latent) x the channel's mean |latent| (XNOR-Net's scale), zero where pruned.
    The latent weight is the layer's own float weight (the parametrization's original); the sign's
    gradient passes straight through to it (BinaryConnect), so fine-tuning trains the latent
    weights, which decide the signs and the scales."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.register_buffer("mask", (module.weight.detach() != 0).to(module.weight.dtype))
        self._layer = [module]  # a list: the layer is not registered as a submodule of its own weight

    def scale(self, latent: torch.Tensor) -> torch.Tensor:
        kept = _per_channel(self.mask).sum(dim=1).clamp(min=1)
        return (latent * self.mask).abs().reshape(latent.shape[0], -1).sum(dim=1) / kept

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        sign = torch.where(latent >= 0, 1.0, -1.0).to(latent.dtype)
        through = latent + (sign - latent).detach()  # forward: the sign; backward: identity
        return dequantize("scaled", through * self.mask, self.scale(latent))

    def tensor(self) -> QuantizedTensor:
        latent = self._layer[0].parametrizations.weight.original.detach()
        codes = torch.where(latent >= 0, 1, -1) * (self.mask != 0)
        return QuantizedTensor("scaled", 1, codes.to(torch.int64).cpu(), self.scale(latent).float().cpu(), 1)


@register_quantizer("binary", paper="Courbariaux et al. 2015 BinaryConnect; Rastegari et al. 2016 XNOR-Net (per-channel scale)",
                    takes_bits=False, fixed_bits=BitWidths(1, 1), trains=True)
def binary(model: nn.Module, bits: BitWidths | None) -> Quantization:
    quantization = Quantization(model)
    for name, module in quantized_layers(model):
        quantization.parametrize(name, module, BinaryWeight(module))
    return quantization
