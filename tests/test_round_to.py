"""prune.round_to: every pruned layer keeps a multiple of N channels (or all), and the projection
still meets the budget on the really pruned model."""

import copy

import pytest

from prune_ray.measure import resource
from prune_ray.plan import PlanOptions, Proposal, Subject, get_schedule, list_schedules, plan_removal
from prune_ray.plan.proxy import Scorer
from prune_ray.plan.budget import rounded, rounded_removal
from prune_ray.plan.netadapt import local_short_tune, netadapt
from prune_ray.prune import Calibration, get_method
from prune_ray.spec import SpecError, SweepSpec, validate
from prune_ray.spec import PruneOptions
from prune_ray.train import TrainRecipe

ROUND_TO = 8
MIXED = {"w000": 0.3, "w001": 1.0, "w002": 0.7, "w003": 0.2, "w004": 0.9,
         "t000": 0.4, "t001": -0.9, "t002": 1.0, "t003": -1.0, "t004": 0.0}
STRUCTURED_SCHEDULES = [s for s in list_schedules() if get_schedule(s).plan and s != "erk"]  # erk: weights only


def channels(model, method, x) -> dict[str, int]:
    """Output channels of each prunable group of the (pruned) model itself."""
    return {layer.name: layer.units for layer in method.layers(model, x)}


def test_rounding_keeps_multiples_and_never_removes_more():
    assert rounded_removal(64, 13, 8) == 8  # keeps 51 -> 56
    assert rounded_removal(64, 16, 8) == 16  # keeps 48 already
    assert rounded_removal(20, 15, 8) == 12  # keeps 5 -> 8
    assert rounded_removal(20, 3, 8) == 0  # keeps 17 -> 24 > 20: all of them
    assert rounded_removal(6, 5, 8) == 0  # fewer units than N: the layer stays whole
    for units in (6, 20, 64):
        for removed in range(units):
            after = rounded_removal(units, removed, 8)
            assert 0 <= after <= removed and ((units - after) % 8 == 0 or after == 0)


@pytest.mark.parametrize("schedule", STRUCTURED_SCHEDULES)
@pytest.mark.parametrize("budget", [0.3])
def test_every_schedule_keeps_multiples_and_meets_the_budget(schedule, budget, cnn, digits):
    method, x = get_method("l1_filter"), digits.example_inputs(1)
    subject = Subject(cnn, method, method.layers(cnn, x), x, "macs", resource(cnn, x, "macs"), ROUND_TO,
                      scorer=Scorer.of(cnn, digits))
    point = budget if get_schedule(schedule).takes == "budget" else 1 - budget  # fixed: a ratio
    # knapsack's curves at 4 points: the same code, a third of the passes
    removed = plan_removal(schedule, subject, point, Proposal(MIXED), PlanOptions(curve_points=4))
    pruned = method.prune(copy.deepcopy(cnn), removed, Calibration(x))
    before, after = channels(cnn, method, x), channels(pruned, method, x)
    assert any(after[name] < before[name] for name in before)  # something was pruned
    for name, count in after.items():
        assert count % ROUND_TO == 0 or count == before[name], (name, count)
    if get_schedule(schedule).takes == "budget":
        kept = resource(pruned, x, "macs") / subject.baseline_resource
        assert budget * 0.85 <= kept <= budget, kept  # steps of 8 channels are coarse in a 32-channel layer


def test_netadapt_keeps_multiples_and_meets_the_budget(cnn, digits):
    method, x = get_method("l1_filter"), digits.example_inputs(1)
    short_tune = local_short_tune(method, digits, TrainRecipe(epochs=0), Calibration(x), seed=0)
    result = netadapt(cnn, method, x, "macs", 0.5, 0.25, short_tune, round_to=ROUND_TO)
    before, after = channels(cnn, method, x), channels(result.model, method, x)
    assert any(after[name] < before[name] for name in before)
    assert all(count % ROUND_TO == 0 or count == before[name] for name, count in after.items()), after
    assert resource(result.model, x, "macs") <= 0.5 * resource(cnn, x, "macs")
    assert rounded(method.layers(cnn, x), result.removed, ROUND_TO) == result.removed


def test_round_to_with_a_method_without_channels_is_a_spec_error():
    validate(SweepSpec(methods=("l1_filter",), prune=PruneOptions(round_to=8)))
    with pytest.raises(SpecError, match="prune.round_to: 8 rounds channel counts, and 'magnitude' is unstructured"):
        validate(SweepSpec(prune=PruneOptions(round_to=8)))
    with pytest.raises(SpecError, match="prune.round_to: 0 must be > 0"):
        validate(SweepSpec(methods=("l1_filter",), prune=PruneOptions(round_to=0)))
