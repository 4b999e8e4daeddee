"""Saved pruned models: every method of the registry, through a real trial, saved and reloaded.

The reloaded model must be the trial's model: the same outputs, parameters and MACs as its row, and
the row's top-1 on the row's data. Files are really smaller (sparse masks, smaller shapes), and a
broken file is a one-line error naming it, never an unpickled object.
"""

import dataclasses
import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from prune_ray import load_pruned
from prune_ray.artifacts import ArtifactError, model_directory, plan_of, read_plan
from prune_ray.measure import measure
from prune_ray.points import OperatingPoint, TrialConfig
from prune_ray.prune import get_method, list_methods
from prune_ray.results import read_results
from prune_ray.spec import ArtifactOptions, SweepSpec
from prune_ray.train import TrainRecipe, evaluate
from prune_ray.trial import Runtime, TrialContext, TrialRun, run_trial

# Every method on digits_cnn; on resnet20 (residual adds couple the channels a plan removes) one
# method per kind of saved architecture: masks, channels removed, CP factors, Tucker-2 factors
RESIDUAL_METHODS = ("magnitude", "l1_filter", "cp", "tucker")
FAST_RELOADS = (*RESIDUAL_METHODS, "slimming")  # the fast tier's cut (one per kind, and BN-scaled channels)
BUDGETS = {"unstructured": 0.5, "structured": 0.5, "lowrank": 0.7}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One storage root per module: each model's baseline is trained once for all methods."""
    return tmp_path_factory.mktemp("store")


def spec_for(storage, model: str, **changes) -> SweepSpec:
    spec = SweepSpec(storage=str(storage), model=model, schedule="uniform", finetune=TrainRecipe(epochs=1, lr=0.01))
    spec = dataclasses.replace(spec, baseline=dataclasses.replace(spec.baseline, train=TrainRecipe(epochs=2)))
    return dataclasses.replace(spec, **changes)


def run_phases(spec: SweepSpec, method: str, sweep: str, trial_id: str = "t1") -> TrialRun:
    """A trial's phases as run_trial runs them, keeping the trial's own model."""
    budget = BUDGETS[get_method(method).granularity]
    run = TrialRun(TrialConfig(OperatingPoint(budget, method, 0)), TrialContext(spec, sweep, {}, None), trial_id,
                   lambda _: None, Runtime())
    run.run_phases()  # unlike run_trial, an error fails the test rather than becoming the row's
    run.finish_row()
    return run


@pytest.mark.parametrize("method, model", [
    pytest.param(method, "digits_cnn", marks=() if method in FAST_RELOADS else pytest.mark.slow)
    for method in list_methods()] + [
    pytest.param(method, "resnet20", marks=pytest.mark.slow) for method in RESIDUAL_METHODS])
def test_a_reloaded_model_is_the_trial_model(store, model, method, few_lowrank_sweeps):
    run = run_phases(spec_for(store, model), method, sweep=f"{model}-{method}")
    row = read_results(str(store), f"{model}-{method}").iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["model_uri"] == os.path.join(str(store), f"{model}-{method}", "models", "t1")
    files = [os.path.join(row["model_uri"], name) for name in ("model.safetensors", "plan.json")]
    assert row["file_bytes"] == sum(os.path.getsize(path) for path in files)

    loaded = load_pruned(row["model_uri"])
    assert not loaded.training
    data = run.data
    trial_model = run.model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(data.val_x), trial_model(data.val_x), atol=1e-5, rtol=0)
    measured = measure(loaded, data.val_x[:1], latency=False)
    assert (measured.params, measured.params_nonzero, measured.macs) == (row["params"], row["params_nonzero"], row["macs"])
    assert evaluate(loaded, data.val_x, data.val_y)[0] == row["top1"]
    plan = read_plan(row["model_uri"])
    assert plan["method"] == method and plan["model"]["name"] == model


def _baseline_weights(store) -> int:
    [path] = [os.path.join(root, "model.safetensors") for root, _, names in os.walk(os.path.join(store, "baselines"))
              if "model.safetensors" in names]
    return os.path.getsize(path)


def test_files_are_really_smaller(tmp_path):
    """Masks at 0.5 of the params: at most 0.6 of the dense file; channels at 0.5 of the MACs:
    fewer bytes than the baseline's file."""
    spec = spec_for(tmp_path, "digits_cnn")
    unstructured = run_phases(spec, "magnitude", "masks").row
    structured = run_phases(spec, "l1_filter", "channels").row
    dense = _baseline_weights(tmp_path)
    assert unstructured["params_keep"] <= 0.5 and structured["macs_keep"] <= 0.5
    assert unstructured["file_bytes"] <= 0.6 * dense, (unstructured["file_bytes"], dense)
    assert structured["file_bytes"] < dense, (structured["file_bytes"], dense)
    plan = plan_of(unstructured, str(tmp_path))  # a row as the trial wrote it: model_uri relative to its sweep
    assert plan["masks"] and all(mask["nonzero"] > 0 for mask in plan["masks"])
    assert plan_of(structured, str(tmp_path))["architecture"]["groups"]


def test_save_none_keeps_no_model(tmp_path):
    spec = spec_for(tmp_path, "digits_cnn", artifacts=ArtifactOptions(save="none"))
    row = run_phases(spec, "l1_filter", "s").row
    assert row["status"] == "ok" and row.get("model_uri") is None
    assert not os.path.exists(tmp_path / "s" / "models")


def test_a_model_that_cannot_be_saved_is_a_failed_row(tmp_path):
    spec = spec_for(tmp_path, "digits_cnn")
    os.makedirs(tmp_path / "s" / "models")
    (tmp_path / "s" / "models" / "t1").write_text("a file where the model's directory should go")
    row = run_trial(TrialConfig(OperatingPoint(0.5, "l1_filter", 0)), TrialContext(spec, "s", {}, None), "t1")
    assert row["status"] == "failed" and row["error"]
    frame = read_results(str(tmp_path), "s")
    assert list(frame["status"]) == ["failed"] and frame["top1"].notna().all()  # measured before the save


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    storage = tmp_path_factory.mktemp("saved")
    return model_directory(run_phases(spec_for(storage, "digits_cnn"), "l1_filter", "s").row, str(storage))


def _copy(uri: str, target) -> str:
    os.makedirs(target)
    for name in ("model.safetensors", "plan.json"):
        (target / name).write_bytes(Path(uri, name).read_bytes())
    return str(target)


def _one_line_naming(error: pytest.ExceptionInfo, name: str) -> None:
    message = str(error.value)
    assert "\n" not in message and name in message, message


def test_corrupt_weights_are_an_error_naming_the_file(saved, tmp_path):
    broken = _copy(saved, tmp_path / "m")
    with open(os.path.join(broken, "model.safetensors"), "r+b") as handle:
        handle.seek(200)
        handle.write(b"\x00" * 16)
    with pytest.raises(ArtifactError) as error:
        load_pruned(broken)
    _one_line_naming(error, os.path.join(broken, "model.safetensors"))


def test_a_pickle_in_place_of_the_weights_is_never_unpickled(saved, tmp_path):
    broken = _copy(saved, tmp_path / "m")
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(os.path.join(broken, "model.safetensors"), "wb") as handle:
        pickle.dump(Evil(), handle)
    plan_path = Path(broken, "plan.json")
    plan = json.loads(plan_path.read_text())
    plan["weights_sha256"] = hashlib.sha256(Path(broken, "model.safetensors").read_bytes()).hexdigest()
    plan_path.write_text(json.dumps(plan))
    with pytest.raises(ArtifactError) as error:
        load_pruned(broken)
    _one_line_naming(error, "model.safetensors")
    assert not marker.exists()


@pytest.mark.parametrize("edit, words", [
    (lambda plan: plan["architecture"]["groups"][0].update(removed=1), "does not fit"),
    (lambda plan: plan.update(model={**plan["model"], "name": "lenet5"}), "plan.json"),
    (lambda plan: plan.update(format=99), "format 99"),
])
def test_a_plan_that_does_not_fit_its_weights_is_an_error_naming_the_file(saved, tmp_path, edit, words):
    broken = _copy(saved, tmp_path / "m")
    plan_path = Path(broken, "plan.json")
    plan = json.loads(plan_path.read_text())
    edit(plan)
    plan_path.write_text(json.dumps(plan))
    with pytest.raises(ArtifactError) as error:
        load_pruned(broken)
    _one_line_naming(error, words)
    assert broken in str(error.value)


def test_a_missing_model_is_an_error_naming_it(tmp_path):
    with pytest.raises(ArtifactError) as error:
        load_pruned(str(tmp_path / "nothing"))
    _one_line_naming(error, "plan.json")


def test_best_keeps_each_operating_points_pick_and_deletes_the_rest(tmp_path):
    """Three trials of one operating point (different searched shapes) and one of another: 'best'
    keeps the best top-1 of the first and the only trial of the second."""
    from prune_ray.artifacts.retention import delete_unkept_models
    from prune_ray.points import Proposal
    from prune_ray.results.storage import open_storage

    spec = spec_for(tmp_path, "digits_cnn", schedule="searched")
    context = TrialContext(spec, "s", {}, None)
    shapes = [{"t000": 1.0, "t001": -1.0}, {"t000": -1.0, "t001": 1.0}, {}]
    for index, shape in enumerate(shapes):
        run_trial(TrialConfig(OperatingPoint(0.5, "l1_filter", 0), Proposal(shape)), context, f"a{index}")
    run_trial(TrialConfig(OperatingPoint(0.5, "magnitude", 0)), context, "b0")
    before = read_results(str(tmp_path), "s")
    assert (before["status"] == "ok").all() and before["model_uri"].notna().all()
    structured = before[before["method"] == "l1_filter"].sort_values(["top1", "macs_keep"], ascending=[False, True])
    best = structured["trial_id"].iloc[0]

    assert delete_unkept_models(open_storage(str(tmp_path)), "s") == (2, 2)
    assert sorted(os.listdir(tmp_path / "s" / "models")) == sorted([best, "b0"])
    after = read_results(str(tmp_path), "s").set_index("trial_id")
    assert set(after.index[after["model_uri"].notna()]) == {best, "b0"}
    for trial_id in after.index[after["model_uri"].notna()]:
        assert load_pruned(after.loc[trial_id, "model_uri"])  # what stays loads


def test_best_keeps_a_frontier_searchs_non_dominated_trials_per_method_and_seed():
    """A frontier search (no budget, a sampler): every trial is its own point, so 'best' keeps the
    Pareto set of each method and seed, not every trial."""
    import pandas as pd

    from prune_ray.artifacts.retention import kept_trials

    base = {"sweep": "s", "status": "ok", "model": "m", "dataset": "d", "granularity": "structured", "schedule": "searched",
            "sampler": "nsga2", "budget_metric": "macs", "budget": None, "ratio": None, "params_keep": 1.0}
    trials = [  # (trial, method, seed, macs_keep, top1)
        ("a", "l1_filter", 0, 0.3, 0.80), ("b", "l1_filter", 0, 0.5, 0.90), ("c", "l1_filter", 0, 0.6, 0.85),  # c dominated by b
        ("d", "l1_filter", 1, 0.6, 0.85),  # seed 1's only trial
        ("e", "fpgm", 0, 0.6, 0.70),  # another method: its own front
    ]
    frame = pd.DataFrame([{**base, "trial_id": t, "method": m, "seed": s, "macs_keep": k, "top1": a} for t, m, s, k, a in trials])
    assert kept_trials(frame) == {"a", "b", "d", "e"}


def test_a_structured_model_pruned_in_cycles_reloads(store):
    """Channels removed over two prune/retrain cycles: the plan holds the total per group."""
    spec = dataclasses.replace(spec_for(store, "digits_cnn"), iterative="cycles", prune_steps=(2,))
    run = TrialRun(TrialConfig(OperatingPoint(0.5, "l1_filter", 0, prune_steps=2)), TrialContext(spec, "cycles", {}, None),
                   "t1", lambda _: None, Runtime())
    for phase in run.phases():
        phase()
    loaded = load_pruned(run.row, str(store))
    with torch.no_grad():
        assert torch.allclose(loaded(run.data.val_x), run.model.eval()(run.data.val_x), atol=1e-5, rtol=0)
    assert measure(loaded, run.data.val_x[:1], latency=False).macs == run.row["macs"]
