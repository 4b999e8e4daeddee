"""The race schedule in one trial (no Ray): proposals meet the budget, the proxy decides round 1,
every prior races in the final round, the winner is the trial's model; bad race shapes are refused."""

import dataclasses

import pytest

from prune_ray.measure import resource
from prune_ray.plan import Subject
from prune_ray.plan.proxy import Scorer
from prune_ray.plan.race import draw_proposals, portfolio_plans
from prune_ray.points import OperatingPoint, TrialConfig
from prune_ray.prune import get_method
from prune_ray.results import read_results, read_steps
from prune_ray.spec import SpecError, SweepSpec, spec_from_yaml
from prune_ray.trial import TrialContext, run_trial

SMALL_RACE = "search: {proposals: 10, race_keep: [4, 2, 1], race_epochs: [1, 1], curve_points: 4}\n"


def race_spec(tmp_path, extra: str = "", distill: float = 0.0) -> SweepSpec:
    return spec_from_yaml(f"schedule: race\nstorage: {tmp_path}\nbaseline: {{train: {{epochs: 2}}}}\n"
                          f"finetune: {{epochs: 1, lr: 0.01, distill: {distill}}}\nmeasure: {{latency_repeats: 2}}\n"
                          f"{SMALL_RACE}{extra}", "t")


@pytest.mark.parametrize("method, budget", [("magnitude", 0.05), ("l1_filter", 0.3)])
def test_proposals_are_distinct_plans_that_meet_the_budget(cnn, digits, method, budget):
    method = get_method(method)
    x = digits.example_inputs(1)
    subject = Subject(cnn, method, method.layers(cnn, x), x, method.default_metric, resource(cnn, x, method.default_metric),
                      scorer=Scorer.of(cnn, digits))
    spec = dataclasses.replace(SweepSpec(), search=dataclasses.replace(SweepSpec().search, proposals=12,
                                                                        portfolio=("lamp", "global")))
    priors = portfolio_plans(subject, budget, spec)
    proposals = draw_proposals(subject, budget, spec, priors, seed=0)
    assert [(name, first) for name, first, _ in proposals[:2]] == [("lamp", True), ("global", True)]
    assert len(proposals) == 12 and not any(first for _, first, _ in proposals[2:])
    assert len({tuple(sorted(plan.items())) for _, _, plan in proposals}) == 12
    resource_of = subject.resource_fn()
    for _, _, plan in proposals:
        assert budget * 0.98 <= resource_of(plan) / subject.baseline_resource <= budget


@pytest.fixture(scope="module")
def race_trial(tmp_path_factory):
    """One race trial (distilled: the path with the most to get the same), shared by the two tests
    that read it: (its root, its row)."""
    root = tmp_path_factory.mktemp("race")
    spec = race_spec(root, distill=0.5)
    row = run_trial(TrialConfig(OperatingPoint(0.05, "magnitude", 0)), TrialContext(spec, "s", {}, None), "r1")
    return root, row


@pytest.mark.slow  # a whole race trial (about 15 s): the full suite's, not the fast tier's
@pytest.mark.xdist_group("race_trial")
def test_a_race_trial_keeps_the_final_rounds_best_and_counts_its_epochs(race_trial):
    tmp_path, row = race_trial
    assert row["status"] == "ok", row.get("error")
    steps = read_steps(str(tmp_path), "s", "race")
    assert len(steps[steps["round"] == 0]) == 10  # every proposal scored by both proxies
    assert steps[["proxy_kl", "proxy_loss"]].notna().all().all()
    first = steps[steps["round"] == 1]
    scored = steps[steps["round"] == 0].sort_values("proxy_loss")  # digits_cnn has BatchNorm: bn_loss ranks
    assert sorted(first["proposal"]) == sorted(scored["proposal"].head(4))
    final = steps[steps["round"] == 3]
    assert set(final["prior"][final["is_prior"]]) == {"lamp", "global", "knapsack"}  # the whole portfolio
    assert row["top1"] == pytest.approx(final["top1"].max())  # the winner is the trial's model
    # rounds 4 x 1 + 2 x 1 epochs, and the final round's entries besides the winner at 1 epoch each
    assert row["search_epochs"] == 4 + 2 + (len(final) - 1) * 1 and row["finetune_epochs"] == 1
    assert row["proxy"] == "bn_loss" and row["proxy_score"] > 0
    assert read_results(str(tmp_path), "s")["params_keep"].iloc[0] <= 0.05


@pytest.mark.parametrize("search, message", [
    ("{race_keep: [4, 4, 1]}", "search.race_keep: [4, 4, 1] must be decreasing positive counts"),
    ("{race_keep: [4, 1], race_epochs: [1, 3]}", "search.race_epochs: [1, 3] needs one positive epoch count per round"),
    ("{proposals: 8, race_keep: [16, 4, 1]}", "search.proposals: 8 is fewer than race_keep's first round (16)"),
    ("{portfolio: [lamp, searched]}", "search.portfolio: ['lamp', 'searched']; allowed: one or more of"),
    ("{proxy: accuracy}", "search.proxy"),
])
def test_bad_race_shapes_are_refused_in_one_line(search, message):
    with pytest.raises(SpecError) as refusal:
        spec_from_yaml(f"schedule: race\nsearch: {search}\n", "spec.yaml")
    assert message in str(refusal.value) and "\n" not in str(refusal.value)


@pytest.mark.slow
@pytest.mark.xdist_group("race_trial")
def test_a_prior_in_the_final_round_is_fine_tuned_as_its_own_one_shot_trial(race_trial):
    """The race's final round gives each prior exactly the trial its one-shot schedule would run (same
    baseline, seed, BatchNorm recalibration, epochs and distillation from the baseline), so the race
    cannot lose to the best prior by fine-tuning it differently."""
    tmp_path, race = race_trial
    lamp = dataclasses.replace(race_spec(tmp_path, distill=0.5), schedule="lamp")
    alone = run_trial(TrialConfig(OperatingPoint(0.05, "magnitude", 0)), TrialContext(lamp, "l", {}, None), "l1")
    assert race["status"] == alone["status"] == "ok"
    steps = read_steps(str(tmp_path), "s", "race")
    final_lamp = steps[(steps["round"] == 3) & steps["is_prior"] & (steps["prior"] == "lamp")]
    assert final_lamp["top1"].iloc[0] == pytest.approx(alone["top1"], abs=1e-9)
    assert race["top1"] >= alone["top1"]
