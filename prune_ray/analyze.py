"""python -m prune_ray.analyze: frontier tables (Markdown or CSV) and plots of a results root.

The numbers come from prune_ray.frontier (pure pandas); this module reads the Parquet, lays the
tables out in the style of the reference documents, and draws the plot. It imports neither Ray nor
Optuna nor torch, so it starts fast on a laptop holding a copy of a cluster's results.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from importlib import resources
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from .frontier import baselines, literature_points, operating_points, pareto_front, usable_rows
from .results import list_sweeps, read_results
from .storage import Storage, open_storage

TABLES = ("frontier", "ratio-grid", "methods")
FORMATS = ("markdown", "csv")
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
# Describe an operating point; v3 columns (ratio, iterative, prune_steps) and point_detail (a
# frontier search's trial id, a per-layer ratio mapping's layer ratios) are dropped when all null.
DESCRIPTORS = ("budget_metric", "budget", "ratio", "schedule", "iterative", "prune_steps", "point_detail")
GRID_KEYS = ("model", "dataset", "method", "budget_metric", "schedule", "iterative", "prune_steps")


class BadInput(Exception):
    """A problem with what the user asked for; its message is the one line printed on stderr."""


def _missing(value) -> bool:
    """None, NaN or pd.NA: grouping turns a null key into any of them."""
    return value is None or bool(pd.isna(value))


# ---------------------------------------------------------------- tables (numeric DataFrames)


def _drop_empty(table: pd.DataFrame, optional: Sequence[str]) -> pd.DataFrame:
    return table.drop(columns=[name for name in optional if name in table and table[name].isna().all()])


def frontier_table(points: pd.DataFrame) -> pd.DataFrame:
    """The frontier points of every (model, dataset, method, metric); accuracies in %."""
    front = pareto_front(points)
    table = front[["model", "dataset", "method", *DESCRIPTORS]].assign(
        keep=front["keep"],
        compression=1 / front["keep"],
        top1_pct=100 * front["top1_mean"],
        top1_pct_std=100 * front["top1_std"],
        test_top1_pct=100 * front["test_top1_mean"],
        test_top1_pct_std=100 * front["test_top1_std"],
        n=front["n"],
        trials=front["trials"],
    )
    return _drop_empty(table, [*DESCRIPTORS, "test_top1_pct", "test_top1_pct_std"])


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
    return ", ".join(parts)


def methods_table(points: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """Like the seeds' "Final Table": a Baseline row per network, then every frontier point."""
    front = pareto_front(points)
    rows = [
        {"method": "Baseline", "network": b.model, "dataset": b.dataset, "top1_pct": 100 * b.top1_mean,
         "top1_pct_std": 100 * b.top1_std, "sparsity_pct": 0.0, "macs_removed_pct": 0.0, "n": b.n, "notes": ""}
        for b in baseline.itertuples()
    ]
    rows += [
        {"method": p["method"], "network": p["model"], "dataset": p["dataset"], "top1_pct": 100 * p["top1_mean"],
         "top1_pct_std": 100 * p["top1_std"], "sparsity_pct": 100 * (1 - p["params_keep"]),
         "macs_removed_pct": 100 * (1 - p["macs_keep"]), "n": p["n"], "notes": _notes(p)}
        for _, p in front.iterrows()
    ]
    table = pd.DataFrame(rows, columns=["method", "network", "dataset", "top1_pct", "top1_pct_std", "sparsity_pct", "macs_removed_pct", "n", "notes"])
    # baseline first within each network, as in the seed table
    order = table.assign(is_method=table["method"] != "Baseline")
    return table.loc[order.sort_values(["network", "dataset", "is_method"], kind="stable").index].reset_index(drop=True)


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
    return "-" if _missing(value) else ("0" if value == 0 else f"{value:.2e}")  # 1.44e-03, as the seed


def frontier_markdown(table: pd.DataFrame) -> str:
    names = {"budget_metric": "metric", "prune_steps": "steps", "keep": "kept", "compression": "compression (x)",
             "top1_pct": "top1 (%)", "test_top1_pct": "test top1 (%)", "n": "seeds"}
    shown = [name for name in table.columns if not name.endswith("_std")]
    body = []
    for _, row in table.iterrows():
        cells = []
        for name in shown:
            if name in ("top1_pct", "test_top1_pct"):
                cells.append(_pct(row[name], row.get(f"{name}_std", math.nan)))  # std dropped when one seed
            elif name in ("keep", "compression"):
                cells.append(f"{row[name]:.4f}" if name == "keep" else f"{row[name]:.2f}")
            else:
                cells.append(_plain(row[name]))
        body.append(cells)
    return _markdown([names.get(name, name) for name in shown], body)


def methods_markdown(table: pd.DataFrame) -> str:
    body = [
        [row.method, row.network, row.dataset, _pct(row.top1_pct, row.top1_pct_std, "%"), f"{row.sparsity_pct:.2f}%",
         f"{row.macs_removed_pct:.2f}%", "; ".join(part for part in (row.notes, f"{row.n} seed{'' if row.n == 1 else 's'}") if part)]
        for row in table.itertuples()
    ]
    return _markdown(["Method", "Network", "Dataset", "Acc", "Sparsity", "MACs removed", "Notes"], body)


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


def render(results: pd.DataFrame, table: str, fmt: str, include_screen: bool = False) -> str:
    """The requested table of a results DataFrame as Markdown or CSV text."""
    points = operating_points(results, include_screen)
    if table == "frontier":
        numbers, to_markdown = frontier_table(points), frontier_markdown
    elif table == "methods":
        numbers, to_markdown = methods_table(points, baselines(results, include_screen)), methods_markdown
    else:
        numbers, to_markdown = ratio_grid_table(points), ratio_grid_markdown
    return numbers.to_csv(index=False, float_format="%.6g") if fmt == "csv" else to_markdown(numbers) + "\n"


# ---------------------------------------------------------------- plot


def load_literature() -> pd.DataFrame:
    """The published CIFAR points shipped with the package (values in %, removed fractions)."""
    with resources.files("prune_ray").joinpath("literature.csv").open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle)


LITERATURE_MARKERS = ("*", "P", "X", "D", "^", "v", "s", "p", "h", "<", ">")


def _draw_method(axis, points: pd.DataFrame, trials: pd.DataFrame, keep_column: str, to_x: Callable, colour, label: str) -> list[float]:
    """All trials faintly, the frontier along this axis's resource as a line, mean ± std as a band.
    Returns the accuracies the frontier and band span (the y-range worth showing)."""
    trials = trials[trials[keep_column] > 0]
    axis.scatter(to_x(trials[keep_column]), 100 * trials["top1"], s=10, alpha=0.2, color=colour, linewidths=0)
    front = pareto_front(points[points[keep_column] > 0], keep_column=keep_column, by=("method",))
    if front.empty:
        return []
    x, mean = to_x(front[keep_column]).to_numpy(), 100 * front["top1_mean"].to_numpy()
    std = 100 * front["top1_std"].fillna(0).to_numpy()
    axis.plot(x, mean, marker="o", markersize=4, color=colour, label=label)
    if (front["n"] > 1).any():  # a band needs at least one point measured on several seeds
        # accuracy lives in [0, 100]: a wide spread over seeds must not draw a band below 0
        axis.fill_between(x, (mean - std).clip(0, 100), (mean + std).clip(0, 100), color=colour, alpha=0.2, linewidth=0)
    return [*(mean - std).clip(0, 100), *(mean + std).clip(0, 100)]


def _draw_literature(axes, published: pd.DataFrame) -> list[float]:
    methods = list(dict.fromkeys(published["method"]))
    for method, marker in zip(methods, LITERATURE_MARKERS * (len(methods) // len(LITERATURE_MARKERS) + 1)):
        mine = published[published["method"] == method]
        for axis, x in ((axes[0], 1 / mine["params_keep"]), (axes[1], mine["macs_keep"])):
            known = x.notna()
            if known.any():
                axis.scatter(x[known], mine["pruned_top1"][known], marker=marker, s=60, facecolors="none",
                             edgecolors="black", linewidths=1, label=f"{method} (paper)")
    return list(published["pruned_top1"].dropna())


def _accuracy_limits(shown: list[float]) -> tuple[float, float]:
    """Frame the frontiers, bands, published points and baseline; a search's collapsed proposals
    (10% top-1) would otherwise squash every frontier into a flat line at the top."""
    low, high = min(shown), max(shown)
    pad = max(1.0, 0.08 * (high - low))
    return low - pad, min(high + pad, 100.5)


def _legend_beside(axes) -> None:
    """One legend per row, right of the MACs panel: the published points are many and would hide data."""
    entries = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    axes[1].legend(entries.values(), entries.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))


def plot_frontiers(results: pd.DataFrame, path: str, literature: pd.DataFrame | None = None, include_screen: bool = False):
    """Write a PNG: per (model, dataset), top-1 against parameter compression and against MACs kept.
    Returns the matplotlib Figure (tests inspect it)."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg: no pyplot, no GUI backend
    from matplotlib.ticker import FuncFormatter

    literature = load_literature() if literature is None else literature
    rows, points = usable_rows(results, include_screen), operating_points(results, include_screen)
    pairs = list(points[["model", "dataset"]].drop_duplicates().itertuples(index=False, name=None))
    if not pairs:
        raise ValueError("no trials with status 'ok' to plot")
    figure = Figure(figsize=(15, 4.5 * len(pairs)))
    grid = figure.subplots(len(pairs), 2, squeeze=False)
    colours = {method: f"C{i % 10}" for i, method in enumerate(sorted(points["method"].unique()))}
    for (model, dataset), axes in zip(pairs, grid):
        here = (points["model"] == model) & (points["dataset"] == dataset)
        trials_here = (rows["model"] == model) & (rows["dataset"] == dataset)
        shown = []  # accuracies that must be visible
        for method, colour in colours.items():
            mine, trials = points[here & (points["method"] == method)], rows[trials_here & (rows["method"] == method)]
            if mine.empty:
                continue
            shown += _draw_method(axes[0], mine, trials, "params_keep", lambda keep: 1 / keep, colour, method)
            shown += _draw_method(axes[1], mine, trials, "macs_keep", lambda keep: keep, colour, method)
        shown += _draw_literature(axes, literature_points(literature, model, dataset))
        baseline = 100 * rows.loc[trials_here, "baseline_top1"].mean()
        shown += [] if math.isnan(baseline) else [baseline]
        for axis in axes:
            if not math.isnan(baseline):
                axis.axhline(baseline, color="grey", linestyle="--", linewidth=0.8, label="baseline (this sweep)")
            if shown:
                axis.set_ylim(*_accuracy_limits(shown))
            axis.set_ylabel("top-1 (%)")
            axis.grid(alpha=0.3)
        _legend_beside(axes)
        axes[0].set_xscale("log")
        # plain 1, 2, 5, 10 rather than 2x10^0; minor labels only at 2, 3 and 5 so wide ranges stay legible
        axes[0].xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes[0].xaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in "235" else ""))
        axes[0].set_xlabel("compression ratio (x) = baseline params / nonzero params")
        axes[1].set_xlabel("MACs kept (fraction of baseline)")
        axes[0].set_title(f"{model} on {dataset}: accuracy vs compression")
        axes[1].set_title(f"{model} on {dataset}: accuracy vs MACs kept")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return figure


# ---------------------------------------------------------------- CLI


def _open_results(location: str, sweep: str | None) -> tuple[Storage, str | None]:
    """Accept a storage root, one sweep's directory, or its trials/ directory (what a sweep prints)."""
    try:
        storage = open_storage(location)
        exists = storage.exists(storage.root)
    except Exception as error:  # pyarrow raises several types for malformed or unreachable URIs
        raise BadInput(f"cannot open results {location!r}: {error}") from error
    if not exists:
        raise BadInput(f"results {location!r} do not exist; give the sweep's --storage root (default ./results), a sweep directory, or a URI")
    if _name(storage) == "trials" and not list_sweeps(storage):  # the path a sweep prints at its end
        storage = _parent(storage)
    if storage.exists(storage.path("trials")):  # a sweep's own directory
        if sweep not in (None, _name(storage)):
            raise BadInput(f"--sweep {sweep!r} does not match the sweep directory {location!r}; leave --sweep out or give the results root")
        storage, sweep = _parent(storage), _name(storage)
    if sweep is not None and sweep not in (known := list_sweeps(storage)):
        raise BadInput(f"sweep {sweep!r} not found in {storage.uri}; available: {', '.join(known) or 'none'}")
    return storage, sweep


def _name(storage: Storage) -> str:
    return storage.root.rstrip("/").rsplit("/", 1)[-1]


def _parent(storage: Storage) -> Storage:
    return dataclasses.replace(storage, root=storage.root.rstrip("/").rsplit("/", 1)[0], uri=storage.uri.rstrip("/").rsplit("/", 1)[0])


def load_results(location: str, sweep: str | None = None, include_screen: bool = False) -> pd.DataFrame:
    """The rows of RESULTS (all sweeps, or one); BadInput when there is nothing to analyse."""
    storage, sweep = _open_results(location, sweep)
    try:
        results = read_results(storage, sweep)
    except (OSError, pa.ArrowException) as error:  # a truncated or foreign Parquet file
        raise BadInput(f"cannot read results in {storage.uri}: {error}") from error
    if usable_rows(results, include_screen).empty:
        where = f"sweep {sweep!r} in {storage.uri}" if sweep else storage.uri
        raise BadInput(f"no trials with status 'ok' in {where} ({len(results)} rows read); "
                       "expected <sweep>/trials/*.parquet written by python -m prune_ray.sweep")
    return results


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block: the house style for bad input
        print(f"prune-ray analyze: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m prune_ray.analyze",
        description="Frontier tables and plots of prune-ray results. Only trials with status 'ok' count; "
        "trials of one setting are aggregated over seeds (each search contributes its best trial), and a "
        "method's frontier is its settings that no other setting beats on both kept resource and top-1.",
        epilog="example: python -m prune_ray.analyze results --table methods --plot frontier.png. "
        "Exit codes: 0 success; 2 bad input (one line on stderr names it).",
    )
    parser.add_argument("results", metavar="RESULTS", help="results root (the sweep's --storage: local path or s3://, gs:// URI), "
                        "or one sweep's directory or trials/ directory")
    parser.add_argument("--sweep", metavar="NAME", help="only this sweep under RESULTS (default: every sweep)")
    parser.add_argument("--table", choices=TABLES, default="frontier", help="frontier: the non-dominated settings per method "
                        "(default); ratio-grid: accuracy and thresholds per pruning ratio, like the seed documents; methods: "
                        "method / network / dataset / accuracy / sparsity / MACs removed, with a baseline row per network")
    parser.add_argument("--format", choices=FORMATS, default="markdown", help="markdown (default) or csv (numbers unformatted, "
                        "accuracies in %%, std in *_std columns; the ratio grid in long form)")
    parser.add_argument("--plot", metavar="OUT.png", help="also write a plot: top-1 vs compression and vs MACs kept, "
                        "per model and dataset, with published points from the bundled literature.csv")
    parser.add_argument("--include-screen", action="store_true", help="keep stage 'screen' rows (short first-stage "
                        "fine-tunes of a two-stage search), which are left out by default")
    return parser


def _check_plot_path(path: str) -> None:
    """Fail before the (possibly remote) read rather than after it."""
    folder, suffix = os.path.dirname(os.path.abspath(path)), os.path.splitext(path)[1].lower()
    if suffix not in PLOT_SUFFIXES:
        raise BadInput(f"--plot {path!r}: unknown image type {suffix or '(none)'!r}; allowed: {', '.join(PLOT_SUFFIXES)}")
    if not os.path.isdir(folder):
        raise BadInput(f"--plot {path!r}: folder {folder!r} does not exist; create it or pick an existing one")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.plot:
            _check_plot_path(args.plot)
        results = load_results(args.results, args.sweep, args.include_screen)
    except BadInput as error:
        print(f"prune-ray analyze: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(render(results, args.table, args.format, args.include_screen))
    if args.plot:
        plot_frontiers(results, args.plot, include_screen=args.include_screen)
        print(f"[prune-ray] plot: {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
