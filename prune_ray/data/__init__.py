"""Dataset registry and a device-resident batch loader.

A dataset is loaded once into tensors (normalised, NCHW float32) that live on the trial's device;
batches are slices of a seeded permutation and augmentation runs on whole batches on that device,
so the training loop runs no per-sample Python. The validation split is a fixed, seeded, stratified
part of the training files (used for every choice); the test split is the dataset's own test files,
only ever reported.
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
    # train on at most this many training examples, a seeded random subset of the training split
    # (smoke runs, quick looks); None: all. Validation and test splits stay whole.
    train_limit: int | None = None
    # imagefolder: images resized to image_size x image_size pixels (required there)
    image_size: int | None = None
    # imagefolder: per-channel normalisation (RGB, images in [0, 1]); None: computed from the training split
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    # training batches: "device" (the dataset on the trial's device, batches sliced there), "stream"
    # (a DataLoader from host memory with workers, pinned), "auto" (stream when the dataset's tensors
    # exceed STREAM_FRACTION of the device's memory)
    loader: str = "auto"
    workers: int = 2  # stream loader: DataLoader worker processes (0: in the training process)


@dataclass(frozen=True)
class InputTransform:
    """How a raw image becomes the model's input, as applied here (a deployed model needs the same):
    input = (pixels * pixel_scale - mean[c]) / std[c], NCHW float32; pixels as the dataset's files
    hold them (0..255 for 8-bit images, 0..16 for sklearn's digits)."""

    pixel_scale: float  # raw pixel values -> [0, 1]
    mean: tuple[float, ...]  # per channel, after scaling (computed from the training split where the spec gives none)
    std: tuple[float, ...]
    class_names: tuple[str, ...] | None = None  # label index -> name, where the dataset has names


@dataclass(frozen=True)
class Dataset:
    name: str
    train_x: torch.Tensor  # (N, C, H, W) float32, normalised
    train_y: torch.Tensor  # (N,) int64
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    augment: bool = False  # random crop (4-pixel zero padding) + horizontal flip while training
    loader: str = "device"  # which loader feeds training (see data.loaders): "device" or "stream"
    workers: int = 0  # stream loader's DataLoader worker processes
    transform: InputTransform | None = None  # raw pixels -> train_x's values (None: not known)

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_x.shape[2]

    @property
    def device(self) -> torch.device:
        """Where the model trains: the evaluation splits are always there."""
        return self.val_x.device

    def example_inputs(self, batch_size: int = 1) -> torch.Tensor:
        return self.val_x[:batch_size]

    def train_head(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n training examples and labels on the device (calibration, BatchNorm statistics)."""
        return self.train_x[:n].to(self.device), self.train_y[:n].to(self.device)

    def to(self, device: torch.device | str) -> "Dataset":
        return self.placed(torch.device(device), "device", 0)

    def placed(self, device: torch.device, loader: str, workers: int) -> "Dataset":
        """On `device` for `loader`: "stream" keeps the training split in host memory (pinned for
        CUDA copies) and moves only the evaluation splits; "device" moves everything."""
        on_host = loader == "stream"
        pin = on_host and device.type == "cuda"

        def train_split(t: torch.Tensor) -> torch.Tensor:
            return (t.pin_memory() if pin else t.cpu()) if on_host else t.to(device)

        return replace(
            self, train_x=train_split(self.train_x), train_y=train_split(self.train_y),
            val_x=self.val_x.to(device), val_y=self.val_y.to(device),
            test_x=self.test_x.to(device), test_y=self.test_y.to(device), loader=loader, workers=workers,
        )


_DATASETS: Registry[Callable[[DataOptions], Dataset]] = Registry("dataset")


def register_dataset(fn: Callable[[DataOptions], Dataset]) -> Callable[[DataOptions], Dataset]:
    _DATASETS.add(fn.__name__, fn)
    return fn


def list_datasets() -> list[str]:
    return _DATASETS.names()


def load_dataset(name: str, options: DataOptions = DataOptions()) -> Dataset:
    data = _DATASETS.get(name)(options)
    if options.train_limit is None or options.train_limit >= len(data.train_y):
        return data
    generator = torch.Generator().manual_seed(options.split_seed)
    chosen = torch.sort(torch.randperm(len(data.train_y), generator=generator)[: options.train_limit]).values
    return replace(data, train_x=data.train_x[chosen], train_y=data.train_y[chosen])


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


def crop_flip(images: torch.Tensor, offsets: torch.Tensor, flip: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Crop after zero padding at (row, col) `offsets` (2 x n, in [0, 2 * padding]) and mirror where
    `flip` (n booleans) holds: a whole batch on its device, the draws already there."""
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    rows = (offsets[0][:, None] + torch.arange(height, device=images.device))[:, None, :, None]
    cols = (offsets[1][:, None] + torch.arange(width, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    cropped = padded[batch, channel, rows, cols]
    return torch.where(flip[:, None, None, None], cropped.flip(3), cropped)


def draw_crop_flip(n: int, generator: torch.Generator, device: torch.device, padding: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """An epoch's crop offsets (2 x n) and flips (n), drawn on the CPU generator (seeded alike on
    every device) and copied to `device` once: a copy per batch would wait for the GPU each time."""
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return offsets.to(device), flip.to(device)


class BatchLoader:
    """Batches as slices of a seeded permutation of tensors already on the device."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        augment: bool = False,
    ):
        self.x, self.y, self.batch_size, self.shuffle, self.augment = x, y, batch_size, shuffle, augment
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        if self.augment:
            offsets, flip = draw_crop_flip(n, self.generator, self.x.device)
        for start in range(0, n, self.batch_size):
            batch = slice(start, start + self.batch_size)
            inputs = self.x[order[batch]]
            if self.augment:
                inputs = crop_flip(inputs, offsets[:, batch], flip[batch])
            yield inputs, self.y[order[batch]]


def split_and_normalise(
    name: str,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    options: DataOptions,
    mean: list[float],
    std: list[float],
    augment: bool,
    pixel_scale: float,
    class_names: list[str] | None = None,
) -> Dataset:
    """Float images in [0, 1] (N, C, H, W; the raw pixels times `pixel_scale`) -> a Dataset with the
    seeded validation split and the dataset's standard per-channel normalisation."""
    train_idx, val_idx = stratified_split(train_labels, options.val_fraction, options.split_seed)
    mean_t = torch.tensor(mean, dtype=torch.float32)[None, :, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[None, :, None, None]
    train_images = (train_images - mean_t) / std_t
    return Dataset(
        name=name,
        train_x=train_images[train_idx],
        train_y=train_labels[train_idx],
        val_x=train_images[val_idx],
        val_y=train_labels[val_idx],
        test_x=(test_images - mean_t) / std_t,
        test_y=test_labels,
        num_classes=int(max(train_labels.max(), test_labels.max())) + 1,
        augment=augment,
        transform=InputTransform(pixel_scale, tuple(mean), tuple(std), tuple(class_names) if class_names else None),
    )


class DatasetFilesMissingError(FileNotFoundError):
    """Dataset files are absent and downloading is off; the message says where to put which files."""


class BadDatasetError(ValueError):
    """Dataset files that cannot make a dataset (an image folder without classes, an empty class,
    an unreadable image, splits with different classes); the one-line message names the path."""


from . import digits, imagefolder, torchvision_sets  # noqa: E402,F401  (registers the built-in datasets)
