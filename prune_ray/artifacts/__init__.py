"""Pruned models as products: saved without pickle (safetensors + a JSON plan), reloaded by
`load_pruned`, kept or deleted at the end of a sweep (`retention`), exported (`export`)."""

from .store import ArtifactError, ModelRecipe, SavedModel, load_pruned, read_plan, save_pruned

__all__ = ["ArtifactError", "ModelRecipe", "SavedModel", "load_pruned", "read_plan", "save_pruned"]
