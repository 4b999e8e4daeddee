"""Sensitivity scan: per-layer accuracy against ratio, one layer pruned at a time, no fine-tuning.

Cached in the storage per (baseline, method, ratios), drawn as a plot, and turned into per-layer
kept fractions: a layer that keeps its accuracy up to a high ratio gets a small kept fraction
(prune it harder). Scaled to the budget, those are the `sensitivity` schedule.
"""

from __future__ import annotations

import copy
import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch.nn as nn

from ..data import Dataset
from ..prune import Calibration, PruningMethod, ratios_to_counts
from ..results.storage import Storage
from ..train import evaluate

RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TOLERATED_DROP = 0.01  # accuracy a layer may lose, absolute, and still count as insensitive


def scan(model: nn.Module, method: PruningMethod, data: Dataset, calibration: Calibration,
         ratios: tuple[float, ...] = RATIOS) -> pd.DataFrame:
    """Rows (layer, ratio, top1): `model` with only `layer` pruned at `ratio`; ratio 0 is the baseline."""
    layers = method.layers(model, calibration.inputs)
    baseline, _ = evaluate(model, data.val_x, data.val_y)
    rows = []
    for layer in layers:
        rows.append({"layer": layer.name, "ratio": 0.0, "top1": baseline})
        for ratio in ratios:
            counts = ratios_to_counts({layer.name: min(ratio, method.max_ratio)}, [layer], method.max_ratio)
            pruned = method.prune(copy.deepcopy(model), counts, calibration)
            rows.append({"layer": layer.name, "ratio": ratio, "top1": evaluate(pruned, data.val_x, data.val_y)[0]})
    return pd.DataFrame(rows)


def cached_scan(storage: Storage, key: str, model, method, data, calibration, ratios=RATIOS) -> pd.DataFrame:
    """The scan from `<storage>/sensitivity/<key>-<method>.parquet`, computed and stored if absent."""
    path = storage.path("sensitivity", f"{key}-{method.name}.parquet")
    if storage.exists(path):
        table = pq.read_table(io.BytesIO(storage.read_bytes(path)))
        frame = table.to_pandas()
        if sorted(set(frame["ratio"]) - {0.0}) == sorted(ratios):
            return frame
    frame = scan(model, method, data, calibration, ratios)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    storage.write_bytes_atomic(path, buffer.getvalue())
    return frame


def densities_from_scan(frame: pd.DataFrame, max_ratio: float, tolerated_drop: float = TOLERATED_DROP) -> dict[str, float]:
    """Per layer, the kept fraction it tolerates alone: 1 minus the largest scanned ratio whose
    accuracy stays within `tolerated_drop` of the baseline (at least 1 - max_ratio). The
    sensitivity schedule scales these to the budget in log space (plan.densities): a layer that took a
    ratio of 0.9 alone keeps 0.1 / 0.9 of what a layer that took only 0.1 keeps."""
    keep = {}
    for layer, rows in frame.groupby("layer", sort=False):
        baseline = float(rows.loc[rows["ratio"] == 0.0, "top1"].iloc[0])
        fine = rows[rows["top1"] >= baseline - tolerated_drop]["ratio"]
        keep[layer] = max(1 - float(fine.max()), 1 - max_ratio)
    return keep


def plot(frame: pd.DataFrame, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for layer, rows in frame.groupby("layer", sort=False):
        axis.plot(rows["ratio"], 100 * rows["top1"], marker="o", markersize=3, label=layer)
    axis.set_xlabel("ratio pruned in this layer alone")
    axis.set_ylabel("validation top-1 (%), no fine-tuning")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=6, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
