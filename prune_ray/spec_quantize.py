"""The spec's quantisation fields checked (quantize, quantize_bits, quantize_epochs, quantize_lr):
ValueError with one line naming the bad value and what is allowed (spec.validate makes it a SpecError).
`quantize_bits` entries may be one integer, every layer at that many bits (`[5]`), or a mapping
`{conv: 8, fc: 5}` (expand_bits turns the first form into the second, before typing)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .quantize import MAX_BITS, list_quantizers

if TYPE_CHECKING:
    from .spec_types import SweepSpec


def expand_bits(data: object) -> object:
    """The spec mapping with each integer entry of quantize_bits (a plain int, not a bool) made
    {conv: n, fc: n}; anything else is left for the typed conversion to check."""
    if not isinstance(data, dict) or "quantize_bits" not in data:
        return data
    entries = data["quantize_bits"]
    entries = entries if isinstance(entries, list) else [entries]  # a scalar is a one-item list
    expanded = [{"conv": bits, "fc": bits} if type(bits) is int else bits for bits in entries]
    return {**data, "quantize_bits": expanded}


def check_quantize(spec: SweepSpec) -> None:
    if not spec.quantize:
        raise ValueError("quantize: must list at least one quantizer (none: float32 weights), got []")
    for index, name in enumerate(spec.quantize):
        if name not in list_quantizers():
            raise ValueError(f"quantize[{index}]: unknown quantizer {name!r}; allowed: {', '.join(list_quantizers())}")
    if len(set(spec.quantize)) != len(spec.quantize):
        raise ValueError(f"quantize: {list(spec.quantize)} lists a quantizer twice")
    if not spec.quantize_bits:
        raise ValueError("quantize_bits: must list at least one {conv: bits, fc: bits}, got []")
    for index, bits in enumerate(spec.quantize_bits):
        for layer_type in ("conv", "fc"):
            value = bits.conv if layer_type == "conv" else bits.fc
            if not 1 <= value <= MAX_BITS:
                raise ValueError(f"quantize_bits[{index}].{layer_type}: {value!r} bits; allowed: 1 to {MAX_BITS}")
    if len(set(spec.quantize_bits)) != len(spec.quantize_bits):
        raise ValueError("quantize_bits: lists the same bits twice")
    if spec.quantize_epochs < 0:
        raise ValueError(f"quantize_epochs: {spec.quantize_epochs!r} must be >= 0")
    if spec.quantize_lr <= 0:
        raise ValueError(f"quantize_lr: {spec.quantize_lr!r} must be > 0")
