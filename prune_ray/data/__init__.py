"""Dataset registry and a device-resident batch loader.

A dataset is loaded once into tensors (normalised, NCHW float32) that live on the trial's device;
batches are slices of a seeded permutation, so the training loop runs no per-sample Python.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator

import torch

from ..registry import Registry


@dataclass(frozen=True)
class DataOptions:
    root: str | None = None  # directory holding the dataset files (torchvision layout)
    download: bool = False  # let torchvision download missing files (needs network)
    val_fraction: float = 0.2  # share of the training split held out for validation
    split_seed: int = 0  # seed of the stratified train/val split (fixed across trials)


@dataclass(frozen=True)
class Dataset:
    name: str
    train_x: torch.Tensor  # (N, C, H, W) float32, normalised
    train_y: torch.Tensor  # (N,) int64
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_x.shape[2]

    def example_inputs(self, batch_size: int = 1) -> torch.Tensor:
        return self.val_x[:batch_size]

    def to(self, device: torch.device | str) -> "Dataset":
        return replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            val_x=self.val_x.to(device),
            val_y=self.val_y.to(device),
        )


_DATASETS: Registry[Callable[[DataOptions], Dataset]] = Registry("dataset")


def register_dataset(fn: Callable[[DataOptions], Dataset]) -> Callable[[DataOptions], Dataset]:
    _DATASETS.add(fn.__name__, fn)
    return fn


def list_datasets() -> list[str]:
    return _DATASETS.names()


def load_dataset(name: str, options: DataOptions = DataOptions()) -> Dataset:
    return _DATASETS.get(name)(options)


def stratified_split(
    labels: torch.Tensor, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val): each class contributes round(val_fraction * count) examples to val."""
    generator = torch.Generator().manual_seed(seed)
    train_parts, val_parts = [], []
    for label in torch.unique(labels):
        idx = torch.nonzero(labels == label).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_val = round(val_fraction * len(idx))
        val_parts.append(idx[:n_val])
        train_parts.append(idx[n_val:])
    return torch.sort(torch.cat(train_parts)).values, torch.sort(torch.cat(val_parts)).values


class BatchLoader:
    """Batches as slices of a seeded permutation of tensors already on the device."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0
    ):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]


from . import digits  # noqa: E402,F401  (registers the built-in datasets)
