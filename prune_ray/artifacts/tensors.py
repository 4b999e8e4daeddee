"""A state dict as safetensors, sparse where that is smaller: a bitmask beside the nonzero values.

A floating tensor with enough exact zeros (the masked weights of unstructured pruning) is stored as
`<name>.__mask__` (one bit per entry, packed into uint8, little bit first) and `<name>.__values__`
(its nonzero entries in row-major order): nonzeros x value bytes + entries / 8 instead of entries x
value bytes. Every other tensor is stored as it is. The mask list (name, shape, nonzeros) goes into
the plan, so reading back knows what to unpack and can check the counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MASK_SUFFIX, VALUES_SUFFIX = ".__mask__", ".__values__"
_BIT_WEIGHTS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


class TensorFormatError(ValueError):
    """Stored tensors that do not agree with the plan's mask list."""


@dataclass(frozen=True)
class Mask:
    tensor: str  # the state-dict key
    shape: tuple[int, ...]
    nonzero: int

    def as_dict(self) -> dict:
        return {"tensor": self.tensor, "shape": list(self.shape), "nonzero": self.nonzero}

    @classmethod
    def of(cls, entry: dict) -> Mask:
        return cls(str(entry["tensor"]), tuple(int(n) for n in entry["shape"]), int(entry["nonzero"]))


def pack_bits(present: torch.Tensor) -> torch.Tensor:
    flat = present.flatten().to(torch.uint8)
    flat = torch.cat([flat, flat.new_zeros((-flat.numel()) % 8)])
    return (flat.view(-1, 8) * _BIT_WEIGHTS).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, count: int) -> torch.Tensor:
    shifts = torch.arange(8, dtype=torch.uint8)
    return ((packed[:, None] >> shifts) & 1).flatten()[:count].bool()


def _worth_masking(tensor: torch.Tensor, nonzero: int) -> bool:
    sparse = nonzero * tensor.element_size() + (tensor.numel() + 7) // 8
    return tensor.is_floating_point() and sparse < tensor.numel() * tensor.element_size()


def encode(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[Mask]]:
    """(tensors to write, masks): sparse tensors split into bitmask and values, on the CPU."""
    stored, masks = {}, []
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        nonzero = int(torch.count_nonzero(tensor))
        if _worth_masking(tensor, nonzero):
            present = tensor != 0
            stored[name + MASK_SUFFIX] = pack_bits(present)
            stored[name + VALUES_SUFFIX] = tensor[present].contiguous()
            masks.append(Mask(name, tuple(tensor.shape), nonzero))
        else:
            stored[name] = tensor
    return stored, masks


def decode(stored: dict[str, torch.Tensor], masks: list[Mask]) -> dict[str, torch.Tensor]:
    """The dense state dict back; TensorFormatError when a mask and its values disagree."""
    state = dict(stored)
    for mask in masks:
        try:
            packed, values = state.pop(mask.tensor + MASK_SUFFIX), state.pop(mask.tensor + VALUES_SUFFIX)
        except KeyError:
            raise TensorFormatError(f"tensor {mask.tensor!r} is listed as masked but its mask or values are missing") from None
        numel = 1
        for size in mask.shape:
            numel *= size
        if packed.dtype != torch.uint8 or packed.numel() != (numel + 7) // 8:
            raise TensorFormatError(f"mask of {mask.tensor!r} has {packed.numel()} bytes, not {(numel + 7) // 8}")
        present = unpack_bits(packed, numel)
        if int(present.sum()) != mask.nonzero or values.numel() != mask.nonzero:
            raise TensorFormatError(
                f"tensor {mask.tensor!r}: mask has {int(present.sum())} ones and {values.numel()} values; plan says {mask.nonzero}"
            )
        dense = values.new_zeros(numel)
        dense[present] = values.flatten()
        state[mask.tensor] = dense.view(mask.shape)
    return state
