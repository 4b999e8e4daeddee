"""Frontier plots: top-1 against compression and against MACs kept, per model and dataset, with
published points from the bundled literature.csv; and, where the rows know their models' bytes,
top-1 against model size in bytes (log scale), one line per method and quantiser, so prune-only
and prune+quantise models sit on one chart."""

from __future__ import annotations

import math
from importlib import resources
from typing import Callable

import pandas as pd

from .frontier import literature_points, point_summary, pareto_front, usable_rows


def load_literature() -> pd.DataFrame:
    """The published CIFAR points shipped with the package (values in %, removed fractions)."""
    with resources.files("prune_ray").joinpath("literature.csv").open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle)


LITERATURE_MARKERS = ("*", "P", "X", "D", "^", "v", "s", "p", "h", "<", ">")
SCHEDULE_STYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)), (0, (8, 2)), (0, (3, 1, 1, 1, 1, 1)))


def _draw_method(axis, points: pd.DataFrame, trials: pd.DataFrame, keep_column: str, to_x: Callable, colour, label: str,
                 style="-") -> list[float]:
    """All trials faintly, the frontier (non-dominated points only, so monotone) along this axis's
    resource as a line, mean ± std as a band. Returns the accuracies the frontier and band span."""
    trials = trials[trials[keep_column] > 0]
    axis.scatter(to_x(trials[keep_column]), 100 * trials["top1"], s=10, alpha=0.2, color=colour, linewidths=0)
    front = pareto_front(points[points[keep_column] > 0], keep_column=keep_column, by=("method",))
    if front.empty:
        return []
    x, mean = to_x(front[keep_column]).to_numpy(), 100 * front["top1_mean"].to_numpy()
    std = 100 * front["top1_std"].fillna(0).to_numpy()
    axis.plot(x, mean, marker="o", markersize=4, color=colour, linestyle=style, label=label)
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
    """One legend per row, right of the last panel: the published points are many and would hide data."""
    entries = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    axes[-1].legend(entries.values(), entries.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))


def _draw_lines(axes, points: pd.DataFrame, rows: pd.DataFrame, colours: dict, styles: dict) -> list[float]:
    """One line per (method, schedule) on both panels: the method as colour, the schedule as line
    style. Returns the accuracies drawn."""
    schedules = list(styles)
    shown = []
    for method, colour in colours.items():
        for schedule in (schedules or [None]):
            of_point = (points["method"] == method) & (points["schedule"].eq(schedule) if schedule else True)
            of_trial = (rows["method"] == method) & (rows["schedule"].eq(schedule) if schedule else True)
            mine, trials = points[of_point], rows[of_trial]
            if mine.empty:
                continue
            label, style = (f"{method} / {schedule}" if len(schedules) > 1 else method), styles.get(schedule, "-")
            shown += _draw_method(axes[0], mine, trials, "params_keep", lambda keep: 1 / keep, colour, label, style)
            shown += _draw_method(axes[1], mine, trials, "macs_keep", lambda keep: keep, colour, label, style)
    return shown


def _draw_sizes(axis, points: pd.DataFrame, rows: pd.DataFrame) -> list[float]:
    """Top-1 against bytes of the stored model: one frontier per (method, quantiser), the quantiser
    as colour (so prune-only and each quantiser stand apart) and the method as line style."""
    labels = sorted(points["quantize_label"].dropna().unique(), key=lambda label: (label != "none", label))
    methods = sorted(points["method"].unique())
    shown = []
    for index, label in enumerate(labels):
        for method, style in zip(methods, SCHEDULE_STYLES * (len(methods) // len(SCHEDULE_STYLES) + 1)):
            mine = points[(points["method"] == method) & points["quantize_label"].eq(label)]
            trials = rows[(rows["method"] == method) & rows["quantize_label"].eq(label)]
            if not mine.empty:
                shown += _draw_method(axis, mine, trials, "bytes_encoded", lambda size: size, f"C{index % 10}",
                                      f"{method} / {label}", style)
    return shown


def _frame(axes, model: str, dataset: str, baseline: float, shown: list[float]) -> None:
    """Baseline line, accuracy limits, scales, labels and titles of one (model, dataset) row."""
    from matplotlib.ticker import FuncFormatter

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
    if len(axes) > 2:
        axes[2].set_xscale("log")
        axes[2].set_xlabel("model size on disk (bytes: encoded when quantised)")
        axes[2].set_title(f"{model} on {dataset}: accuracy vs bytes")


def plot_frontiers(results: pd.DataFrame, path: str, literature: pd.DataFrame | None = None, include_screen: bool = False):
    """Write a PNG: per (model, dataset), top-1 against parameter compression, against MACs kept
    and (where known) against the model's bytes. Returns the matplotlib Figure (tests inspect it)."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg: no pyplot, no GUI backend

    literature = load_literature() if literature is None else literature
    rows, points = usable_rows(results, include_screen), point_summary(results, include_screen)
    pairs = list(points[["model", "dataset"]].drop_duplicates().itertuples(index=False, name=None))
    if not pairs:
        raise ValueError("no trials with status 'ok' to plot")
    sizes = bool(points["bytes_encoded"].notna().any())  # a third panel: top-1 against bytes
    figure = Figure(figsize=(22 if sizes else 15, 4.5 * len(pairs)))
    grid = figure.subplots(len(pairs), 3 if sizes else 2, squeeze=False)
    colours = {method: f"C{i % 10}" for i, method in enumerate(sorted(points["method"].unique()))}
    schedules = sorted(points["schedule"].dropna().unique())
    styles = {schedule: SCHEDULE_STYLES[i % len(SCHEDULE_STYLES)] for i, schedule in enumerate(schedules)}
    for (model, dataset), axes in zip(pairs, grid):
        here = (points["model"] == model) & (points["dataset"] == dataset)
        trials_here = (rows["model"] == model) & (rows["dataset"] == dataset)
        shown = _draw_lines(axes, points[here], rows[trials_here], colours, styles)
        if sizes:
            shown += _draw_sizes(axes[2], points[here], rows[trials_here])
        shown += _draw_literature(axes, literature_points(literature, model, dataset))
        baseline = 100 * rows.loc[trials_here, "baseline_top1"].mean()
        shown += [] if math.isnan(baseline) else [baseline]
        _frame(axes, model, dataset, baseline, shown)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return figure
