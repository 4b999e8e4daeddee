"""A pruned model on disk: its weights and `<dir>/plan.json` (registry model, constructor arguments,
input shape, method, what pruning changed, the weights' file and SHA-256), written through the
results storage (local, NFS, s3://) and atomically, the plan last: its presence marks a complete
model. Loading never unpickles anything.

The plan also carries what deployment needs ("deployment": input shape, the normalisation applied,
classes; artifacts.deployment), exposed by load_pruned as the module's `prune_ray_meta`.

The weights are `model.safetensors` (float, sparse where masked; plan format 1, with its mask list)
or, for a quantised model, `model.encoded` (codes, relative indices, entropy coded:
prune_ray.quantize.encoding; plan format 2, with the quantiser's name).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..baseline import CorruptCheckpointError, load_state
from ..models import create_model
from ..prune import get_method
from ..quantize import QuantizedTensor
from ..quantize.encoding import EncodingError, decode_model, encode_model
from ..results.storage import Storage, open_storage
from .architecture import architecture_of
from .deployment import Deployment
from .tensors import Mask, decode, encode

FORMAT, ENCODED_FORMAT = 1, 2  # plan layouts: safetensors weights; encoded quantised weights
PLAN_FILE, WEIGHTS_FILE, ENCODED_FILE = "plan.json", "model.safetensors", "model.encoded"
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


@dataclass(frozen=True)
class ModelFiles:
    """A model's files in memory, checked to rebuild it, in the order they are written (plan last)."""

    files: dict[str, bytes]

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.files.values())


# (plan, the weights file's bytes) -> the dense state dict it holds
StateReader = Callable[[dict[str, Any], bytes], dict[str, torch.Tensor]]


def _safetensors_state(plan: dict[str, Any], weights: bytes) -> dict[str, torch.Tensor]:
    return decode(load_safetensors(weights), [Mask.of(entry) for entry in plan["masks"]])


def _encoded_state(plan: dict[str, Any], weights: bytes) -> dict[str, torch.Tensor]:
    return decode_model(weights).state


_READERS: dict[str, StateReader] = {WEIGHTS_FILE: _safetensors_state, ENCODED_FILE: _encoded_state}


def _plan(recipe: ModelRecipe, method: str, model: nn.Module, example: torch.Tensor) -> dict[str, Any]:
    granularity = get_method(method).granularity
    return {
        "format": FORMAT, "model": asdict(recipe), "input_shape": [1, *example.shape[1:]],
        "method": method, "granularity": granularity,
        "architecture": architecture_of(granularity).describe(recipe.create(), model, example[:1].cpu()),
    }


def weights_file(plan: dict[str, Any]) -> str:
    """The file a plan's weights are in (format 1 plans name none: model.safetensors)."""
    return str(plan.get("weights", WEIGHTS_FILE))


def rebuild(plan: dict[str, Any], weights: bytes, uri: str) -> nn.Module:
    """The model a plan and its weights file's bytes describe, in eval mode (errors name the file)."""
    source, weights_source = f"{uri.rstrip('/')}/{PLAN_FILE}", f"{uri.rstrip('/')}/{weights_file(plan)}"
    reader = _READERS.get(weights_file(plan))
    if reader is None:
        raise ArtifactError(f"saved model {source} names weights {weights_file(plan)!r}; allowed: {', '.join(_READERS)}")
    try:
        state = reader(plan, weights)
    except (SafetensorError, EncodingError, KeyError, TypeError, ValueError) as error:
        first = (str(error).strip().splitlines() or [""])[0]
        raise ArtifactError(f"saved model weights {weights_source} are unreadable: {type(error).__name__}: {first}") from None
    try:
        recipe = ModelRecipe(**plan["model"])
        example = torch.zeros(plan["input_shape"])
        model = architecture_of(plan["granularity"]).rebuild(recipe.create(), plan["architecture"], example)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ArtifactError(f"saved model {source} does not rebuild: {type(error).__name__}: {error}") from None
    try:
        return load_state(model, state, weights_source).eval()
    except CorruptCheckpointError as error:  # shapes or names that do not fit the rebuilt model
        raise ArtifactError(str(error)) from None


def model_files(model: nn.Module, recipe: ModelRecipe, method: str, example: torch.Tensor,
                quantized: Mapping[str, QuantizedTensor] | None = None, deployment: Deployment | None = None) -> ModelFiles:
    """The files that store `model` (pruned by `method` from `recipe`'s model): its weights as
    safetensors, or encoded by their codes when `quantized` names any (the codes of its quantised
    weights, prune_ray.quantize), then the plan; checked first to rebuild it (same outputs on
    `example`), so a saved model always loads. `deployment` (input, normalisation, classes) goes
    into the plan as "deployment"."""
    plan = _plan(recipe, method, model, example)
    if deployment is not None:
        plan["deployment"] = deployment.as_plan()
    if quantized:
        name, weights = ENCODED_FILE, encode_model(model.state_dict(), quantized).data
        plan.update(format=ENCODED_FORMAT, weights=name, quantized=sorted(quantized))
    else:
        stored, masks = encode(model.state_dict())
        name, weights = WEIGHTS_FILE, save_safetensors(stored)
        plan.update(masks=[mask.as_dict() for mask in masks])
    plan["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    _check_rebuilds(plan, weights, model, example)
    return ModelFiles({name: weights, PLAN_FILE: json.dumps(plan, indent=1).encode()})


def write_model(storage: Storage, parts: tuple[str, ...], files: ModelFiles) -> SavedModel:
    """Write the files under storage/<parts...>/, each atomically, in order (the plan last: it marks
    a complete model)."""
    for name, data in files.files.items():
        storage.write_bytes_atomic(storage.path(*parts, name), data)
    return SavedModel(storage.uri_of(*parts), files.size)


def save_pruned(storage: Storage, parts: tuple[str, ...], model: nn.Module, recipe: ModelRecipe, method: str,
                example: torch.Tensor, quantized: Mapping[str, QuantizedTensor] | None = None) -> SavedModel:
    """model_files, written under storage/<parts...>/."""
    return write_model(storage, parts, model_files(model, recipe, method, example, quantized))


def _check_rebuilds(plan: dict[str, Any], weights: bytes, model: nn.Module, example: torch.Tensor) -> None:
    rebuilt = rebuild(plan, weights, "(being saved)")  # torch-pruning traces with autograd: not under no_grad
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
    if not isinstance(plan, dict) or plan.get("format") not in (FORMAT, ENCODED_FORMAT):
        found = plan.get("format") if isinstance(plan, dict) else type(plan).__name__
        raise ArtifactError(f"saved model {source} has format {found!r}; this prune-ray reads formats {FORMAT} and {ENCODED_FORMAT}")
    return plan


def load_model(uri: str) -> nn.Module:
    """The pruned model saved in directory `uri` (a local path or URI), on the CPU, in eval mode
    (load_pruned, prune_ray.artifacts.locate, also takes a row or a trial id). ArtifactError (one
    line naming the file) when a file is missing, corrupt, or does not fit its plan."""
    plan, storage = read_plan(uri), open_storage(uri)
    source = storage.uri_of(weights_file(plan))
    try:
        weights = storage.read_bytes(storage.path(weights_file(plan)))
    except (OSError, FileNotFoundError):
        raise ArtifactError(f"saved model weights {source} do not exist") from None
    if hashlib.sha256(weights).hexdigest() != plan.get("weights_sha256"):
        raise ArtifactError(f"saved model weights {source} do not match their plan (SHA-256 differs): corrupt or replaced")
    model = rebuild(plan, weights, storage.uri)
    model.prune_ray_meta = Deployment.from_plan(plan.get("deployment"))  # None for plans saved without it
    return model
