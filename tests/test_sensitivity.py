import pandas as pd
import pytest

from prune_ray.prune import Calibration, get_method
from prune_ray.plan.sensitivity import cached_scan, densities_from_scan, plot, scan
from prune_ray.results.storage import open_storage
from prune_ray.train import evaluate


def test_scan_measures_each_layer_alone(cnn, digits):
    method = get_method("l1_filter")
    calibration = Calibration(digits.example_inputs(1))
    frame = scan(cnn, method, digits, calibration, ratios=(0.5, 0.9))
    layers = [layer.name for layer in method.layers(cnn, calibration.inputs)]
    assert list(frame["layer"].unique()) == layers and len(frame) == 3 * len(layers)
    baseline, _ = evaluate(cnn, digits.val_x, digits.val_y)
    assert (frame.loc[frame["ratio"] == 0.0, "top1"] == baseline).all()
    # pruning 90% of a layer's channels costs accuracy somewhere
    assert frame.loc[frame["ratio"] == 0.9, "top1"].min() < baseline


def test_kept_fractions_follow_how_far_each_layer_can_be_pruned():
    frame = pd.DataFrame(
        [("a", 0.0, 0.9), ("a", 0.5, 0.9), ("a", 0.9, 0.5), ("b", 0.0, 0.9), ("b", 0.5, 0.2), ("b", 0.9, 0.1),
         ("c", 0.0, 0.9), ("c", 0.5, 0.1), ("c", 0.9, 0.1)],
        columns=["layer", "ratio", "top1"],
    )
    keep = densities_from_scan(frame, max_ratio=0.95)
    assert keep == {"a": 0.5, "b": 1.0, "c": 1.0}  # b and c lose accuracy at the first step: keep them whole
    every_ratio_fine = pd.DataFrame([("d", 0.0, 0.9), ("d", 0.99, 0.9)], columns=["layer", "ratio", "top1"])
    assert densities_from_scan(every_ratio_fine, max_ratio=0.95) == {"d": pytest.approx(0.05)}  # never below 1 - max_ratio


def test_scan_is_cached_in_the_storage_and_plotted(tmp_path, cnn, digits):
    method = get_method("magnitude")
    storage = open_storage(str(tmp_path))
    calibration = Calibration(digits.example_inputs(1))
    first = cached_scan(storage, "key", cnn, method, digits, calibration, ratios=(0.5,))
    assert (tmp_path / "sensitivity" / "key-magnitude.parquet").exists()
    with counting_scan(method) as calls:
        again = cached_scan(storage, "key", cnn, method, digits, calibration, ratios=(0.5,))
    assert calls == [] and again.equals(first)
    plot(first, str(tmp_path / "s.png"), "title")
    assert (tmp_path / "s.png").stat().st_size > 5000


class counting_scan:
    """Counts calls of sensitivity.scan while active (a cache hit must make none)."""

    def __init__(self, method):
        self.method, self.calls = method, []

    def __enter__(self):
        import prune_ray.plan.sensitivity as sensitivity

        self.original = sensitivity.scan
        sensitivity.scan = lambda *args, **kwargs: self.calls.append(args) or self.original(*args, **kwargs)
        return self.calls

    def __exit__(self, *exc):
        import prune_ray.plan.sensitivity as sensitivity

        sensitivity.scan = self.original
