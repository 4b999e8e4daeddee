import copy

import pytest

from prune_ray.prune.iterative import Cadence, FineTune, cumulative_counts, increments, prune_and_finetune
from prune_ray.measure import count_params
from prune_ray.prune import Calibration, get_method, ratios_to_counts
from prune_ray.spec import SpecError, SweepSpec, with_overrides
from prune_ray.train import TrainRecipe


def test_cycles_are_equal_steps_and_agp_is_cubic():
    final = {"a": 90, "b": 30}
    assert cumulative_counts(final, 3, "cycles") == [{"a": 30, "b": 10}, {"a": 60, "b": 20}, {"a": 90, "b": 30}]
    agp = [c["a"] for c in cumulative_counts(final, 3, "agp")]
    assert agp == [63, 86, 90]  # 90 * (1 - (1 - k/3)^3): most pruning early, when the net adapts best
    assert [sum(d.values()) for d in increments(final, 3, "cycles")] == [40, 40, 40]
    assert [sum(d.values()) for d in increments(final, 4, "cycles")] == [29, 31, 29, 31]  # floor(k/4 * n)


def _sparsity(model) -> float:
    total, nonzero = count_params(model)
    return 1 - nonzero / total


@pytest.mark.parametrize("mode, steps", [("oneshot", 1), ("cycles", 3), ("agp", 3)])
def test_every_mode_reaches_the_same_final_sparsity(mode, steps, cnn, digits):
    method = get_method("magnitude")
    final = ratios_to_counts(0.6, method.layers(cnn, digits.example_inputs(1)), method.max_ratio)
    reports, pruned_accuracy = [], []
    tuning = FineTune(digits, TrainRecipe(epochs=3), seed=0, on_epoch=reports.append,
                      on_pruned=lambda top1, top5, top1_bn: pruned_accuracy.append((top1, top5)))
    outcome = prune_and_finetune(copy.deepcopy(cnn), method, final, Cadence(mode, steps), tuning,
                                 Calibration(digits.example_inputs(1)))
    zeros = {name: int((m.weight == 0).sum()) for name, m in outcome.model.named_modules() if name in final}
    assert zeros == final  # exactly the planned weights are zero, masks held through training
    expected_epochs = 3 * steps if mode == "cycles" else 3
    assert [r.epoch for r in reports] == list(range(1, expected_epochs + 1))
    # heard once per pruning step (agp: once, when the final sparsity is reached)
    assert len(pruned_accuracy) == (1 if mode == "agp" else steps)
    assert all(0 <= top1 <= top5 <= 1 for top1, top5 in pruned_accuracy)


def test_structured_cycles_remove_channels_step_by_step(cnn, digits):
    method = get_method("l1_filter")
    layers = method.layers(cnn, digits.example_inputs(1))
    final = ratios_to_counts(0.5, layers, method.max_ratio)
    outcome = prune_and_finetune(copy.deepcopy(cnn), method, final, Cadence("cycles", 2),
                                 FineTune(digits, TrainRecipe(epochs=1), seed=0), Calibration(digits.example_inputs(1)))
    modules = dict(outcome.model.named_modules())
    assert all(modules[layer.name].weight.shape[0] == layer.units - final[layer.name] for layer in layers)


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"iterative": "agp", "methods": ("l1_filter",), "prune_steps": (2,)}, "'agp' prunes masks"),
        ({"iterative": "cycles", "methods": ("cp",)}, "cannot re-factorise"),
        ({"prune_steps": (3,)}, "needs iterative 'cycles' or 'agp'"),
        ({"iterative": "agp", "methods": ("magnitude",), "prune_steps": (9,)}, "9 steps need as many finetune.epochs"),
        ({"iterative": "gradual"}, "unknown value 'gradual'"),
        ({"schedule": "fixed"}, "needs at least one ratio"),
        ({"fixed_ratios": (0.5,)}, "only used by schedule 'fixed'"),
        ({"schedule": "fixed", "fixed_ratios": (1.5,)}, "ratio 1.5 is outside"),
    ],
)
def test_bad_iterative_and_fixed_specs(changes, fragment):
    with pytest.raises(SpecError, match=fragment):
        with_overrides(SweepSpec(), **changes)
