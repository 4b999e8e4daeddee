import copy
import math
from dataclasses import dataclass

import pytest
import torch

from prune_ray.plan.budget import BudgetUnreachableError, measured_resource_fn
from prune_ray.measure import resource
from prune_ray.plan.netadapt import Candidate, local_short_tune, netadapt, short_tune_candidate
from prune_ray.prune import Calibration, get_method
from prune_ray.train import TrainRecipe

BUDGET, STEP = 0.5, 0.15
# one worker: the module-scoped netadapt runs (~9 s each) would otherwise run once per xdist worker
pytestmark = pytest.mark.xdist_group("netadapt-runs")


@dataclass
class Round:
    """What one step's short_tune saw and answered."""

    model: torch.nn.Module  # the current model the candidates prune
    achieved: float  # its measured resource
    candidates: list
    outcomes: list


def recording(short_tune, rounds, example, metric):
    def tune(model, candidates):
        outcomes = short_tune(model, candidates)
        rounds.append(Round(model, resource(model, example, metric), candidates, outcomes))
        return outcomes

    return tune


def state(model):
    return {key: value.clone() for key, value in model.state_dict().items()}


def run_netadapt(model, digits, method_name, metric, budget, step_fraction, epochs):
    method = get_method(method_name)
    x = digits.example_inputs(1)
    short_tune = local_short_tune(method, digits, TrainRecipe(epochs=epochs), Calibration(x), seed=0)
    rounds, heard = [], []
    tune = recording(short_tune, rounds, x, metric)
    result = netadapt(model, method, x, metric, budget, step_fraction, tune, heard.append)
    return result, rounds, heard


@pytest.fixture(scope="module", params=[("l1_filter", "macs"), ("magnitude", "params")], ids=["l1_filter", "magnitude"])
def run(request, trained_cnn, digits):
    method, metric = request.param
    model = copy.deepcopy(trained_cnn)
    before = state(model)
    result, rounds, heard = run_netadapt(model, digits, method, metric, BUDGET, STEP, epochs=1)
    return method, metric, model, before, result, rounds, heard


def test_steps_shrink_the_resource_to_the_budget(run, digits):
    method, metric, model, before, result, rounds, heard = run
    x = digits.example_inputs(1)
    baseline = resource(model, x, metric)
    keeps = [step.resource_keep for step in result.steps]
    assert heard == result.steps and [s.index for s in result.steps] == list(range(1, len(keeps) + 1))
    assert 3 <= len(keeps) <= 4  # every step but the last cuts >= 0.15 of the baseline: ceil(0.5 / 0.15) at most
    assert all(a > b for a, b in zip(keeps, keeps[1:]))
    final = resource(result.model, x, metric) / baseline
    assert BUDGET - STEP < final <= BUDGET  # the last step lands on the budget, within one unit
    # each step's keep is the measured resource of the model it produced, not an estimate
    after = [r.model for r in rounds[1:]] + [result.model]
    assert keeps == [resource(m, x, metric) / baseline for m in after]
    assert state(model).keys() == before.keys() and all(torch.equal(state(model)[k], v) for k, v in before.items())


def test_removed_counts_match_the_pruned_model(run, digits):
    method, metric, model, before, result, rounds, heard = run
    original = {layer.name: layer.units for layer in get_method(method).layers(model, digits.example_inputs(1))}
    assert set(result.removed) == set(original)
    assert sum(result.removed.values()) == sum(step.removed for step in result.steps)
    modules = dict(result.model.named_modules())
    if method == "l1_filter":  # channels physically gone
        assert {name: modules[name].weight.shape[0] for name in original} == {
            name: units - result.removed[name] for name, units in original.items()
        }
    else:  # masks held through the short fine-tunes: exactly the removed weights are zero
        assert {name: int((modules[name].weight == 0).sum()) for name in original} == result.removed


def test_winner_is_the_best_candidate_and_candidates_are_minimal(run, digits):
    method, metric, model, before, result, rounds, heard = run
    x = digits.example_inputs(1)
    baseline = resource(model, x, metric)
    spec = get_method(method)
    assert len(rounds) == len(result.steps)
    for step, r in zip(result.steps, rounds):
        step_target = max(BUDGET * baseline, r.achieved - STEP * baseline)
        assert step.top1 == max(outcome.top1 for outcome in r.outcomes)
        resource_of = measured_resource_fn(r.model, spec, x, metric)
        for candidate, outcome in zip(r.candidates, r.outcomes):  # 0.15 steps: some layer always fits, no fallback
            # the candidate's resource is the real pruned model's, it meets the step, one unit fewer does not
            assert resource(outcome.fetch(), x, metric) == candidate.resource <= step_target
            assert resource_of({candidate.layer: candidate.removed - 1}) > step_target


def test_no_layer_reaching_the_step_falls_back_to_each_layers_largest_cut(cnn, digits):
    # one conv group removes at most ~55% of the MACs, so a 0.6 step needs every layer at its cap
    result, rounds, _ = run_netadapt(cnn, digits, "l1_filter", "macs", 0.4, 0.6, epochs=0)
    spec = get_method("l1_filter")
    units = {layer.name: layer.units for layer in spec.layers(cnn, digits.example_inputs(1))}
    first = rounds[0]
    assert {c.layer: c.removed for c in first.candidates} == {n: math.floor(spec.max_ratio * u) for n, u in units.items()}
    assert all(c.resource > 0.4 * first.achieved for c in first.candidates)
    assert result.steps[-1].resource_keep <= 0.4 and len(result.steps) >= 2


@pytest.mark.parametrize(
    "method, budget, step_fraction, fragment",
    [
        ("tucker", 0.5, 0.1, "netadapt prunes a layer again and again"),
        ("l1_filter", 0.0, 0.1, "budget 0.0 is outside"),
        ("l1_filter", 1.5, 0.1, "budget 1.5 is outside"),
        ("magnitude", 0.5, 0.0, "step_fraction 0.0 is outside"),
        ("magnitude", 0.5, 1.0, "step_fraction 1.0 is outside"),
    ],
)
def test_bad_arguments(method, budget, step_fraction, fragment, cnn, digits):
    never = lambda model, candidates: pytest.fail("no candidate should be tuned")  # noqa: E731
    with pytest.raises(ValueError, match=fragment):
        netadapt(cnn, get_method(method), digits.example_inputs(1), "macs", budget, step_fraction, never)


def test_unreachable_budget_fails_before_any_fine_tuning(cnn, digits):
    never = lambda model, candidates: pytest.fail("no candidate should be tuned")  # noqa: E731
    with pytest.raises(BudgetUnreachableError, match="budget unreachable"):
        netadapt(cnn, get_method("l1_filter"), digits.example_inputs(1), "macs", 0.001, 0.15, never)


def test_budget_one_prunes_nothing(cnn, digits):
    result, rounds, _ = run_netadapt(cnn, digits, "magnitude", "params", 1.0, 0.15, epochs=0)
    assert result.steps == [] and rounds == [] and set(result.removed.values()) == {0}


@pytest.mark.parametrize("method, layer, count", [("l1_filter", "conv2", 20), ("magnitude", "fc1", 5000)])
def test_short_tune_candidate_leaves_the_model_alone(method, layer, count, cnn, digits):
    before = state(cnn)
    calibration = Calibration(digits.example_inputs(1))
    candidate = Candidate(layer, count, resource=0.0)  # resource is not read when tuning
    recipe = TrainRecipe(epochs=1)
    top1, tuned = short_tune_candidate(cnn, get_method(method), candidate, digits, recipe, calibration, seed=0)
    assert state(cnn).keys() == before.keys() and all(torch.equal(state(cnn)[k], v) for k, v in before.items())
    assert tuned is not cnn and 0.5 < top1 <= 1.0
