"""prune-ray: neural-network pruning experiments as distributed sweeps on Ray."""

__version__ = "0.1.0"


def load_pruned(source, root: str | None = None, sweep: str | None = None):
    """A sweep's saved pruned model as an nn.Module in eval mode: from a directory (path or URI), a
    row of read_results, or a trial id plus the results root; its deployment metadata (input shape,
    normalisation, classes) is `.prune_ray_meta`. See prune_ray.artifacts.load_pruned (imported on
    first use, so `import prune_ray` stays light)."""
    from .artifacts import load_pruned as load

    return load(source, root, sweep)
