"""Spec checks of what a sweep prunes and trains on: the model string and its `model_args`, the
dataset and its data options (kept out of `spec` so that module stays one responsibility).

Errors are ValueErrors with one line naming the key and the bad value; `spec.validate` turns them
into SpecErrors. Building the model and reading the images happen later, in `trial_setup.preflight`,
still before Ray starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .data import DataOptions, list_datasets
from .data.imagefolder import check_tree
from .data.loaders import LOADERS
from .models import check_model

if TYPE_CHECKING:
    from .spec_types import SweepSpec
IMAGEFOLDER_ONLY = ("image_size", "mean", "std")  # data options only dataset imagefolder reads


def check_inputs(spec: "SweepSpec") -> None:
    check_model(spec.model, spec.model_args)
    if spec.dataset not in list_datasets():
        raise ValueError(f"dataset: unknown value {spec.dataset!r}; allowed: {', '.join(list_datasets())}")
    check_data(spec.dataset, spec.data)


def check_data(dataset: str, data: DataOptions) -> None:
    if data.loader not in LOADERS:
        raise ValueError(f"data.loader: unknown value {data.loader!r}; allowed: {', '.join(LOADERS)}")
    if data.workers < 0:
        raise ValueError(f"data.workers: {data.workers!r} must be >= 0")
    if dataset != "imagefolder":
        for key in IMAGEFOLDER_ONLY:
            if {"image_size": data.image_size, "mean": data.mean, "std": data.std}[key] is not None:
                raise ValueError(f"data.{key}: only read by dataset 'imagefolder', not {dataset!r}")
        return
    if not data.root:
        raise ValueError("data.root: dataset 'imagefolder' needs the folder holding train/ (and optional val/, test/)")
    if data.image_size is None or data.image_size < 1:
        raise ValueError(f"data.image_size: dataset 'imagefolder' needs the image size in pixels (> 0), got {data.image_size!r}")
    if (data.mean is None) != (data.std is None):
        raise ValueError("data.mean, data.std: give both (per channel) or neither (computed from the training split)")
    if data.mean is not None:
        if len(data.mean) != 3 or len(data.std) != 3:
            raise ValueError(f"data.mean, data.std: one value per RGB channel (3 each), got {list(data.mean)}, {list(data.std)}")
        if min(data.std) <= 0:
            raise ValueError(f"data.std: {list(data.std)} must be > 0")
    check_tree(data)  # folders and classes; the images themselves are read in the preflight
