"""sklearn's bundled 8x8 handwritten digits (1797 images): works offline, the default dataset."""

from __future__ import annotations

import torch

from . import DataOptions, Dataset, register_dataset, stratified_split


@register_dataset
def digits(options: DataOptions) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # pixels 0..16
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    train_idx, val_idx = stratified_split(labels, options.val_fraction, options.split_seed)
    # Normalise with statistics of the training split only, so validation stays unseen.
    mean, std = images[train_idx].mean(), images[train_idx].std()
    images = (images - mean) / std
    return Dataset(
        name="digits",
        train_x=images[train_idx],
        train_y=labels[train_idx],
        val_x=images[val_idx],
        val_y=labels[val_idx],
        num_classes=10,
    )
