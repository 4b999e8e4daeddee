import copy
import random

import pytest

from prune_ray.plan.budget import BudgetUnreachableError, measured_resource_fn, project
from prune_ray.measure import resource
from prune_ray.prune import Calibration, get_method, list_methods
from prune_ray.prune.unstructured import nonzero_removed_counter


def random_weights(layers, rng: random.Random) -> dict[str, float]:
    """Optuna-like proposals, extremes included: tiny, huge, all equal, one layer dominating."""
    style = rng.choice(["uniform", "extreme", "equal", "one_hot"])
    if style == "uniform":
        return {layer.name: rng.uniform(0.05, 1.0) for layer in layers}
    if style == "extreme":
        return {layer.name: rng.choice([0.05, 1.0]) for layer in layers}
    if style == "equal":
        return dict.fromkeys((layer.name for layer in layers), 0.5)
    hot = rng.choice(layers).name
    return {layer.name: 1.0 if layer.name == hot else 0.05 for layer in layers}


@pytest.mark.parametrize("method", list_methods())
def test_projection_meets_every_budget_within_2_percent(method, cnn, digits):
    spec = get_method(method)
    metric = spec.default_metric
    x = digits.example_inputs(1)
    layers = spec.layers(cnn, x)
    baseline = resource(cnn, x, metric)
    resource_of = measured_resource_fn(cnn, spec, x, metric)
    rng = random.Random(1234)
    for _ in range(12 if spec.granularity == "unstructured" else 8):
        budget = rng.choice([0.9, 0.7, 0.5, 0.3, 0.2, 0.1, rng.uniform(0.1, 0.95)])
        weights = random_weights(layers, rng)
        projection = project(layers, weights, resource_of, budget * baseline, max_ratio=spec.max_ratio)
        # measure the really pruned model, not the projection's own number
        pruned = spec.prune(copy.deepcopy(cnn), projection.removed, Calibration(digits.train_x[:64], digits.train_y[:64]))
        achieved = resource(pruned, x, metric) / baseline
        assert achieved <= budget + 1e-12, (budget, weights)
        assert achieved >= budget * 0.98, (budget, achieved, weights)


def test_unreachable_budget_is_a_clear_error(cnn, digits):
    spec = get_method("l1_filter")
    x = digits.example_inputs(1)
    layers = spec.layers(cnn, x)
    resource_of = measured_resource_fn(cnn, spec, x, "macs")
    with pytest.raises(BudgetUnreachableError, match="budget unreachable"):
        project(layers, dict.fromkeys([l.name for l in layers], 1.0), resource_of, 1.0, max_ratio=spec.max_ratio)


def test_budget_one_prunes_nothing(cnn, digits):
    spec = get_method("magnitude")
    x = digits.example_inputs(1)
    layers = spec.layers(cnn, x)
    baseline = resource(cnn, x, "params")
    projection = project(
        layers, dict.fromkeys([l.name for l in layers], 1.0), measured_resource_fn(cnn, spec, x, "params"),
        baseline, max_ratio=spec.max_ratio,
    )
    assert set(projection.removed.values()) == {0}


COUNTED = ["magnitude", "magnitude_global", "conv_fc"]  # mask the smallest magnitudes first


def test_only_the_magnitude_masks_are_counted(cnn):
    unstructured = [m for m in list_methods() if get_method(m).granularity == "unstructured"]
    assert {m for m in unstructured if nonzero_removed_counter(cnn, get_method(m)) is not None} == set(COUNTED)
    assert "random" in unstructured  # chooses at random: measured on a copy


@pytest.mark.parametrize("method", COUNTED)
def test_counted_nonzero_params_equal_the_really_pruned_copys(method, cnn, digits):
    """The magnitude masks' resource is counted, not measured (budget.measured_resource_fn): the
    count must equal a pruned copy's, exact zeros in the weights included (they are masked first)."""
    spec = get_method(method)
    model = copy.deepcopy(cnn)
    first = next(m for m in model.modules() if hasattr(m, "weight") and m.weight.dim() == 4)
    first.weight.data.view(-1)[:7] = 0.0  # exact zeros: a removal smaller than 7 removes no nonzero weight there
    x = digits.example_inputs(1)
    layers = spec.layers(model, x)
    resource_of = measured_resource_fn(model, spec, x, "params")
    calibration = Calibration(digits.train_x[:64], digits.train_y[:64])
    for fraction in (0.0, 0.001, 0.3, 0.9):
        removed = {layer.name: int(fraction * layer.units) for layer in layers}
        pruned = spec.prune(copy.deepcopy(model), removed, calibration)
        assert resource_of(removed) == resource(pruned, x, "params"), (fraction, removed)
