"""One sweep compares prune-only with k-means at two bit widths (a mapping and one number) on digits, in process as the CLI
runs it (sweep.main, on the worker's local Ray): every row, its encoded model reloading to the row's accuracy, bytes that are the files',
the analysis's Deep Compression columns and its plot (int8 and binary: test_quantize_trial, no Ray)."""

import os

import pytest

from prune_ray import analyze, load_pruned, sweep
from prune_ray.data import load_dataset
from prune_ray.results import read_results
from prune_ray.train import evaluate

pytestmark = pytest.mark.ray

SPEC = """
name: q
methods: [magnitude]
budgets: [0.1]
schedule: uniform
quantize: [none, kmeans]
quantize_bits: [{conv: 8, fc: 5}, 4]   # 4: every layer at 4 bits
quantize_epochs: 1
baseline: {train: {epochs: 2}}
finetune: {epochs: 1, lr: 0.01}
measure: {latency_batch_size: 8, latency_repeats: 2, latency_min_time_ms: 10.0}
artifacts: {save: all}
search: {max_concurrent: 2}
"""


def test_one_sweep_compares_quantizers_and_bit_widths(tmp_path, local_ray, capsys):
    (tmp_path / "spec.yaml").write_text(SPEC)
    assert sweep.main([str(tmp_path / "spec.yaml"), "--storage", str(tmp_path / "results"), "--name", "q"]) == 0
    rows = read_results(str(tmp_path / "results"), "q")
    assert (rows["status"] == "ok").all(), rows["error"].tolist()
    got = sorted(zip(rows["quantizer"], rows["quantize_bits_conv"].fillna(0), rows["quantize_bits_fc"].fillna(0)))
    assert got == [("kmeans", 4, 4), ("kmeans", 8, 5), ("none", 0, 0)]  # int8 and binary: test_quantize_trial
    data = load_dataset("digits")
    for row in rows.itertuples():
        files = [os.path.join(row.model_uri, name) for name in os.listdir(row.model_uri)]
        assert row.bytes_encoded == sum(os.path.getsize(path) for path in files)
        assert row.compression_ratio_total == pytest.approx(4 * row.baseline_params / row.bytes_encoded)
        assert evaluate(load_pruned(row.model_uri), data.val_x, data.val_y)[0] == row.top1  # the saved model is the row's
    by = rows.set_index(rows["quantizer"] + rows["quantize_bits_fc"].fillna(32).astype(str))
    assert by.loc["kmeans4", "bytes_encoded"] < by.loc["kmeans5", "bytes_encoded"] < by.loc["none32", "bytes_encoded"]
    capsys.readouterr()
    assert analyze.main([str(tmp_path / "results"), "--table", "methods"]) == 0
    table = capsys.readouterr().out
    assert "| Params kept | Bits (conv/fc) | Bytes | Compression |" in table
    kmeans = by.loc["kmeans5"]
    assert f"| {kmeans['bytes_encoded']:,} | {kmeans['compression_ratio_total']:.1f}x |" in table
    assert analyze.main([str(tmp_path / "results"), "--plot", str(tmp_path / "q.png")]) == 0
    assert (tmp_path / "q.png").stat().st_size > 10_000
