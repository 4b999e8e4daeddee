"""prune-ray: neural-network pruning experiments as distributed sweeps on Ray."""

__version__ = "0.1.0"
