"""Frontier plots: top-1 against compression and against MACs kept, per model and dataset, with
published points from the bundled literature.csv; and, where the rows know their models' bytes,
top-1 against model size in bytes (log scale), so prune-only and prune+quantise models sit on one
chart. In every panel the method is the colour, the schedule the line style and the quantiser the
marker; one line per (method, schedule, quantiser). The layers plot shows, at one budget, the kept
fraction of every layer under each schedule: where each allocation put the pruning."""

from __future__ import annotations

import dataclasses
import math
from importlib import resources
from typing import Callable

import pandas as pd

from .frontier import in_pick_order, literature_points, point_summary, pareto_front, usable_rows


def load_literature() -> pd.DataFrame:
    """The published CIFAR points shipped with the package (values in %, removed fractions)."""
    with resources.files("prune_ray").joinpath("literature.csv").open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle)


LITERATURE_MARKERS = ("*", "P", "X", "D", "^", "v", "s", "p", "h", "<", ">")
SCHEDULE_STYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)), (0, (8, 2)), (0, (3, 1, 1, 1, 1, 1)))
QUANTIZER_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")


def _cycle(values: list, looks: tuple) -> dict:
    return {value: looks[i % len(looks)] for i, value in enumerate(values)}


@dataclasses.dataclass(frozen=True)
class Looks:
    """One meaning per visual channel, the same in every panel: the method is the colour, the
    schedule the line style, the quantiser the marker."""

    colours: dict  # method -> matplotlib colour
    styles: dict  # schedule -> line style
    markers: dict  # quantize_label -> marker

    @classmethod
    def of(cls, points: pd.DataFrame) -> "Looks":
        methods = sorted(points["method"].unique())
        schedules = sorted(points["schedule"].dropna().unique())
        quantizers = sorted(points["quantize_label"].dropna().unique(), key=lambda label: (label != "none", label))
        return cls({method: f"C{i % 10}" for i, method in enumerate(methods)}, _cycle(schedules, SCHEDULE_STYLES),
                   _cycle(quantizers, QUANTIZER_MARKERS))

    def label(self, method: str, schedule, quantizer) -> str:
        """The line's own label: the method, then the schedule and quantiser where there are several."""
        parts = [method] + ([str(schedule)] if len(self.styles) > 1 else []) + ([str(quantizer)] if len(self.markers) > 1 else [])
        return " / ".join(parts)

    def legend_handles(self) -> list:
        """Proxy artists, one per method, schedule and quantiser: the legend explains each channel once."""
        from matplotlib.lines import Line2D

        return ([Line2D([], [], color=colour, label=method) for method, colour in self.colours.items()]
                + [Line2D([], [], color="black", linestyle=style, label=f"schedule {schedule}")
                   for schedule, style in self.styles.items()]
                + [Line2D([], [], color="black", marker=marker, linestyle="none", label=f"quantiser {quantizer}")
                   for quantizer, marker in self.markers.items()])


def _draw_method(axis, points: pd.DataFrame, trials: pd.DataFrame, keep_column: str, to_x: Callable, colour, label: str,
                 style="-", marker="o") -> list[float]:
    """All trials faintly, the frontier (non-dominated points only, so monotone) along this axis's
    resource as a line, mean ± std as a band. Returns the accuracies the frontier and band span."""
    trials = trials[trials[keep_column] > 0]
    axis.scatter(to_x(trials[keep_column]), 100 * trials["top1"], s=10, alpha=0.2, color=colour, linewidths=0,
                 marker=marker)
    front = pareto_front(points[points[keep_column] > 0], keep_column=keep_column, by=("method",))
    if front.empty:
        return []
    x, mean = to_x(front[keep_column]).to_numpy(), 100 * front["top1_mean"].to_numpy()
    std = 100 * front["top1_std"].fillna(0).to_numpy()
    axis.plot(x, mean, marker=marker, markersize=4, color=colour, linestyle=style, label=label)
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


def _legend_beside(axes, looks: Looks) -> None:
    """One deduplicated legend per row, right of the last panel: what each colour, line style and
    marker means, then the baseline and the published points (many: they would hide data)."""
    entries = {handle.get_label(): handle for handle in looks.legend_handles()}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            if label.endswith("(paper)") or label.startswith("baseline"):
                entries.setdefault(label, handle)
    axes[-1].legend(entries.values(), entries.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))


GROUP = ["method", "schedule", "quantize_label"]  # one line each, in every panel


def _draw_lines(panels: list, points: pd.DataFrame, rows: pd.DataFrame, looks: Looks) -> list[float]:
    """One line per (method, schedule, quantiser) on every panel (an axis, its resource column and
    x transform), so a line never joins points of different schedules or quantisers. Returns the
    accuracies drawn."""
    shown = []
    for (method, schedule, quantizer), mine in points.groupby(GROUP, sort=True, dropna=False):
        trials = rows[rows["method"].eq(method) & _same(rows["schedule"], schedule) & _same(rows["quantize_label"], quantizer)]
        for axis, column, to_x in panels:
            shown += _draw_method(axis, mine, trials, column, to_x, looks.colours[method], looks.label(method, schedule, quantizer),
                                  looks.styles.get(schedule, "-"), looks.markers.get(quantizer, "o"))
    return shown


def _same(column: pd.Series, value) -> pd.Series:
    return column.isna() if value is None or (isinstance(value, float) and math.isnan(value)) else column.eq(value)


def _frame(axes, model: str, dataset: str, baseline: float, shown: list[float], looks: Looks) -> None:
    """Baseline line, accuracy limits, scales, labels and titles of one (model, dataset) row."""
    from matplotlib.ticker import FuncFormatter

    for axis in axes:
        if not math.isnan(baseline):
            axis.axhline(baseline, color="grey", linestyle="--", linewidth=0.8, label="baseline (this sweep)")
        if shown:
            axis.set_ylim(*_accuracy_limits(shown))
        axis.set_ylabel("top-1 (%)")
        axis.grid(alpha=0.3)
    _legend_beside(axes, looks)
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
    looks = Looks.of(points)
    for (model, dataset), axes in zip(pairs, grid):
        here = (points["model"] == model) & (points["dataset"] == dataset)
        trials_here = (rows["model"] == model) & (rows["dataset"] == dataset)
        panels = [(axes[0], "params_keep", lambda keep: 1 / keep), (axes[1], "macs_keep", lambda keep: keep)]
        panels += [(axes[2], "bytes_encoded", lambda size: size)] if sizes else []
        shown = _draw_lines(panels, points[here], rows[trials_here], looks)
        shown += _draw_literature(axes, literature_points(literature, model, dataset))
        baseline = 100 * rows.loc[trials_here, "baseline_top1"].mean()
        shown += [] if math.isnan(baseline) else [baseline]
        _frame(axes, model, dataset, baseline, shown, looks)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return figure


def layer_picks(results: pd.DataFrame, budget: float | None = None, include_screen: bool = False) -> tuple[float, pd.DataFrame]:
    """The budget shown (the given one, or the one with the most schedules, the tightest on a tie)
    and, at it, the picked trial (in_pick_order) of each (model, dataset, method, schedule, quantiser)
    with its `layer_names` and `kept` (1 - layer_ratios, per layer)."""
    if "layer_names" not in results or "layer_ratios" not in results:
        raise ValueError("the rows have no layer_names / layer_ratios to plot")
    rows = usable_rows(results, include_screen)
    layers = {(sweep, trial): (names, ratios) for sweep, trial, names, ratios in zip(
        results["sweep"], results["trial_id"], results["layer_names"].astype(object), results["layer_ratios"].astype(object))}
    rows = rows[rows["budget"].notna()]
    if rows.empty:
        raise ValueError("no ok trials with a budget: the layers plot compares schedules at one budget")
    if budget is None:
        schedules = rows.groupby("budget")["schedule"].nunique()
        budget = float(schedules[schedules == schedules.max()].index.min())
    rows = rows[(rows["budget"] - budget).abs() < 1e-9]
    if rows.empty:
        raise ValueError(f"no ok trials at budget {budget:g}")
    picks = in_pick_order(rows).groupby(["model", "dataset", *GROUP], sort=True, dropna=False).head(1)
    names, kept = [], []
    for sweep, trial in zip(picks["sweep"], picks["trial_id"]):
        layer_names, ratios = layers[(sweep, trial)]
        names.append(list(layer_names))
        kept.append([1.0 - float(ratio) for ratio in ratios])
    return budget, picks.assign(layer_names=names, kept=kept).reset_index(drop=True)


def plot_layers(results: pd.DataFrame, path: str, budget: float | None = None, include_screen: bool = False):
    """Write a PNG: per (model, dataset, method) one panel, the kept fraction of each layer (in the
    network's order) under each schedule's picked trial at one budget. Returns the Figure."""
    from matplotlib.figure import Figure

    budget, picks = layer_picks(results, budget, include_screen)
    picks = picks.assign(quantize_label=picks["quantize_label"].fillna("none"))
    looks = Looks.of(picks)
    panels = list(picks[["model", "dataset", "method"]].drop_duplicates().itertuples(index=False, name=None))
    width = max(9.0, 0.45 * max(len(names) for names in picks["layer_names"]) + 4)
    figure = Figure(figsize=(width, 3.6 * len(panels)))
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for (model, dataset, method), axis in zip(panels, axes):
        mine = picks[picks["model"].eq(model) & picks["dataset"].eq(dataset) & picks["method"].eq(method)]
        for _, pick in mine.iterrows():
            axis.plot(range(len(pick["kept"])), pick["kept"], color=looks.colours[method],
                      linestyle=looks.styles.get(pick["schedule"], "-"), marker=looks.markers.get(pick["quantize_label"], "o"),
                      markersize=4, label=looks.label(method, pick["schedule"], pick["quantize_label"]))
        names = max(mine["layer_names"], key=len)
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        axis.set_ylim(0, 1.05)
        axis.set_ylabel("kept fraction of its units")
        axis.grid(alpha=0.3)
        axis.set_title(f"{method} at budget {budget:g} ({model} on {dataset}): kept fraction per layer", fontsize=10)
        handles = [handle for handle in looks.legend_handles() if handle.get_label() not in set(looks.colours) - {method}]
        axis.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return figure
