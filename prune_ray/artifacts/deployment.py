"""What a saved model needs to be deployed without prune-ray's source: the input it takes and how a
raw image becomes that input, and what its outputs mean.

Stored in the model's plan.json under "deployment", written by the ONNX export as the model's
metadata_props (one string per field, lists and numbers as JSON), and exposed by load_pruned as
the loaded module's `prune_ray_meta` (None for models saved before prune-ray recorded it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

INPUT_FORMULA = "input = (pixels * pixel_scale - mean[c]) / std[c], float32, NCHW, images at input_shape's H x W"


@dataclass(frozen=True)
class Deployment:
    dataset: str  # the spec's dataset string (registry name, or import path)
    model: str  # the spec's model string the pruned model started from
    input_shape: tuple[int, ...]  # (1, C, H, W): one example; the batch dimension is free
    pixel_scale: float  # raw pixel values -> [0, 1]: 1/255 for 8-bit images, 1/16 for sklearn's digits
    mean: tuple[float, ...]  # per channel, subtracted after scaling (the statistics actually used, computed ones included)
    std: tuple[float, ...]  # per channel, divided by after subtracting the mean
    num_classes: int  # outputs: one logit per class
    class_names: tuple[str, ...] | None  # output index -> class name, where the dataset names its classes
    input_formula: str = INPUT_FORMULA

    def normalise(self, pixels):
        """Raw pixels (an N x C x H x W array, the dataset's own values) -> the model's input (numpy)."""
        import numpy as np

        mean = np.asarray(self.mean, dtype=np.float64).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, dtype=np.float64).reshape(1, -1, 1, 1)
        return ((np.asarray(pixels, dtype=np.float64) * self.pixel_scale - mean) / std).astype(np.float32)

    def as_plan(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_plan(cls, entry: dict[str, Any] | None) -> "Deployment | None":
        if entry is None:
            return None
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items() if k in known}
        return cls(**values)

    def onnx_metadata(self) -> dict[str, str]:
        """ONNX metadata_props: strings as they are, everything else as JSON."""
        return {f"prune_ray.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_onnx_metadata(cls, props: dict[str, str]) -> "Deployment":
        """The Deployment an exported ONNX file's metadata_props describe."""
        entry = {}
        for f in fields(cls):
            value = props[f"prune_ray.{f.name}"]
            entry[f.name] = value if f.type in ("str",) else json.loads(value)
        return cls.from_plan(entry)


def deployment_of(dataset: str, model: str, data) -> Deployment | None:
    """The Deployment of a model trained on `data` (a prune_ray.data.Dataset); None when the
    dataset does not say how its inputs were made."""
    transform = data.transform
    if transform is None:
        return None
    return Deployment(dataset, model, (1, *data.val_x.shape[1:]), transform.pixel_scale, tuple(transform.mean),
                      tuple(transform.std), data.num_classes, transform.class_names)
