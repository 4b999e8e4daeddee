import copy
import dataclasses

import pytest
import torch

from prune_ray.measure import resource
from prune_ray.models import create_model
from prune_ray.prune import Calibration, get_method, ratios_to_counts
from prune_ray.plan import PlanOptions, Proposal, Subject, get_schedule, list_schedules, plan_removal
from prune_ray.plan.allocations import lamp_scores, unit_scores
from prune_ray.plan.densities import erk_densities, densities_of, project_densities
from prune_ray.plan.proxy import Scorer
from prune_ray.plan.searched import AUTO_PRIOR, priors, theta_key
from prune_ray.spec import SweepSpec

ONE_SHOT_BUDGETED = [s for s in list_schedules() if get_schedule(s).takes == "budget" and get_schedule(s).plan]
# a proposal every schedule can read: shape weights / kept fractions (w...) and log-multipliers (t...)
MIXED = {"w000": 0.3, "w001": 1.0, "w002": 0.7, "w003": 0.2, "w004": 0.9, "w005": 0.5,
         "t000": 0.4, "t001": -0.9, "t002": 1.0, "t003": -1.0, "t004": 0.0, "t005": 0.7}


def achieved(cnn, method, removed, x, metric):
    return resource(method.prune(copy.deepcopy(cnn), removed, Calibration(x)), x, metric)


_CURVES: dict = {}  # knapsack's sensitivity curves, per (weights, curve): computed once per test process


# knapsack's curves at 4 kept fractions per layer, not 12: the same code, a third of the forward passes
SHORT_CURVES = PlanOptions(curve_points=4)


def memo(model):
    fingerprint = float(sum(parameter.detach().double().abs().sum() for parameter in model.parameters()))

    def cache(name, compute):
        key = (fingerprint, name)
        if key not in _CURVES:
            _CURVES[key] = compute()
        return _CURVES[key]

    return cache


def subject_of(model, method, x, metric=None, data=None):
    """The subject a trial would plan for; with `data`, its proxy scorer too (knapsack, race)."""
    metric = metric or method.default_metric
    scorer = Scorer.of(model, data, cache=memo(model)) if data is not None else None
    return Subject(model, method, method.layers(model, x), x, metric, resource(model, x, metric), scorer=scorer)


def test_every_schedule_is_a_registry_entry_that_plans_one_way():
    names = list_schedules()
    assert {"searched", "uniform", "layer_type", "global", "knapsack", "race", "fixed", "netadapt"} <= set(names)
    for name in names:
        entry = get_schedule(name)
        assert (entry.plan is None) != (entry.adapt is None) and entry.takes in ("budget", "ratios")


@pytest.mark.parametrize("schedule", ONE_SHOT_BUDGETED)
@pytest.mark.parametrize("method_name", ["magnitude", "l1_filter"])
@pytest.mark.parametrize("budget", [0.6, 0.3, 0.05])
def test_every_budgeted_schedule_meets_the_budget(schedule, method_name, budget, cnn, digits):
    """Every one-shot schedule meets the budget as exactly as the others: at most it, within 2%
    (a schedule that cannot serve the method says so in its check, before any trial)."""
    method = get_method(method_name)
    metric = method.default_metric
    x = digits.example_inputs(1)
    subject = subject_of(cnn, method, x, data=digits)
    try:
        get_schedule(schedule).check(SweepSpec(), subject)
    except ValueError as refusal:
        assert schedule == "erk" and method.granularity == "structured", refusal
        return
    removed = plan_removal(schedule, subject, budget, Proposal(MIXED), SHORT_CURVES)
    kept = achieved(cnn, method, removed, x, metric) / subject.baseline_resource
    assert budget * 0.98 <= kept <= budget, kept
    most = {layer.name: int(method.max_ratio * layer.units + 1e-9) for layer in subject.layers}
    assert all(0 <= removed[name] <= most[name] for name in most)  # no layer emptied


@pytest.mark.parametrize("prior", priors())
@pytest.mark.parametrize("method_name", ["magnitude", "l1_filter"])
def test_searched_at_theta_zero_is_its_prior_exactly(prior, method_name, cnn, digits):
    """Every prior search.prior may name (auto and each registered one-shot allocation) is, at
    theta = 0, exactly that allocation's plan; a prior that cannot serve the method is refused."""
    method = get_method(method_name)
    subject = subject_of(cnn, method, digits.example_inputs(1), data=digits)
    assert set(AUTO_PRIOR.values()) <= set(priors())  # auto names registered one-shot allocations only
    options = PlanOptions(prior=prior, curve_points=4)
    spec = dataclasses.replace(SweepSpec(), search=options)
    name = {"magnitude": "lamp", "l1_filter": "global"}[method_name] if prior == "auto" else prior
    try:
        get_schedule("searched").check(spec, subject)
    except ValueError as refusal:
        assert name == "erk" and method.granularity == "structured", refusal
        assert f"search.prior 'erk' cannot serve method {method_name!r}" in str(refusal)
        return
    zeros = Proposal({theta_key(i): 0.0 for i in range(len(subject.layers))})
    assert plan_removal("searched", subject, 0.1, zeros, options) == plan_removal(name, subject, 0.1, options=options)


@pytest.mark.parametrize("seed", range(6))
def test_searched_meets_the_budget_on_extreme_proposals_without_saturating(seed, cnn, digits):
    """Thetas at the ends of their range, under a tight budget: the projection meets the budget, and
    layers keep the prior's order of magnitude instead of all being driven to max_ratio."""
    method, x = get_method("magnitude"), digits.example_inputs(1)
    subject = subject_of(cnn, method, x)
    generator = torch.Generator().manual_seed(seed)
    thetas = {theta_key(i): float(v) for i, v in enumerate((torch.randint(0, 2, (len(subject.layers),), generator=generator) * 2 - 1))}
    removed = plan_removal("searched", subject, 0.02, Proposal(thetas))
    kept = achieved(cnn, method, removed, x, "params") / subject.baseline_resource
    assert 0.02 * 0.98 <= kept <= 0.02
    keep = densities_of(subject.layers, removed)
    at_cap = sum(k <= 1 - method.max_ratio + 1e-3 for k in keep.values())
    assert at_cap < len(keep)  # not every layer saturated


def test_lamp_keeps_every_layer_alive_and_scores_the_largest_weight_one(cnn, digits):
    method, x = get_method("magnitude"), digits.example_inputs(1)
    subject = subject_of(cnn, method, x)
    scores = lamp_scores(cnn, method, subject.layers)
    for layer in subject.layers:
        weight = cnn.get_submodule(layer.name).weight.detach().abs().flatten()
        assert float(scores[layer.name][weight.argmax()]) == pytest.approx(1.0)
        by_magnitude = scores[layer.name][torch.argsort(weight)]
        assert bool((by_magnitude.diff() >= -1e-12).all())  # monotone in |w| within a layer
    removed = plan_removal("lamp", subject, 0.02)
    assert all(removed[layer.name] < layer.units for layer in subject.layers)


def test_erk_keeps_small_layers_denser_and_refuses_channels(cnn, digits):
    x = digits.example_inputs(1)
    magnitude = get_method("magnitude")
    density = erk_densities(cnn, magnitude.layers(cnn, x))
    assert density["conv1"] > density["conv4"] and density["fc2"] > density["fc1"]
    with pytest.raises(ValueError, match="schedule 'erk' sets the weight density"):
        get_schedule("erk").check(SweepSpec(), subject_of(cnn, get_method("l1_filter"), x))


def test_the_log_space_projection_keeps_the_ratios_between_unclamped_layers(cnn, digits):
    method, x = get_method("magnitude"), digits.example_inputs(1)
    subject = subject_of(cnn, method, x)
    keep = {layer.name: 0.4 if i % 2 else 0.1 for i, layer in enumerate(subject.layers)}
    projection = project_densities(subject.layers, keep, subject.resource_fn(), 0.08 * subject.baseline_resource,
                              max_ratio=method.max_ratio, tolerance=0.0)
    kept = densities_of(subject.layers, projection.removed)
    big = [layer.name for i, layer in enumerate(subject.layers) if i % 2 and kept[layer.name] < 1]
    small = [layer.name for i, layer in enumerate(subject.layers) if not i % 2 and kept[layer.name] > 1 - method.max_ratio]
    assert big and small, kept  # a pair of unclamped layers to compare
    for name_big, name_small in zip(big, small):
        assert kept[name_big] / kept[name_small] == pytest.approx(4.0, rel=0.15)


def test_global_threshold_prunes_low_magnitude_layers_hardest(cnn, digits):
    method = get_method("magnitude")
    x = digits.example_inputs(1)
    layers = method.layers(cnn, x)
    removed = plan_removal("global", subject_of(cnn, method, x, "params"), 0.4)
    ratios = {layer.name: removed[layer.name] / layer.units for layer in layers}
    median = {layer.name: float(cnn.get_submodule(layer.name).weight.abs().median()) for layer in layers}
    # one threshold: a layer of small weights loses more than a layer of large weights
    smallest, largest = min(median, key=median.get), max(median, key=median.get)
    assert ratios[smallest] > ratios[largest]
    assert len({round(r, 2) for r in ratios.values()}) > 1  # not uniform


def test_layer_type_shares_one_ratio_per_layer_type(cnn, digits):
    method = get_method("magnitude")
    x = digits.example_inputs(1)
    layers = method.layers(cnn, x)
    removed = plan_removal("layer_type", subject_of(cnn, method, x, "params"), 0.4, Proposal({"w000": 0.2, "w001": 1.0}))
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
