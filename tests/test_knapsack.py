"""The knapsack schedule's parts: the multiple-choice knapsack against brute force, its use of the
curves, the curves cached per baseline, and the proxies it ranks by (plan.proxy)."""

import copy
import itertools
import random

import pandas as pd
import pytest

from prune_ray.models import create_model
from prune_ray.plan import PlanOptions, Subject, knapsack
from prune_ray.plan.knapsack import choose, curve_counts, knapsack_densities, sensitivity_curves
from prune_ray.plan.proxy import Scorer, resolved_proxy
from prune_ray.prune import Calibration, get_method
from prune_ray.measure import resource


@pytest.mark.parametrize("seed", range(20))
def test_choose_finds_the_least_damage_that_reaches_the_saving(seed):
    """Against every combination, on savings that are whole steps (no discretisation error)."""
    rng = random.Random(seed)
    needed, bins = 10.0, 20
    options = [[(0.0, 0.0)] + [(rng.randint(1, 8) * needed / bins, rng.uniform(0, 5)) for _ in range(4)]
               for _ in range(3)]
    feasible = [combo for combo in itertools.product(*[range(len(layer)) for layer in options])
                if sum(options[i][c][0] for i, c in enumerate(combo)) >= needed - 1e-9]
    chosen = choose(options, needed, bins)
    damage = sum(options[i][c][1] for i, c in enumerate(chosen))
    if not feasible:
        assert chosen == [max(range(len(layer)), key=lambda i: layer[i][0]) for layer in options]
        return
    assert sum(options[i][c][0] for i, c in enumerate(chosen)) >= needed - 1e-9
    assert damage == pytest.approx(min(sum(options[i][c][1] for i, c in enumerate(combo)) for combo in feasible))


def test_knapsack_prunes_the_layer_whose_damage_is_cheap(cnn, digits):
    method, x = get_method("magnitude"), digits.example_inputs(1)
    layers = method.layers(cnn, x)
    base = resource(cnn, x, "params")
    subject = Subject(cnn, method, layers, x, "params", base)
    rows = []
    for index, layer in enumerate(layers):
        for removed in curve_counts(layer.units, method.max_ratio, 12):
            # the first layer is free to prune, every other one costly
            rows.append({"layer": layer.name, "removed": removed, "kept": 1 - removed / layer.units,
                         "damage": 0.0 if index == len(layers) - 2 else 10.0 * removed / layer.units,
                         "saving": float(removed)})
    free = layers[-2]
    budget = 1 - 0.5 * free.units / base  # half of the free layer's weights meet it
    densities = knapsack_densities(subject, budget, pd.DataFrame(rows))
    assert densities[free.name] <= 0.5
    assert all(densities[layer.name] == 1.0 for layer in layers if layer.name != free.name)


def test_curves_come_from_pruning_one_layer_and_are_cached(cnn, digits):
    method, x = get_method("l1_filter"), digits.example_inputs(1)
    computed = []

    def cache(name, compute):
        computed.append(name)
        return compute()

    scorer = Scorer.of(cnn, digits, cache=cache)
    subject = Subject(cnn, method, method.layers(cnn, x), x, "macs", resource(cnn, x, "macs"), scorer=scorer)
    curves = sensitivity_curves(subject, 4)  # 4 points per curve: the same code, a third of the passes
    assert set(curves["layer"]) == {layer.name for layer in subject.layers}
    assert (curves["saving"] > 0).all() and (curves["kept"] < 1).all()
    for _, rows in curves.groupby("layer"):  # more removed, more saved
        assert rows.sort_values("removed")["saving"].is_monotonic_increasing
    from prune_ray.plan import plan_removal

    plan_removal("knapsack", subject, 0.4, options=PlanOptions(curve_points=4))
    assert computed == ["knapsack-l1_filter-macs-bn_loss-4"]


def test_proxies_are_zero_for_the_baseline_and_grow_with_pruning(cnn, digits):
    scorer = Scorer.of(cnn, digits)
    dense = scorer.dense_scores()
    assert dense["kl"] == pytest.approx(0.0, abs=1e-5)
    method = get_method("magnitude")
    layers = method.layers(cnn, digits.example_inputs(1))
    light, heavy = ({layer.name: int(ratio * layer.units) for layer in layers} for ratio in (0.3, 0.97))
    scores = [scorer.scores(method.prune(copy.deepcopy(cnn), plan, Calibration(digits.train_x[:64])))
              for plan in (light, heavy)]
    assert dense["kl"] < scores[0]["kl"] < scores[1]["kl"]
    assert scores[0]["bn_loss"] < scores[1]["bn_loss"]


def test_auto_proxy_follows_batchnorm():
    with_bn = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=8)
    without = create_model("lenet5", num_classes=10, in_channels=1, image_size=8)
    assert resolved_proxy("auto", with_bn) == "bn_loss" and resolved_proxy("auto", without) == "kl"
    assert resolved_proxy("kl", with_bn) == "kl"
    with pytest.raises(ValueError, match="search.proxy: unknown value 'acc'; allowed: auto, bn_loss, kl"):
        resolved_proxy("acc", with_bn)
