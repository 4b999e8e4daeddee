import copy

import pytest
import torch

from prune_ray.measure import resource
from prune_ray.models import create_model
from prune_ray.prune import Calibration, get_method, ratios_to_counts
from prune_ray.plan import Subject, get_schedule, list_schedules, plan_removal
from prune_ray.plan.schedules import unit_scores
from prune_ray.points import Proposal

ONE_SHOT_BUDGETED = [s for s in list_schedules() if get_schedule(s).takes == "budget" and get_schedule(s).plan]


def achieved(cnn, method, removed, x, metric):
    return resource(method.prune(copy.deepcopy(cnn), removed, Calibration(x)), x, metric)


def subject_of(model, method, x, metric=None):
    metric = metric or method.default_metric
    return Subject(model, method, method.layers(model, x), x, metric, resource(model, x, metric))


def test_every_schedule_is_a_registry_entry_that_plans_one_way():
    names = list_schedules()
    assert {"searched", "uniform", "conv_fc", "global", "sensitivity", "fixed", "netadapt"} <= set(names)
    for name in names:
        entry = get_schedule(name)
        assert (entry.plan is None) != (entry.adapt is None) and entry.takes in ("budget", "ratios")


@pytest.mark.parametrize("schedule", ONE_SHOT_BUDGETED)
@pytest.mark.parametrize("method_name", ["magnitude", "l1_filter"])
@pytest.mark.parametrize("budget", [0.6, 0.3])
def test_every_budgeted_schedule_meets_the_budget(schedule, method_name, budget, cnn, digits):
    method = get_method(method_name)
    metric = method.default_metric
    x = digits.example_inputs(1)
    subject = subject_of(cnn, method, x)
    shape = {"w000": 0.3, "w001": 1.0, "w002": 0.7, "w003": 0.2, "w004": 0.9, "w005": 0.5}
    removed = plan_removal(schedule, subject, budget, Proposal(shape))
    kept = achieved(cnn, method, removed, x, metric) / subject.baseline_resource
    assert budget * 0.98 <= kept <= budget, kept


def test_global_threshold_prunes_low_magnitude_layers_hardest(cnn, digits):
    method = get_method("magnitude")
    x = digits.example_inputs(1)
    layers = method.layers(cnn, x)
    removed = plan_removal("global", subject_of(cnn, method, x, "params"), 0.4, Proposal())
    ratios = {layer.name: removed[layer.name] / layer.units for layer in layers}
    median = {layer.name: float(cnn.get_submodule(layer.name).weight.abs().median()) for layer in layers}
    # one threshold: a layer of small weights loses more than a layer of large weights
    smallest, largest = min(median, key=median.get), max(median, key=median.get)
    assert ratios[smallest] > ratios[largest]
    assert len({round(r, 2) for r in ratios.values()}) > 1  # not uniform


def test_conv_fc_shares_one_ratio_per_layer_type(cnn, digits):
    method = get_method("magnitude")
    x = digits.example_inputs(1)
    layers = method.layers(cnn, x)
    removed = plan_removal("conv_fc", subject_of(cnn, method, x, "params"), 0.4, Proposal({"w000": 0.2, "w001": 1.0}))
    ratios = {layer.name: removed[layer.name] / layer.units for layer in layers}
    conv = [r for n, r in ratios.items() if n.startswith("conv")]
    fc = [r for n, r in ratios.items() if n.startswith("fc")]
    assert max(conv) - min(conv) < 0.02 and max(fc) - min(fc) < 0.02
    assert min(fc) > max(conv)  # the fc weight 1.0 against conv 0.2: fc layers pruned harder


def test_global_schedule_refuses_low_rank(cnn, digits):
    method = get_method("cp")
    with pytest.raises(ValueError, match="schedule 'global' ranks single weights or channels"):
        unit_scores(cnn, method, method.layers(cnn, digits.example_inputs(1)))


def test_netadapt_is_no_one_shot_plan(cnn, digits):
    method = get_method("l1_filter")
    x = digits.example_inputs(1)
    with pytest.raises(ValueError, match="netadapt"):
        plan_removal("netadapt", subject_of(cnn, method, x, "macs"), 0.5, Proposal())


def test_global_schedule_ranks_single_weights_of_a_model_with_a_layer_named_fc():
    """ResNets call their classifier `fc`, the name of conv_fc's pseudo-layer: magnitude's layers are
    still real modules, so the global schedule scores their weights."""
    model = create_model("resnet20", num_classes=10, in_channels=3, image_size=32)
    method = get_method("magnitude")
    layers = method.layers(model, torch.zeros(1, 3, 32, 32))
    scores = unit_scores(model, method, layers)
    assert scores["fc"].numel() == model.fc.weight.numel() and len(scores) == len(layers)


def test_a_ratio_near_max_ratio_keeps_a_channel_of_a_small_layer(digits):
    """0.95 x 6 channels rounds to 6: the cap keeps one, so LeNet-5 still runs."""
    model = create_model("lenet5", num_classes=10, in_channels=1, image_size=8)
    method = get_method("l1_filter")
    x = digits.example_inputs(1)
    layers = method.layers(model, x)
    counts = ratios_to_counts(0.95, layers, method.max_ratio)
    pruned = method.prune(model, counts, Calibration(x))
    assert pruned.conv1.out_channels == 6 - counts["conv1"] == 1
    assert pruned(x).shape == (1, 10)
