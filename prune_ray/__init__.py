"""prune-ray: neural-network pruning experiments as distributed sweeps on Ray."""

__version__ = "0.1.0"


def load_pruned(uri: str):
    """A sweep's saved pruned model (its `model_uri`) as an nn.Module in eval mode; see
    prune_ray.artifacts.load_pruned (imported on first use, so `import prune_ray` stays light)."""
    from .artifacts import load_pruned as load

    return load(uri)
