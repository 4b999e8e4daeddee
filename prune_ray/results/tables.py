"""Analysis tables: frontier, ratio grid and methods, as Markdown (the reference documents' style) or CSV.

The numbers come from results.frontier (pure pandas); this module lays them out.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .frontier import FRONTIER_KEYS, baselines, pareto_front, point_summary
from .strategies import strategy_summary

TABLES = ("frontier", "ratio-grid", "methods", "strategies")
FORMATS = ("markdown", "csv")
# Describe an operating point; v3 columns (ratio, iterative, prune_steps) and point_detail (a
# frontier search's trial id, a per-layer ratio mapping's layer ratios) are dropped when all null.
DESCRIPTORS = ("budget_metric", "budget", "ratio", "schedule", "iterative", "prune_steps", "point_detail")
GRID_KEYS = ("model", "dataset", "method", "budget_metric", "schedule", "iterative", "prune_steps")


def _missing(value) -> bool:
    """None, NaN or pd.NA: grouping turns a null key into any of them."""
    return value is None or bool(pd.isna(value))


# ---------------------------------------------------------------- tables (numeric DataFrames)


def _drop_empty(table: pd.DataFrame, optional: Sequence[str]) -> pd.DataFrame:
    return table.drop(columns=[name for name in optional if name in table and table[name].isna().all()])


def _quantised(points: pd.DataFrame) -> bool:
    """Whether any point stores quantised codes (its bits are known): then the tables say how."""
    return bool(points["quantize_bits_conv"].notna().any())


def _bits(point) -> str:
    """'8/5' (conv/fc bits per code), or '32' for float32 weights."""
    conv, fc = point["quantize_bits_conv"], point["quantize_bits_fc"]
    return "32" if _missing(conv) or _missing(fc) else f"{conv:g}/{fc:g}"


DOMINATED_NOTE = ("dominated: another setting of the same method (model, dataset, metric and quantiser) keeps no more "
                  "of the resource and is at least as accurate; it is not on the frontier")


def _flag_dominated(points: pd.DataFrame) -> pd.DataFrame:
    """Every point that can be placed (keep and top-1 known), in the frontier's order (per group, by
    keep), with `dominated`: False for the frontier's points (frontier.pareto_front), True otherwise."""
    tagged = points.dropna(subset=["keep", "top1_mean"]).assign(_point=lambda frame: range(len(frame)))
    on_front = set(pareto_front(tagged)["_point"])
    tagged = tagged.assign(dominated=[point not in on_front for point in tagged["_point"]])
    order = [key for key in FRONTIER_KEYS if key in tagged]
    return tagged.sort_values([*order, "keep"], kind="stable").drop(columns="_point").reset_index(drop=True)


def frontier_table(points: pd.DataFrame) -> pd.DataFrame:
    """Every operating point of every (model, dataset, method, metric, quantiser), the frontier's
    and the dominated ones (flagged in `dominated`); accuracies in %; the quantiser, its top-1 right
    after quantising, bytes and total compression when any point is quantised."""
    front = _flag_dominated(points)
    quantized = _quantised(front)
    table = front[["model", "dataset", "method", *(["quantize_label"] if quantized else []), *DESCRIPTORS]].assign(
        keep=front["keep"],
        compression=1 / front["keep"],
        top1_pct=100 * front["top1_mean"],
        top1_pct_std=100 * front["top1_std"],
        test_top1_pct=100 * front["test_top1_mean"],
        test_top1_pct_std=100 * front["test_top1_std"],
        n=front["n"],
        trials=front["trials"],
        **({"top1_quantized_pct": 100 * front["top1_quantized"], "bytes": front["bytes_encoded"],
            "compression_total": front["compression_ratio_total"]} if quantized else {}),
        model_uri=front["model_uri"],  # the saved pruned model(s): load_pruned or python -m prune_ray.export
        dominated=front["dominated"],
    )
    return _drop_empty(table, [*DESCRIPTORS, "test_top1_pct", "test_top1_pct_std", "model_uri"])


def _notes(point: pd.Series) -> str:
    """'budget 0.5 macs, searched, agp': the settings that tell the rows of one method apart."""
    parts = []
    if not _missing(point["budget"]):
        metric = "" if _missing(point["budget_metric"]) else point["budget_metric"]
        parts.append(f"budget {point['budget']:g} {metric}".strip())
    if not _missing(point["ratio"]):
        parts.append(f"ratio {point['ratio']:g}")
    parts += [str(point[name]) for name in ("schedule", "iterative") if not _missing(point[name])]
    if not _missing(point["prune_steps"]):
        parts.append(f"{int(point['prune_steps'])} steps")
    if not _missing(point.get("point_detail")):
        parts.append(str(point["point_detail"]))
    if not _missing(point.get("quantize_bits_conv")):
        parts.append(f"{point['quantizer']} quantised")
    return ", ".join(parts)


def methods_table(points: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """Like the source documents' "Final Table": a Baseline row per network, then every frontier point.
    When a point is quantised, Deep Compression's columns too: parameters kept, bits per weight
    code, bytes of the stored model and total compression (baseline float32 bytes / bytes)."""
    front = pareto_front(points)
    rows = [
        {"method": "Baseline", "network": b.model, "dataset": b.dataset, "top1_pct": 100 * b.top1_mean,
         "top1_pct_std": 100 * b.top1_std, "sparsity_pct": 0.0, "macs_removed_pct": 0.0, "params_kept_pct": 100.0,
         "bits": "32", "bytes": 4 * b.params, "compression_total": 1.0, "n": b.n,
         "notes": ""}
        for b in baseline.itertuples()
    ]
    rows += [
        {"method": p["method"], "network": p["model"], "dataset": p["dataset"], "top1_pct": 100 * p["top1_mean"],
         "top1_pct_std": 100 * p["top1_std"], "sparsity_pct": 100 * (1 - p["params_keep"]),
         "macs_removed_pct": 100 * (1 - p["macs_keep"]), "params_kept_pct": 100 * p["params_keep"], "bits": _bits(p),
         "bytes": p["bytes_encoded"], "compression_total": p["compression_ratio_total"], "n": p["n"], "notes": _notes(p),
         "model_uri": p["model_uri"]}
        for _, p in front.iterrows()
    ]
    columns = ["method", "network", "dataset", "top1_pct", "top1_pct_std", "sparsity_pct", "macs_removed_pct",
               "params_kept_pct", "bits", "bytes", "compression_total", "n", "notes", "model_uri"]
    table = pd.DataFrame(rows, columns=columns)
    # baseline first within each network, as in the source document's table
    order = table.assign(is_method=table["method"] != "Baseline")
    table = table.loc[order.sort_values(["network", "dataset", "is_method"], kind="stable").index].reset_index(drop=True)
    if not _quantised(front):
        table = table.drop(columns=["params_kept_pct", "bits", "bytes", "compression_total"])
    return _drop_empty(table, ["model_uri"])


def ratio_grid_table(points: pd.DataFrame) -> pd.DataFrame:
    """Long form of the ratio grids: one row per (grid, ratio), ratio 0 being the baseline. ratio is
    the fixed per-layer ratio when recorded, else the achieved removed fraction 1 - keep."""
    rows = []
    for _, grid in points.groupby(list(GRID_KEYS), dropna=False, sort=True):
        first = grid.iloc[0]
        keys = {name: first[name] for name in GRID_KEYS}
        baseline = 100 * grid["baseline_top1"].mean()
        # the unpruned model's threshold is 0, but only for methods that have thresholds at all
        zero = {name: 0.0 if grid[name].notna().any() else np.nan for name in ("conv_threshold", "fc_threshold")}
        rows.append({**keys, "ratio": 0.0, "baseline": True, "top1_pruned_pct": baseline, "top1_pct": baseline, **zero, "n": np.nan})
        ratio = grid["ratio"].fillna(1 - grid["keep"])
        for (_, point), point_ratio in sorted(zip(grid.iterrows(), ratio), key=lambda pair: pair[1]):
            rows.append({**keys, "ratio": round(point_ratio, 4), "baseline": False,
                         "top1_pruned_pct": 100 * point["top1_pruned"], "top1_pct": 100 * point["top1_mean"],
                         "conv_threshold": point["conv_threshold"], "fc_threshold": point["fc_threshold"], "n": point["n"]})
    table = pd.DataFrame(rows, columns=[*GRID_KEYS, "ratio", "baseline", "top1_pruned_pct", "top1_pct", "conv_threshold", "fc_threshold", "n"])
    return _drop_empty(table, ["budget_metric", "schedule", "iterative", "prune_steps"])


# ---------------------------------------------------------------- Markdown


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]], rule: str = "---") -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(f" {rule} " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _pct(mean: float, std: float = math.nan, suffix: str = "") -> str:
    if _missing(mean):
        return "-"
    return f"{mean:.2f}{suffix}" if _missing(std) else f"{mean:.2f} ± {std:.2f}{suffix}"


def _plain(value) -> str:
    if _missing(value):
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _threshold(value: float) -> str:
    return "-" if _missing(value) else ("0" if value == 0 else f"{value:.2e}")  # 1.44e-03, as the source document


def frontier_markdown(table: pd.DataFrame) -> str:
    names = {"budget_metric": "metric", "prune_steps": "steps", "keep": "kept", "compression": "compression (x)",
             "top1_pct": "top1 (%)", "test_top1_pct": "test top1 (%)", "n": "seeds", "quantize_label": "quantizer",
             "top1_quantized_pct": "top1 quantised (%)", "compression_total": "total compression (x)"}
    shown = [name for name in table.columns if not name.endswith("_std")]
    body = []
    for _, row in table.iterrows():
        cells = []
        for name in shown:
            if name in ("top1_pct", "test_top1_pct", "top1_quantized_pct"):
                cells.append(_pct(row[name], row.get(f"{name}_std", math.nan)))  # std dropped when one seed
            elif name in ("bytes", "compression_total"):
                cells.append("-" if _missing(row[name]) else f"{row[name]:,.0f}" if name == "bytes" else f"{row[name]:.1f}")
            elif name in ("keep", "compression"):
                cells.append(f"{row[name]:.4f}" if name == "keep" else f"{row[name]:.2f}")
            elif name == "dominated":
                cells.append("yes" if row[name] else "")
            else:
                cells.append(_plain(row[name]))
        body.append(cells)
    note = f"\n\n{DOMINATED_NOTE}." if "dominated" in table and table["dominated"].any() else ""
    return _markdown([names.get(name, name) for name in shown], body) + note


def _deep_compression_cells(row) -> list[str]:
    size = "-" if _missing(row.bytes) else f"{row.bytes:,.0f}"
    ratio = "-" if _missing(row.compression_total) else f"{row.compression_total:.1f}x"
    return [f"{row.params_kept_pct:.2f}%", row.bits, size, ratio]


def methods_markdown(table: pd.DataFrame) -> str:
    saved, quantized = "model_uri" in table, "bits" in table
    body = [
        [row.method, row.network, row.dataset, _pct(row.top1_pct, row.top1_pct_std, "%"), f"{row.sparsity_pct:.2f}%",
         f"{row.macs_removed_pct:.2f}%", *(_deep_compression_cells(row) if quantized else []),
         "; ".join(part for part in (row.notes, f"{row.n} seed{'' if row.n == 1 else 's'}") if part),
         *([_plain(row.model_uri)] if saved else [])]
        for row in table.itertuples()
    ]
    deep_compression = ["Params kept", "Bits (conv/fc)", "Bytes", "Compression"] if quantized else []
    return _markdown(["Method", "Network", "Dataset", "Acc", "Sparsity", "MACs removed", *deep_compression, "Notes",
                      *(["Model"] if saved else [])], body)


def ratio_grid_markdown(table: pd.DataFrame) -> str:
    keys = [name for name in GRID_KEYS if name in table]
    sections = []
    for _, grid in table.groupby(keys, dropna=False, sort=False):
        first = grid.iloc[0]
        extras = [_plain(first[name]) for name in keys[3:] if not _missing(first[name])]
        title = f"### {first['model']} on {first['dataset']}: {first['method']}" + (f" ({', '.join(extras)})" if extras else "")
        header = ["ratio"] + ["Baseline" if row.baseline else f"{row.ratio:g}" for row in grid.itertuples()]
        body = [
            ["top1 (without fine-tune)", *(_pct(value) for value in grid["top1_pruned_pct"])],
            ["top1", *(_pct(value) for value in grid["top1_pct"])],
        ]
        body += [[label, *(_threshold(value) for value in grid[name])] for label, name in
                 (("conv threshold", "conv_threshold"), ("fc threshold", "fc_threshold")) if grid[name].notna().any()]
        sections.append(f"{title}\n\n{_markdown(header, body, rule=':-:')}")
    return "\n\n".join(sections)


def strategies_table(results: pd.DataFrame) -> pd.DataFrame:
    """Each strategy per (model, dataset, method, budget): accuracies in %, cost per run."""
    summary = strategy_summary(results)
    table = summary.assign(**{f"{name}_pct": 100 * summary[name] for name in
                              ("top1_mean", "top1_std", "test_top1_mean", "test_top1_std")})
    table = table.drop(columns=["top1_mean", "top1_std", "test_top1_mean", "test_top1_std"])
    return table.sort_values(["model", "dataset", "method", "budget", "test_top1_mean_pct"],
                             ascending=[True, True, True, False, False], kind="stable").reset_index(drop=True)


def strategies_markdown(table: pd.DataFrame) -> str:
    sections = []
    for (model, dataset, method, metric, budget), rows in table.groupby(
            ["model", "dataset", "method", "budget_metric", "budget"], dropna=False, sort=False):
        where = f"budget {budget:g} {'' if _missing(metric) else metric}".strip() if not _missing(budget) else "fixed ratios"
        body = [[r.strategy, _pct(r.top1_mean_pct, r.top1_std_pct), _pct(r.test_top1_mean_pct, r.test_top1_std_pct),
                 f"{r.trials:g}", f"{r.epochs:g}", f"{r.seconds:.1f}", str(r.n)] for r in rows.itertuples()]
        header = ["strategy", "val top-1 %", "test top-1 %", "trials / run", "fine-tune epochs / run", "seconds / run", "runs"]
        sections.append(f"{model} on {dataset}, {method}, {where}:\n\n" + _markdown(header, body))
    return "\n\n".join(sections)


def render(results: pd.DataFrame, table: str, fmt: str, include_screen: bool = False) -> str:
    """The requested table of a results DataFrame as Markdown or CSV text."""
    if table == "strategies":  # per run, screening counted in the cost: include_screen does not apply
        numbers = strategies_table(results)
        return numbers.to_csv(index=False, float_format="%.6g") if fmt == "csv" else strategies_markdown(numbers) + "\n"
    points = point_summary(results, include_screen)
    if table == "frontier":
        numbers, to_markdown = frontier_table(points), frontier_markdown
    elif table == "methods":
        numbers, to_markdown = methods_table(points, baselines(results, include_screen)), methods_markdown
    else:
        numbers, to_markdown = ratio_grid_table(points), ratio_grid_markdown
    return numbers.to_csv(index=False, float_format="%.6g") if fmt == "csv" else to_markdown(numbers) + "\n"
