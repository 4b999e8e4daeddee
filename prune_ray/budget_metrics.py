"""The resources a budget is set on, and the `auto` rule that picks one per method: plain Python
(no torch), so the analysis can read it without importing the pruning code."""

from __future__ import annotations

# budget metric -> the row column holding the pruned model's kept fraction of it
KEPT_COLUMNS = {"params": "params_keep", "macs": "macs_keep", "latency": "latency_keep"}


def auto_metric(granularity: str) -> str:
    """The budget metric `auto` resolves to: structured and low-rank pruning save compute (MACs);
    masks only save (sparse) storage (nonzero parameters)."""
    return "params" if granularity == "unstructured" else "macs"
