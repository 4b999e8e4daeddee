"""prune_ray.results.plot on constructed results: what each mark, colour and line means."""

import numpy as np
import pandas as pd
import pytest

from prune_ray.results.analyze import main
from prune_ray.results.frontier import point_summary
from prune_ray.results.plot import plot_frontiers
from results_rows import frame, write_rows


def test_plot_draws_frontiers_bands_and_published_points(tmp_path):
    structured = {"method": "l1_filter", "granularity": "structured", "budget_metric": "macs"}
    results = frame(*(
        {**structured, "seed": seed, "budget": keep, "macs_keep": keep, "params_keep": keep ** 1.5, "top1": 0.80 + 0.1 * keep + 0.01 * seed}
        for seed in (0, 1) for keep in (0.3, 0.5, 0.7)
    ), *(
        {"seed": seed, "budget": keep, "params_keep": keep, "top1": 0.85 + 0.05 * keep + 0.01 * seed}
        for seed in (0, 1) for keep in (0.2, 0.5)
    ))
    out = tmp_path / "plot.png"
    figure = plot_frontiers(results, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    compression, macs = figure.axes[:2]
    lines = {line.get_label(): line for line in macs.get_lines()}
    assert list(lines["l1_filter"].get_xdata()) == pytest.approx([0.3, 0.5, 0.7])
    assert list(lines["l1_filter"].get_ydata()) == pytest.approx([83.5, 85.5, 87.5])
    assert list(lines["magnitude"].get_xdata()) == [1.0]  # masks keep every MAC: one best point
    assert list({line.get_label(): line for line in compression.get_lines()}["magnitude"].get_xdata()) == pytest.approx([5.0, 2.0])
    # two seeds per point: each method's frontier gets a band (fill_between) on the compression panel
    assert sum(type(c).__name__.endswith("PolyCollection") for c in compression.collections) == 2
    legend = [text.get_text() for text in macs.get_legend().get_texts()]
    assert "hrank (Lin 2020) (paper)" in legend and "magnitude layerwise no fine-tune (paper)" in legend


def test_plot_draws_one_true_frontier_per_method_and_schedule(tmp_path):
    """Schedules at the same budgets are separate lines (colour: method, style: schedule), each only
    its non-dominated points; the old plot joined points of different schedules vertically."""
    rows = []
    for schedule, bonus in (("lamp", 0.02), ("uniform", 0.0)):
        for keep, top1 in ((0.1, 0.80), (0.3, 0.88), (0.5, 0.86)):  # 0.5 is dominated by 0.3
            rows.append({"schedule": schedule, "budget": keep, "params_keep": keep - 0.001 * (schedule == "lamp"),
                         "top1": top1 + bonus})
    figure = plot_frontiers(frame(*rows), str(tmp_path / "plot.png"))
    lines = {line.get_label(): line for line in figure.axes[0].get_lines() if not line.get_label().startswith("_")}
    assert {"magnitude / lamp", "magnitude / uniform"} <= set(lines)
    assert lines["magnitude / lamp"].get_color() == lines["magnitude / uniform"].get_color()
    assert lines["magnitude / lamp"].get_linestyle() != lines["magnitude / uniform"].get_linestyle()
    for label in ("magnitude / lamp", "magnitude / uniform"):
        x, y = lines[label].get_xdata(), lines[label].get_ydata()
        assert len(x) == 2  # the dominated point is a faint dot, not on the line
        order = np.argsort(x)  # x is the compression ratio: more compression, less accuracy (monotone)
        assert (np.diff(np.asarray(y)[order]) < 0).all()


def two_of_everything(root) -> pd.DataFrame:
    """Real Parquet with two methods, two schedules (searched, one-shot uniform) and two quantisers
    at two budgets, every group at its own accuracies, read back as the CLI reads it."""
    changes, number = [], 0
    for method, granularity, metric in (("magnitude", "unstructured", "params"), ("l1_filter", "structured", "macs")):
        for schedule in ("searched", "uniform"):
            for quantizer, bits in (("none", None), ("kmeans", 5)):
                for budget in (0.3, 0.5):
                    for weaker in ((0.0, 0.05) if schedule == "searched" else (0.0,)):  # a search's weaker proposal
                        number += 1
                        top1 = 0.7 + 0.2 * budget + 0.02 * (schedule == "uniform") + 0.01 * (quantizer == "kmeans") \
                            + 0.04 * (method == "l1_filter") - weaker
                        keep = budget - 0.01 * (schedule == "uniform")
                        ratios = [0.2 + weaker, 0.5, 0.8 - 0.3 * (schedule == "uniform")]
                        changes.append({
                            "method": method, "granularity": granularity, "budget_metric": metric, "schedule": schedule,
                            "budget": budget, "top1": top1, "quantizer": quantizer, "quantize_bits_conv": bits,
                            "quantize_bits_fc": bits, "bytes_encoded": int(100_000 * keep * (0.3 if bits else 1)),
                            "params_keep": keep if metric == "params" else keep * 0.8,
                            "macs_keep": keep if metric == "macs" else 1.0,
                            "layer_names": ["conv1", "conv2", "fc"], "layer_ratios": ratios})
    write_rows(root, *changes)
    from prune_ray.results.analyze import load_results

    return load_results(str(root))


def test_the_plot_keeps_one_meaning_per_colour_style_and_marker_and_never_mixes_schedules(tmp_path):
    results = two_of_everything(tmp_path)
    figure = plot_frontiers(results, str(tmp_path / "p.png"))
    points = point_summary(results)
    compression, macs, sizes = figure.axes
    columns = {compression: ("params_keep", lambda keep: 1 / keep), macs: ("macs_keep", lambda keep: keep),
               sizes: ("bytes_encoded", lambda size: size)}
    colours, lines_seen = {}, 0
    for axis, (column, to_x) in columns.items():
        assert axis.get_title()  # every panel says what it shows
        for line in axis.get_lines():
            if line.get_label().startswith("baseline"):
                continue
            groups = set()
            for x, y in zip(line.get_xdata(), line.get_ydata()):
                match = points[np.isclose(to_x(points[column].astype(float)), x) & np.isclose(100 * points["top1_mean"], y)]
                assert len(match), (axis.get_title(), line.get_label(), x, y)
                groups |= set(zip(match["method"], match["schedule"], match["quantize_label"]))
            assert len(groups) == 1, (axis.get_title(), line.get_label(), groups)  # one method, schedule, quantiser
            method, schedule, quantizer = groups.pop()
            colours.setdefault(method, set()).add(line.get_color())
            lines_seen += 1
    assert lines_seen == 3 * 2 * 2 * 2  # three panels, a line per method x schedule x quantiser
    assert {method: len(seen) for method, seen in colours.items()} == {"magnitude": 1, "l1_filter": 1}
    assert colours["magnitude"] != colours["l1_filter"]
    for axis in figure.axes:
        styles = {(line.get_label().split(" / ")[1], str(line.get_linestyle())) for line in axis.get_lines()
                  if " / " in line.get_label()}
        assert len({style for _, style in styles}) == 2 == len(styles)  # schedule <-> line style, one to one
        markers = {(line.get_label().split(" / ")[2], line.get_marker()) for line in axis.get_lines() if " / " in line.get_label()}
        assert len({marker for _, marker in markers}) == 2 == len(markers)  # quantiser <-> marker, one to one
    legend = [text.get_text() for text in sizes.get_legend().get_texts()]
    assert len(legend) == len(set(legend))  # deduplicated
    assert {"magnitude", "l1_filter", "schedule searched", "schedule uniform", "quantiser none", "quantiser kmeans 5/5"} <= set(legend)


def test_plot_layers_shows_each_schedules_kept_fraction_per_layer(tmp_path, capsys):
    from prune_ray.results.plot import plot_layers

    results = two_of_everything(tmp_path)
    out = tmp_path / "layers.png"
    assert main([str(tmp_path), "--plot-layers", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(out) in capsys.readouterr().err
    figure = plot_layers(results, str(tmp_path / "again.png"), budget=0.5)
    assert len(figure.axes) == 2  # one panel per method
    for axis in figure.axes:
        assert "budget 0.5" in axis.get_title()
        assert [tick.get_text() for tick in axis.get_xticklabels()] == ["conv1", "conv2", "fc"]
        kept = {line.get_label(): list(line.get_ydata()) for line in axis.get_lines()}
        method = axis.get_title().split(" at ")[0]
        # the searched pick is the stronger proposal (removed 0.2 of conv1), the one-shot uniform its only trial
        assert kept[f"{method} / searched / none"] == pytest.approx([0.8, 0.5, 0.2])
        assert kept[f"{method} / uniform / kmeans 5/5"] == pytest.approx([0.8, 0.5, 0.5])
