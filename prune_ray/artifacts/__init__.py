"""Pruned models as products: saved without pickle (safetensors + a JSON plan), reloaded by
`load_pruned`, kept or deleted at the end of a sweep (`retention`), exported (`export`)."""

from .locate import NoSavedModelError, load_pruned, model_directory, plan_of
from .store import ArtifactError, ModelRecipe, SavedModel, read_plan, save_pruned

__all__ = ["ArtifactError", "ModelRecipe", "NoSavedModelError", "SavedModel", "load_pruned", "model_directory", "plan_of",
           "read_plan", "save_pruned"]
