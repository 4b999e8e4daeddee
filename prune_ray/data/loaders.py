"""Training batches, two ways, one semantics (`data.loader`):

- `device`: the whole dataset on the trial's device, batches sliced from a seeded permutation and
  augmented there (`BatchLoader`): no per-sample Python, the fast path for data that fits;
- `stream`: the training split stays in host memory (pinned on CUDA) and a
  `torch.utils.data.DataLoader` with `data.workers` worker processes cuts and augments the
  batches, copied to the device as they come: for data that does not fit on the device;
- `auto`: `stream` when the dataset's tensors exceed STREAM_FRACTION of the trial's share of the
  device's memory (`resources.gpu` x the card's memory: trials and netadapt's candidate tasks with
  a fractional GPU each hold their own copy in their own process, at most 1 / resources.gpu of them
  per card, so each copy must fit its share); on the CPU the data are in host memory either way, so
  `device`.

Both draw the epoch's permutation and then its crop offsets and flips from one CPU generator seeded
alike, and crop and flip with the same `crop_flip`, so for a seed they yield the same batches.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from ..registry import Registry
from . import BatchLoader, Dataset, crop_flip, draw_crop_flip

LOADERS = ("auto", "device", "stream")
STREAM_FRACTION = 0.25  # auto: stream when the dataset's bytes exceed this fraction of the trial's device memory


def dataset_bytes(data: Dataset) -> int:
    tensors = (data.train_x, data.train_y, data.val_x, data.val_y, data.test_x, data.test_y)
    return sum(t.numel() * t.element_size() for t in tensors)


def resolve_loader(requested: str, data: Dataset, device: torch.device, gpu_share: float = 1.0,
                   card_memory: int | None = None) -> str:
    """The loader that runs: the spec's choice, or for `auto` the one the data's size calls for on
    the trial's `gpu_share` (resources.gpu, capped at 1) of a card of `card_memory` bytes (None:
    the device's own)."""
    if requested != "auto":
        return requested
    if device.type != "cuda":
        return "device"
    if card_memory is None:
        card_memory = torch.cuda.get_device_properties(device).total_memory
    share = min(gpu_share, 1.0) * card_memory
    return "stream" if dataset_bytes(data) > STREAM_FRACTION * share else "device"


class _EpochOrder(torch.utils.data.Sampler):
    """Yields one epoch's batches as (indices, crop offsets, flips), drawn in the main process from
    the seeded generator in BatchLoader's order (permutation, then augmentation draws)."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, augment: bool, generator: torch.Generator):
        self.n, self.batch_size, self.shuffle, self.augment, self.generator = n, batch_size, shuffle, augment, generator

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        offsets, flip = draw_crop_flip(self.n, self.generator, torch.device("cpu")) if self.augment else (None, None)
        for start in range(0, self.n, self.batch_size):
            batch = slice(start, start + self.batch_size)
            yield order[batch], None if offsets is None else offsets[:, batch], None if flip is None else flip[batch]


class _Batches(torch.utils.data.Dataset):
    """A batch from its key: images gathered (and cropped, flipped) in a worker process."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __getitem__(self, key):
        indices, offsets, flip = key
        inputs = self.x[indices]
        if offsets is not None:
            inputs = crop_flip(inputs, offsets, flip)
        return inputs, self.y[indices]


class StreamLoader:
    """Batches from host-memory tensors through a DataLoader (workers, pinned memory on CUDA)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0,
                 augment: bool = False, device: torch.device = torch.device("cpu"), workers: int = 2):
        self.device = device
        generator = torch.Generator(device="cpu").manual_seed(seed)
        self.order = _EpochOrder(len(x), batch_size, shuffle, augment, generator)
        self.loader = torch.utils.data.DataLoader(
            _Batches(x, y), batch_size=None, sampler=self.order, num_workers=workers,
            pin_memory=device.type == "cuda", persistent_workers=workers > 0,
        )

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for inputs, targets in self.loader:
            yield inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)


# (data, batch size, seed) -> the training split's shuffled, augmented batches on data.device
LoaderFactory = Callable[[Dataset, int, int], object]
_LOADERS: Registry[LoaderFactory] = Registry("data loader")
_LOADERS.add("device", lambda data, batch_size, seed: BatchLoader(
    data.train_x, data.train_y, batch_size, shuffle=True, seed=seed, augment=data.augment))
_LOADERS.add("stream", lambda data, batch_size, seed: StreamLoader(
    data.train_x, data.train_y, batch_size, shuffle=True, seed=seed, augment=data.augment, device=data.device,
    workers=data.workers))


def training_batches(data: Dataset, batch_size: int, seed: int):
    """The training loop's batches, from the loader the dataset was placed for (`Dataset.loader`)."""
    return _LOADERS.get(data.loader)(data, batch_size, seed)
