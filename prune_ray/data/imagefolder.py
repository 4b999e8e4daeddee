"""`dataset: imagefolder`: a user's images in torchvision's ImageFolder layout.

`data.root` holds `train/<class>/<image>` and optionally `val/` and `test/` with the same class
folders (class index = position in the sorted folder names). Images are read with PIL as RGB,
resized to `data.image_size` square (bilinear) and kept as float tensors in [0, 1], normalised per
channel by `data.mean`/`data.std` or, when those are not given, by the training split's own
statistics. Without `val/` the validation split is the seeded stratified part of `train/`
(`data.val_fraction`, `data.split_seed`), as for every dataset; without `test/` a fixed 20%
(seed 0) of `train/` is held out as the test split first, as for digits. Training augments as
CIFAR does (4-pixel padded random crop, horizontal flip).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from . import BadDatasetError, DataOptions, Dataset, InputTransform, register_dataset, stratified_split

TEST_FRACTION = 0.2  # of train/ held out as the test split when there is no test/
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _classes(split_dir: str) -> dict[str, list[str]]:
    """Class name -> its image files (sorted); every class folder must hold at least one image."""
    if not os.path.isdir(split_dir):
        raise BadDatasetError(f"imagefolder: {split_dir} is not a directory (expected <root>/train/<class>/<image>)")
    names = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())
    if not names:
        raise BadDatasetError(f"imagefolder: {split_dir} has no class folders (expected {split_dir}/<class>/<image>)")
    classes = {}
    for name in names:
        folder = os.path.join(split_dir, name)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(EXTENSIONS))
        if not files:
            raise BadDatasetError(f"imagefolder: class folder {folder} holds no images ({', '.join(EXTENSIONS)})")
        classes[name] = [os.path.join(folder, f) for f in files]
    return classes


def _read(path: str, size: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except Exception as error:  # noqa: BLE001  (any unreadable file, named)
        raise BadDatasetError(f"imagefolder: image {path} is unreadable: {type(error).__name__}: {error}") from None


def _load_split(split_dir: str, classes: dict[str, list[str]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, size, size) float images in [0, 1] and their class indices."""
    files = [(path, index) for index, name in enumerate(sorted(classes)) for path in classes[name]]
    pixels = np.stack([_read(path, size) for path, _ in files])
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
    return images, torch.tensor([index for _, index in files], dtype=torch.int64)


def _same_classes(root: str, split: str, train: dict, other: dict) -> None:
    if sorted(train) != sorted(other):
        missing = sorted(set(train) - set(other)) or ["-"]
        extra = sorted(set(other) - set(train)) or ["-"]
        raise BadDatasetError(
            f"imagefolder: {os.path.join(root, split)} has other classes than {os.path.join(root, 'train')} "
            f"(missing: {', '.join(missing)}; extra: {', '.join(extra)})"
        )


def check_tree(options: DataOptions) -> dict[str, dict[str, list[str]]]:
    """The splits present and their classes' files; BadDatasetError naming the path otherwise."""
    root = os.path.abspath(os.path.expanduser(options.root or ""))
    splits = {"train": _classes(os.path.join(root, "train"))}
    for split in ("val", "test"):
        if os.path.isdir(os.path.join(root, split)):
            splits[split] = _classes(os.path.join(root, split))
            _same_classes(root, split, splits["train"], splits[split])
    return splits


def _statistics(images: torch.Tensor, options: DataOptions) -> tuple[torch.Tensor, torch.Tensor]:
    if options.mean is not None and options.std is not None:
        mean, std = torch.tensor(options.mean), torch.tensor(options.std)
    else:  # per channel over every pixel of the training split
        mean, std = images.mean(dim=(0, 2, 3)), images.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return mean[None, :, None, None], std[None, :, None, None]


@register_dataset
def imagefolder(options: DataOptions) -> Dataset:
    root = os.path.abspath(os.path.expanduser(options.root or ""))
    splits = check_tree(options)
    size = options.image_size
    train_x, train_y = _load_split(os.path.join(root, "train"), splits["train"], size)
    if "test" in splits:
        test_x, test_y = _load_split(os.path.join(root, "test"), splits["test"], size)
    else:
        keep, held = stratified_split(train_y, TEST_FRACTION, seed=0)
        train_x, train_y, test_x, test_y = train_x[keep], train_y[keep], train_x[held], train_y[held]
    if "val" in splits:
        val_x, val_y = _load_split(os.path.join(root, "val"), splits["val"], size)
    else:
        keep, held = stratified_split(train_y, options.val_fraction, options.split_seed)
        train_x, train_y, val_x, val_y = train_x[keep], train_y[keep], train_x[held], train_y[held]
    mean, std = _statistics(train_x, options)
    return Dataset(
        name="imagefolder", train_x=(train_x - mean) / std, train_y=train_y, val_x=(val_x - mean) / std, val_y=val_y,
        test_x=(test_x - mean) / std, test_y=test_y, num_classes=len(splits["train"]), augment=True,
        transform=InputTransform(1 / 255.0, tuple(mean.flatten().tolist()), tuple(std.flatten().tolist()),
                                 tuple(sorted(splits["train"]))),  # the statistics applied, computed ones included
    )
