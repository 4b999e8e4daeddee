"""sklearn's bundled 8x8 handwritten digits (1797 images): works offline, the default dataset.

It has no official test split, so a fixed stratified 20% (seed 0) is held out as the test split;
the validation split is then taken from the rest like for every other dataset.
"""

from __future__ import annotations

import torch

from . import DataOptions, Dataset, register_dataset, split_and_normalise, stratified_split

TEST_FRACTION = 0.2


@register_dataset
def digits(options: DataOptions) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # pixels 0..16
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, seed=0)
    # statistics of the digits training images (fixed, so every split normalises alike)
    return split_and_normalise(
        "digits", images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], options,
        mean=[0.3059], std=[0.3765], augment=False, pixel_scale=1 / 16.0, class_names=[str(n) for n in bunch.target_names],
    )
