"""The analysis of quantised rows, on constructed results whose answers are known by construction:
each quantiser is its own point and frontier, the methods table gets Deep Compression's columns,
rows from before schema v7 count as unquantised at their file's bytes, the plot gets a bytes panel."""

import pandas as pd

from prune_ray.results.frontier import point_summary
from prune_ray.results.plot import plot_frontiers
from prune_ray.results.tables import frontier_table, render
from test_analyze import arrow_backed, frame

BASE = {"method": "magnitude", "budget": 0.1, "params_keep": 0.1, "baseline_params": 200_000, "file_bytes": 80_000}


def quantized_rows() -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        rows += [
            {**BASE, "seed": seed, "quantizer": "none", "top1": 0.97 + 0.01 * seed, "top1_quantized": 0.97 + 0.01 * seed,
             "bytes_encoded": 80_000, "compression_ratio_total": 10.0},
            {**BASE, "seed": seed, "quantizer": "kmeans", "quantize_bits_conv": 8, "quantize_bits_fc": 5,
             "top1": 0.96, "top1_quantized": 0.90, "bytes_encoded": 32_000, "compression_ratio_total": 25.0},
            {**BASE, "seed": seed, "quantizer": "kmeans", "quantize_bits_conv": 4, "quantize_bits_fc": 4,
             "top1": 0.95, "top1_quantized": 0.80, "bytes_encoded": 24_000, "compression_ratio_total": 800_000 / 24_000},
        ]
    return arrow_backed(frame(*rows))


def test_each_quantizer_and_bits_is_a_point_with_its_bytes():
    points = point_summary(quantized_rows())
    assert sorted(points["quantize_label"]) == ["kmeans 4/4", "kmeans 8/5", "none"]
    kmeans = points[points["quantize_label"] == "kmeans 8/5"].iloc[0]
    assert kmeans["n"] == 2 and kmeans["bytes_encoded"] == 32_000 and kmeans["top1_quantized"] == 0.90
    # same keep, lower accuracy: still on the frontier, since each quantiser has its own
    assert len(frontier_table(points)) == 3


def test_the_methods_table_has_params_kept_bits_bytes_and_compression():
    text = render(quantized_rows(), "methods", "markdown")
    lines = text.splitlines()
    assert lines[0] == ("| Method | Network | Dataset | Acc | Sparsity | MACs removed | Params kept | Bits (conv/fc) | Bytes "
                        "| Compression | Notes |")
    assert lines[2:] == [
        "| Baseline | resnet56 | cifar10 | 93.00 ± 0.00% | 0.00% | 0.00% | 100.00% | 32 | 800,000 | 1.0x | 2 seeds |",
        "| magnitude | resnet56 | cifar10 | 95.00 ± 0.00% | 90.00% | 0.00% | 10.00% | 4/4 | 24,000 | 33.3x "
        "| budget 0.1 params, searched, kmeans quantised; 2 seeds |",
        "| magnitude | resnet56 | cifar10 | 96.00 ± 0.00% | 90.00% | 0.00% | 10.00% | 8/5 | 32,000 | 25.0x "
        "| budget 0.1 params, searched, kmeans quantised; 2 seeds |",
        "| magnitude | resnet56 | cifar10 | 97.50 ± 0.71% | 90.00% | 0.00% | 10.00% | 32 | 80,000 | 10.0x "
        "| budget 0.1 params, searched; 2 seeds |",  # the float trial, at its file's bytes
    ]
    csv = render(quantized_rows(), "methods", "csv")
    assert "params_kept_pct,bits,bytes,compression_total" in csv.splitlines()[0]


def test_rows_before_v7_count_as_unquantised_at_their_files_bytes():
    old = arrow_backed(frame({**BASE, "top1": 0.97}))  # no quantizer, bytes_encoded nor ratio columns
    point = point_summary(old).iloc[0]
    assert point["quantizer"] == "none" and point["bytes_encoded"] == 80_000
    assert point["compression_ratio_total"] == 4 * 200_000 / 80_000
    assert "Bits" not in render(old, "methods", "markdown")  # nothing quantised: the table as before


def test_the_plot_puts_prune_only_and_quantised_points_on_one_bytes_axis(tmp_path):
    figure = plot_frontiers(quantized_rows(), str(tmp_path / "q.png"), literature=pd.DataFrame(
        columns=["model", "dataset", "method", "params_removed", "macs_removed", "speedup", "pruned_top1"]))
    sizes = figure.axes[2]
    assert sizes.get_xscale() == "log" and "bytes" in sizes.get_xlabel()
    lines = {line.get_label(): line for line in sizes.get_lines() if not line.get_label().startswith("_")}
    assert set(lines) >= {"magnitude / none", "magnitude / kmeans 8/5", "magnitude / kmeans 4/4"}
    assert list(lines["magnitude / kmeans 4/4"].get_xdata()) == [24_000]
    assert (tmp_path / "q.png").stat().st_size > 10_000
