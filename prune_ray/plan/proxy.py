"""How far a pruned copy of the baseline is from the baseline, without fine-tuning: the proxy the
`knapsack` schedule's sensitivity curves and the `race` schedule's first round rank by (lower:
closer). Forward passes only, on a few hundred examples.

Two proxies, both measured on every copy (the race records both, so the benchmark can compare them):

- `bn_loss`: cross-entropy on PROXY_EXAMPLES validation examples after BatchNorm recalibration
  (EagleEye's adaptive BN: without it a pruned network's stored statistics no longer fit and its
  accuracy carries almost no signal); a model without BatchNorm is scored as it is.
- `kl`: KL divergence of the copy's output distribution from the baseline's, mean over
  PROXY_EXAMPLES training examples (after the same recalibration where the model has BatchNorm).

`search.proxy: auto` takes `bn_loss` for a model with BatchNorm and `kl` otherwise (the choice
benchmarks/search_quality.py reports the rank correlations for).
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import Dataset
from ..results.storage import Storage
from ..train import RECALIBRATION_EXAMPLES, recalibrate_batchnorm

PROXIES = ("auto", "bn_loss", "kl")
MEASURED = ("bn_loss", "kl")  # what `Scorer.scores` returns, whatever search.proxy says
PROXY_EXAMPLES = 256  # examples each proxy is measured on (validation for bn_loss, training for kl)
BATCH = 256  # examples per forward pass

# (name, compute) -> a cached frame: computed once per baseline and stored (None: computed every time)
FrameCache = Callable[[str, Callable[[], pd.DataFrame]], pd.DataFrame]


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())


def resolved_proxy(proxy: str, model: nn.Module) -> str:
    """search.proxy with auto resolved for this model: bn_loss with BatchNorm, kl without."""
    if proxy not in PROXIES:
        raise ValueError(f"search.proxy: unknown value {proxy!r}; allowed: {', '.join(PROXIES)}")
    if proxy != "auto":
        return proxy
    return "bn_loss" if has_batchnorm(model) else "kl"


@torch.no_grad()
def _log_probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.cat([F.log_softmax(model(x[i:i + BATCH]).float(), dim=1) for i in range(0, len(x), BATCH)])
    model.train(was_training)
    return out


@dataclass(frozen=True)
class Scorer:
    """The baseline's reference outputs and the examples every proxy is measured on."""

    model: nn.Module  # the baseline, never changed
    kl_inputs: torch.Tensor  # training examples the KL is averaged over
    loss_x: torch.Tensor  # validation examples the loss is averaged over
    loss_y: torch.Tensor
    recalibration: torch.Tensor  # training examples for BatchNorm recalibration
    # the baseline's log-probabilities on kl_inputs, after the same BatchNorm recalibration as every
    # copy gets (so the KL measures what pruning changed, not how stale the stored statistics were)
    dense: torch.Tensor
    proxy: str  # search.proxy resolved for this model: what `damage` returns
    cache: FrameCache | None = None  # the baseline's sensitivity curves, stored once

    @classmethod
    def of(cls, model: nn.Module, data: Dataset, proxy: str = "auto", cache: FrameCache | None = None) -> "Scorer":
        kl_inputs = data.train_head(PROXY_EXAMPLES)[0]
        loss_x, loss_y = data.val_x[:PROXY_EXAMPLES], data.val_y[:PROXY_EXAMPLES]
        recalibration = data.train_head(RECALIBRATION_EXAMPLES)[0]
        reference = copy.deepcopy(model)
        recalibrate_batchnorm(reference, recalibration)
        return cls(model, kl_inputs, loss_x, loss_y, recalibration, _log_probs(reference, kl_inputs),
                   resolved_proxy(proxy, model), cache)

    @torch.no_grad()
    def scores(self, pruned: nn.Module) -> dict[str, float]:
        """Both proxies of `pruned` (a pruned copy; its BatchNorm statistics are re-estimated)."""
        recalibrate_batchnorm(pruned, self.recalibration)
        log_probs = _log_probs(pruned, self.kl_inputs)
        kl = F.kl_div(log_probs, self.dense, log_target=True, reduction="batchmean")
        was_training = pruned.training
        pruned.eval()
        losses = [F.cross_entropy(pruned(self.loss_x[i:i + BATCH]).float(), self.loss_y[i:i + BATCH], reduction="sum")
                  for i in range(0, len(self.loss_x), BATCH)]
        pruned.train(was_training)
        return {"bn_loss": float(sum(losses)) / len(self.loss_x), "kl": max(float(kl), 0.0)}

    def damage(self, pruned: nn.Module) -> float:
        """The resolved proxy of `pruned` (lower: closer to the baseline)."""
        return self.scores(pruned)[self.proxy]

    def dense_scores(self) -> dict[str, float]:
        """Both proxies of the baseline itself (kl 0)."""
        return self.scores(copy.deepcopy(self.model))

    def cached(self, name: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        return compute() if self.cache is None else self.cache(name, compute)


def storage_cache(storage: Storage, baseline_key: str) -> FrameCache:
    """Frames cached as `<storage>/sensitivity/<baseline_key>-<name>.parquet` (computed if absent)."""

    def cache(name: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        path = storage.path("sensitivity", f"{baseline_key}-{name}.parquet")
        if storage.exists(path):
            return pq.read_table(io.BytesIO(storage.read_bytes(path))).to_pandas()
        frame = compute()
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
        storage.write_bytes_atomic(path, buffer.getvalue())
        return frame

    return cache
