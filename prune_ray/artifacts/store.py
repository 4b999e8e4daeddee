"""A pruned model on disk: `<dir>/model.safetensors` (weights, sparse where masked) and
`<dir>/plan.json` (registry model, constructor arguments, input shape, method, what pruning changed,
the masks and the weights' SHA-256), written through the results storage (local, NFS, s3://) and
atomically, the plan last: its presence marks a complete model. Loading never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..baseline import CorruptCheckpointError, load_state
from ..models import create_model
from ..prune import get_method
from ..results.storage import Storage, open_storage
from .architecture import architecture_of
from .tensors import Mask, decode, encode

FORMAT = 1  # bump when the plan's layout changes
PLAN_FILE, WEIGHTS_FILE = "plan.json", "model.safetensors"
SAVE_CHECK_ATOL = 1e-5  # the rebuilt model's outputs against the trial's, when saving (x max(1, |outputs|))


class ArtifactError(CorruptCheckpointError):
    """A saved model that cannot be read or rebuilt; the one-line message names the file."""


@dataclass(frozen=True)
class ModelRecipe:
    """A model string (zoo name, import path, timm:/torchvision:) and its constructor arguments:
    the fresh model pruning started from."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    model_args: dict[str, Any] = field(default_factory=dict)  # a non-zoo factory's keyword arguments

    def create(self) -> nn.Module:
        return create_model(self.name, num_classes=self.num_classes, in_channels=self.in_channels,
                            image_size=self.image_size, model_args=self.model_args)


@dataclass(frozen=True)
class SavedModel:
    uri: str  # the model's directory (what load_pruned takes)
    file_bytes: int  # bytes written: weights and plan


def _plan(recipe: ModelRecipe, method: str, model: nn.Module, example: torch.Tensor) -> dict[str, Any]:
    granularity = get_method(method).granularity
    return {
        "format": FORMAT, "model": asdict(recipe), "input_shape": [1, *example.shape[1:]],
        "method": method, "granularity": granularity,
        "architecture": architecture_of(granularity).describe(recipe.create(), model, example[:1].cpu()),
    }


def rebuild(plan: dict[str, Any], stored: dict[str, torch.Tensor], uri: str) -> nn.Module:
    """The model a plan and its stored tensors describe, in eval mode (errors name the file)."""
    source = f"{uri.rstrip('/')}/{PLAN_FILE}"
    try:
        recipe = ModelRecipe(**plan["model"])
        example = torch.zeros(plan["input_shape"])
        state = decode(stored, [Mask.of(entry) for entry in plan["masks"]])
        model = architecture_of(plan["granularity"]).rebuild(recipe.create(), plan["architecture"], example)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ArtifactError(f"saved model {source} does not rebuild: {type(error).__name__}: {error}") from None
    try:
        return load_state(model, state, f"{uri.rstrip('/')}/{WEIGHTS_FILE}").eval()
    except CorruptCheckpointError as error:  # shapes or names that do not fit the rebuilt model
        raise ArtifactError(str(error)) from None


def save_pruned(storage: Storage, parts: tuple[str, ...], model: nn.Module, recipe: ModelRecipe, method: str,
                example: torch.Tensor) -> SavedModel:
    """Write `model` (pruned by `method` from `recipe`'s model) under storage/<parts...>/; checks
    first that the files rebuild it (same outputs on `example`), so a saved model always loads."""
    plan = _plan(recipe, method, model, example)
    stored, masks = encode(model.state_dict())
    weights = save_safetensors(stored)
    plan.update(masks=[mask.as_dict() for mask in masks], weights_sha256=hashlib.sha256(weights).hexdigest())
    encoded = json.dumps(plan, indent=1).encode()
    _check_rebuilds(plan, load_safetensors(weights), model, example)
    storage.write_bytes_atomic(storage.path(*parts, WEIGHTS_FILE), weights)
    storage.write_bytes_atomic(storage.path(*parts, PLAN_FILE), encoded)  # last: marks a complete model
    return SavedModel(storage.uri_of(*parts), len(weights) + len(encoded))


def _check_rebuilds(plan: dict[str, Any], stored: dict[str, torch.Tensor], model: nn.Module, example: torch.Tensor) -> None:
    rebuilt = rebuild(plan, stored, "(being saved)")  # torch-pruning traces with autograd: not under no_grad
    rebuilt.to(example.device)  # the same device as the trial's model: the same kernels
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected, got = model(example), rebuilt(example)
    finally:
        model.train(was_training)
    scale = max(1.0, float(expected.abs().max()))
    if not torch.allclose(got, expected, atol=SAVE_CHECK_ATOL * scale, rtol=0):
        difference = float((got - expected).abs().max())
        raise ArtifactError(f"the saved {plan['method']} model does not reproduce the trial's outputs (max diff {difference:.3g})")


def read_plan(uri: str) -> dict[str, Any]:
    storage = open_storage(uri)
    source = storage.uri_of(PLAN_FILE)
    try:
        plan = json.loads(storage.read_bytes(storage.path(PLAN_FILE)))
    except (OSError, FileNotFoundError):
        raise ArtifactError(f"saved model {source} does not exist (no complete model in {uri})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"saved model {source} is not valid JSON: {error}") from None
    if not isinstance(plan, dict) or plan.get("format") != FORMAT:
        found = plan.get("format") if isinstance(plan, dict) else type(plan).__name__
        raise ArtifactError(f"saved model {source} has format {found!r}; this prune-ray reads format {FORMAT}")
    return plan


def load_pruned(uri: str) -> nn.Module:
    """The pruned model saved in directory `uri` (a local path or URI, as the `model_uri` column
    gives it), on the CPU, in eval mode. ArtifactError (one line naming the file) when a file is
    missing, corrupt, or does not fit its plan."""
    plan, storage = read_plan(uri), open_storage(uri)
    source = storage.uri_of(WEIGHTS_FILE)
    try:
        weights = storage.read_bytes(storage.path(WEIGHTS_FILE))
    except (OSError, FileNotFoundError):
        raise ArtifactError(f"saved model weights {source} do not exist") from None
    if hashlib.sha256(weights).hexdigest() != plan.get("weights_sha256"):
        raise ArtifactError(f"saved model weights {source} do not match their plan (SHA-256 differs): corrupt or replaced")
    try:
        stored = load_safetensors(weights)
    except SafetensorError as error:
        raise ArtifactError(f"saved model weights {source} are unreadable: {error}") from None
    return rebuild(plan, stored, storage.uri)
