"""NetAdapt's latency lookup tables: per-layer timings at a grid of channel counts, cached."""

import copy

import pytest
import torch

from prune_ray.measure import count_macs
from prune_ray.plan import Subject, plan_removal
from prune_ray.plan.latency import GRID, cached_table, predict_ms, table_key
from prune_ray.prune import Calibration, get_method
from prune_ray.results.storage import open_storage
from prune_ray.spec import SpecError, SweepSpec, validate


@pytest.fixture(scope="module")
def table_and_storage(trained_cnn, digits, tmp_path_factory):
    storage = open_storage(str(tmp_path_factory.mktemp("latency")))
    key = table_key("digits_cnn", "digits", torch.device("cpu"), 32)
    return cached_table(storage, key, trained_cnn, digits.val_x[:32], "fc2"), storage, key


def test_every_layer_is_timed_at_the_grid_with_the_image_and_classes_fixed(table_and_storage):
    table, _, _ = table_and_storage
    assert list(table.layers) == ["conv1", "conv2", "conv3", "conv4", "fc1", "fc2"]
    assert table.layers["conv1"].ins == [1] and table.layers["fc2"].outs == [10]  # image channels, classes
    assert table.layers["conv2"].outs == sorted({max(1, round(f * 64)) for f in GRID})
    assert all(ms > 0 for layer in table.layers.values() for row in layer.ms for ms in row)


def test_prediction_is_the_baseline_at_full_size_and_falls_with_channels(table_and_storage, cnn, digits):
    table, _, _ = table_and_storage
    assert predict_ms(table, cnn) == pytest.approx(table.baseline_ms)
    method, x = get_method("l1_filter"), digits.example_inputs(1)
    subject = Subject(cnn, method, method.layers(cnn, x), x, "macs", float(count_macs(cnn, x)))
    predictions = []
    for budget in (0.8, 0.5, 0.2):
        removed = plan_removal("uniform", subject, budget)
        predictions.append(predict_ms(table, method.prune(copy.deepcopy(cnn), removed, Calibration(x))))
    assert table.baseline_ms >= predictions[0] >= predictions[1] >= predictions[2]  # a monotone table
    assert predictions[2] < table.baseline_ms


def test_the_table_is_read_back_from_the_storage_not_timed_again(table_and_storage, trained_cnn, digits):
    table, storage, key = table_and_storage
    assert storage.exists(storage.path("latency", f"{key}.json"))
    assert cached_table(storage, key, trained_cnn, digits.val_x[:32], "fc2") == table


def test_a_latency_budget_with_masks_is_a_one_line_spec_error():
    validate(SweepSpec(methods=("l1_filter", "fpgm"), budget_metric="latency"))
    with pytest.raises(SpecError, match="budget_metric 'latency' cannot be met by unstructured method 'magnitude'"):
        validate(SweepSpec(budget_metric="latency"))
    with pytest.raises(SpecError, match="lowrank method 'tucker'"):
        validate(SweepSpec(methods=("tucker",), budget_metric="latency"))
