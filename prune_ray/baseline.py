"""Content-addressed baseline store: train a baseline once, load it everywhere after.

A baseline lives at `<storage>/baselines/<key>/` where key hashes everything that determines its
weights (model, dataset, data options, training recipe, seed). It holds `model.safetensors` and
`meta.json`; meta.json is written last, so its presence marks a complete entry. Loading never
unpickles code (safetensors, or torch.load(weights_only=True) for user checkpoints).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .data import DataOptions, Dataset
from .models import create_model
from .results.storage import Storage
from .train import TrainRecipe, evaluate, train

STORE_FORMAT = 1  # bump when the stored layout or training semantics change


class CorruptCheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the model; the message names it."""


@dataclass(frozen=True)
class BaselineConfig:
    model: str
    dataset: str
    data: DataOptions
    recipe: TrainRecipe
    seed: int
    model_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of a non-zoo model's factory

    @property
    def key(self) -> str:
        identity = {"format": STORE_FORMAT, **dataclasses.asdict(self)}
        identity["data"].pop("download")  # downloading or not yields the same files
        identity["data"].pop("root")  # where the files are does not change them
        for incidental in ("loader", "workers"):  # device or streaming loader: the same batches
            identity["data"].pop(incidental, None)
        for unset in ("image_size", "mean", "std", "train_limit"):  # unset options: keys from before them stay valid
            if identity["data"].get(unset, 0) is None:
                identity["data"].pop(unset)
        identity["recipe"].pop("compile")  # compiled or eager step: how fast, not what is learnt
        for unused in ("distill", "distill_temperature"):  # a baseline has no teacher (spec: distill 0)
            identity["recipe"].pop(unused)
        if not self.model_args:  # keys from before model_args existed stay valid
            identity.pop("model_args")
        blob = json.dumps(identity, sort_keys=True, default=str).encode()
        # a directory name: an import path's slashes and colon become '_' (the hash tells them apart)
        model = re.sub(r"[^A-Za-z0-9_.-]", "_", self.model.rpartition("/")[2])[-48:]
        return f"{model}-{self.dataset}-{hashlib.sha256(blob).hexdigest()[:16]}"


@dataclass(frozen=True)
class Baseline:
    model: nn.Module
    key: str
    top1: float  # validation top-1 of the stored weights
    top5: float
    test_top1: float  # top-1 on the dataset's test split (reported, never used for choices)
    train_seconds: float  # time it took to train (when it was trained)
    trained_now: bool  # True when this call trained it, False when it was loaded


def build_model(config: BaselineConfig, data: Dataset) -> nn.Module:
    return create_model(
        config.model, num_classes=data.num_classes, in_channels=data.in_channels, image_size=data.image_size,
        model_args=config.model_args,
    )


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise CorruptCheckpointError(f"checkpoint {source} does not fit the model: {first_line}") from None
    return model


def load_checkpoint_file(model: nn.Module, path: str) -> nn.Module:
    """Load a user's checkpoint (.safetensors, or a torch file of tensors) without unpickling code."""
    try:
        if path.endswith(".safetensors"):
            with open(path, "rb") as handle:
                state = load_safetensors(handle.read())
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
                state = state["state_dict"]
    except FileNotFoundError:
        raise CorruptCheckpointError(f"checkpoint {path} does not exist") from None
    except pickle.UnpicklingError:  # weights_only refuses anything but tensors and plain containers
        raise CorruptCheckpointError(
            f"checkpoint {path} pickles code, not only tensors (torch.load weights_only refuses it): save model.state_dict()"
        ) from None
    except Exception as error:  # any unreadable file: name it, never fall back silently
        first = (str(error).strip().splitlines() or [""])[0]
        raise CorruptCheckpointError(f"checkpoint {path} is unreadable: {type(error).__name__}: {first}") from None
    if not isinstance(state, dict):
        raise CorruptCheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    return load_state(model, state, path)


class BaselineStore:
    def __init__(self, storage: Storage):
        self.storage = storage

    def _path(self, key: str, name: str) -> str:
        return self.storage.path("baselines", key, name)

    def has(self, config: BaselineConfig) -> bool:
        return self.storage.exists(self._path(config.key, "meta.json"))

    def load(self, config: BaselineConfig, data: Dataset) -> Baseline:
        key = config.key
        weights_uri = self.storage.uri_of("baselines", key, "model.safetensors")
        try:
            meta = json.loads(self.storage.read_bytes(self._path(key, "meta.json")))
            state = load_safetensors(self.storage.read_bytes(self._path(key, "model.safetensors")))
        except (SafetensorError, json.JSONDecodeError, OSError, FileNotFoundError) as error:
            raise CorruptCheckpointError(f"baseline checkpoint {weights_uri} is corrupt: {error}") from None
        model = load_state(build_model(config, data), state, weights_uri)
        return Baseline(model, key, meta["top1"], meta["top5"], meta["test_top1"], meta["train_seconds"], trained_now=False)

    def train_and_save(
        self,
        config: BaselineConfig,
        data: Dataset,
        train_fn: Callable[..., object] = train,
    ) -> Baseline:
        torch.manual_seed(config.seed)
        model = build_model(config, data).to(data.device)
        began = time.perf_counter()
        train_fn(model, data, config.recipe, seed=config.seed)
        seconds = time.perf_counter() - began
        top1, top5 = evaluate(model, data.val_x, data.val_y)
        test_top1, _ = evaluate(model, data.test_x, data.test_y)
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
        self.storage.write_bytes_atomic(self._path(config.key, "model.safetensors"), save_safetensors(state))
        meta = {
            "key": config.key,
            "config": dataclasses.asdict(config),
            "top1": top1,
            "top5": top5,
            "test_top1": test_top1,
            "train_seconds": seconds,
            "torch_version": torch.__version__,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.storage.write_bytes_atomic(self._path(config.key, "meta.json"), json.dumps(meta, indent=2).encode())
        return Baseline(model, config.key, top1, top5, test_top1, seconds, trained_now=True)

    def get_or_train(
        self,
        config: BaselineConfig,
        data: Dataset,
        *,
        retrain_corrupt: bool = False,
        train_fn: Callable[..., object] = train,
    ) -> Baseline:
        """Load the baseline if stored, else train and store it. Concurrent local callers are
        serialised by a file lock, so one trains and the others load its result."""
        with self._lock(config.key):
            if self.has(config):
                try:
                    return self.load(config, data)
                except CorruptCheckpointError:
                    if not retrain_corrupt:
                        raise
            return self.train_and_save(config, data, train_fn)

    def _lock(self, key: str):
        if not self.storage.is_local:
            # Object stores have no locks; the sweep driver trains each baseline once before trials.
            import contextlib

            return contextlib.nullcontext()
        from filelock import FileLock

        directory = self._path(key, "")
        self.storage.fs.create_dir(directory, recursive=True)
        return FileLock(self._path(key, ".lock"))
