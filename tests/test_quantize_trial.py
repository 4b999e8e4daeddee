"""A trial that quantises after fine-tuning (Ray-free): its row's columns are measured facts (the
bytes are the files' on disk, the ratio comes from them), and its saved model, encoded for real,
reloads to exactly the trial's quantised model."""

import dataclasses
import os

import pandas as pd
import pytest
import torch

from prune_ray import load_pruned
from prune_ray.artifacts import model_directory
from prune_ray.artifacts.store import ENCODED_FILE, read_plan
from prune_ray.points import OperatingPoint, TrialConfig, operating_points
from prune_ray.quantize import BitWidths, get_quantizer, list_quantizers
from prune_ray.quantize.encoding import decode_model
from prune_ray.quantize.tensor import quantized_layers
from prune_ray.results import read_results
from prune_ray.spec import SpecError, SweepSpec, spec_from_yaml
from prune_ray.train import TrainRecipe
from prune_ray.trial import Runtime, TrialContext, TrialRun

BUDGET = 0.1
BITS = BitWidths(conv=6, fc=4)


# one worker: the module-scoped trials (~9 s) would otherwise run once per xdist worker
pytestmark = pytest.mark.xdist_group("quantized-trials")


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    spec = SweepSpec(storage=str(tmp_path_factory.mktemp("quantized")), methods=("magnitude",), schedule="uniform",
                     finetune=TrainRecipe(epochs=1, lr=0.01), quantize_epochs=1)
    return dataclasses.replace(spec, baseline=dataclasses.replace(spec.baseline, train=TrainRecipe(epochs=3)))


def run_quantized(spec: SweepSpec, quantizer: str, trial_id: str) -> TrialRun:
    bits = BITS if get_quantizer(quantizer).takes_bits else None
    run = TrialRun(TrialConfig(OperatingPoint(BUDGET, "magnitude", 0, quantizer=quantizer, quantize_bits=bits)),
                   TrialContext(spec, "q", {}, None), trial_id, lambda _: None, Runtime())
    for phase in run.phases():
        phase()
    run.finish_row()
    return run


@pytest.fixture(scope="module")
def runs(spec):
    return {name: run_quantized(spec, name, f"t-{name}") for name in list_quantizers()}


@pytest.mark.parametrize("name", list_quantizers())
def test_the_row_holds_measured_bytes_and_ratio(spec, runs, name):
    row = read_results(spec.storage, "q").set_index("trial_id").loc[f"t-{name}"]
    assert row["status"] == "ok", row["error"]
    assert row["quantizer"] == name
    widths = get_quantizer(name).widths(BITS)
    if widths is None:
        assert pd.isna(row["quantize_bits_conv"]) and pd.isna(row["quantize_bits_fc"])
    else:
        assert (row["quantize_bits_conv"], row["quantize_bits_fc"]) == (widths.conv, widths.fc)
    files = os.listdir(row["model_uri"])
    on_disk = sum(os.path.getsize(os.path.join(row["model_uri"], file)) for file in files)
    assert row["bytes_encoded"] == row["file_bytes"] == on_disk
    assert row["compression_ratio_total"] == pytest.approx(4 * row["baseline_params"] / on_disk)
    assert row["params_keep"] <= BUDGET
    assert 0 <= row["top1_quantized"] <= 1 and row["time_quantize_s"] > 0
    assert (ENCODED_FILE in files) == (widths is not None)


@pytest.mark.parametrize("name", list_quantizers())
def test_the_saved_model_reloads_to_the_trials_quantised_model(spec, runs, name):
    run = runs[name]
    loaded = load_pruned(run.row, spec.storage)
    x = run.data.val_x.cpu()
    with torch.no_grad():
        assert torch.equal(loaded(x), run.model.cpu().eval()(x))
    widths = get_quantizer(name).widths(BITS)
    for layer, module in quantized_layers(loaded):
        weight = module.weight.detach()
        trial_weight = run.model.get_submodule(layer).weight.detach()
        assert torch.equal(weight, trial_weight)
        if widths is not None and widths.conv > 1:  # kmeans, int8: at most 2**bits values per layer/channel
            per_channel = 1 if name == "kmeans" else weight.shape[0]
            assert weight[weight != 0].unique().numel() <= per_channel * 2 ** widths.of(module)


def test_kmeans_codes_decode_bit_exactly_and_pruned_weights_stay_zero(spec, runs):
    run = runs["kmeans"]
    uri = model_directory(run.row, spec.storage)
    decoded = decode_model(open(os.path.join(uri, ENCODED_FILE), "rb").read())
    assert sorted(decoded.quantized) == read_plan(uri)["quantized"]
    for key, tensor in run.codes.items():
        assert torch.equal(decoded.quantized[key].codes, tensor.codes)
        assert int(tensor.codes.max()) <= 2**tensor.bits
    float_run = runs["none"]  # same seed, plan and fine-tuning: the same pruned weights before quantising
    for layer, module in quantized_layers(run.model):
        pruned = float_run.model.get_submodule(layer).weight == 0
        assert torch.equal(module.weight == 0, pruned)


def test_a_kmeans_model_at_a_tenth_of_the_params_is_many_times_smaller(runs):
    kmeans, none = runs["kmeans"].row, runs["none"].row
    assert kmeans["compression_ratio_total"] > 20  # measured 29.3x here (6/4 bits; the plan and BatchNorm included)
    assert kmeans["bytes_encoded"] < none["bytes_encoded"] / 3


def test_without_quantisation_fine_tuning_top1_is_top1_quantized(spec):
    run = run_quantized(dataclasses.replace(spec, quantize_epochs=0), "kmeans", "no-epochs")
    assert run.row["top1"] == run.row["top1_quantized"]


def test_each_quantizer_and_bit_width_is_its_own_operating_point():
    spec = spec_from_yaml("methods: [magnitude]\nbudgets: [0.1]\nquantize: [none, kmeans, int8]\n"
                          "quantize_bits: [{conv: 8, fc: 5}, {conv: 4, fc: 4}]\nseeds: [0, 1]", "s.yaml")
    points = operating_points(spec)
    assert len(points) == 2 * (1 + 2 + 1)
    assert len({point.study_name for point in points}) == len(points)
    assert "magnitude-budget0.1-steps1-seed0" in {point.study_name for point in points}  # unquantised: as before
    assert "magnitude-budget0.1-steps1-kmeans4-4-seed1" in {point.study_name for point in points}


@pytest.mark.parametrize("text, widths", [
    ("quantize_bits: [5]", [BitWidths(5, 5)]),
    ("quantize_bits: 5", [BitWidths(5, 5)]),
    ("quantize_bits: [{conv: 8, fc: 5}, 6]", [BitWidths(8, 5), BitWidths(6, 6)]),
])
def test_one_number_of_bits_means_every_layer(text, widths):
    assert list(spec_from_yaml(f"quantize: [kmeans]\n{text}", "s.yaml").quantize_bits) == widths


@pytest.mark.parametrize("text, words", [
    ("quantize_bits: [17]", "quantize_bits[0].conv: 17 bits; allowed: 1 to 16"),
    ("quantize_bits: [true]", "quantize_bits[0]: expected a mapping"),
    ("quantize: [int4]", "quantize[0]: unknown quantizer 'int4'; allowed: binary, int8, kmeans, none"),
    ("quantize_bits: [{conv: 0, fc: 5}]", "quantize_bits[0].conv: 0 bits; allowed: 1 to 16"),
    ("quantize_bits: {conv: 8, fc: 17}", "quantize_bits[0].fc: 17 bits; allowed: 1 to 16"),
    ("quantize_epochs: -1", "quantize_epochs: -1 must be >= 0"),
    ("quantize: [kmeans, kmeans]", "lists a quantizer twice"),
])
def test_bad_quantisation_values_are_one_line_errors(text, words):
    with pytest.raises(SpecError) as error:
        spec_from_yaml(text, "s.yaml")
    assert words in str(error.value) and "\n" not in str(error.value)


def test_an_unknown_quantizer_is_exit_2_before_anything_runs(tmp_path, capsys):
    from prune_ray import sweep

    (tmp_path / "bad.yaml").write_text("quantize: [none, int4]\n")
    assert sweep.main([str(tmp_path / "bad.yaml"), "--storage", str(tmp_path / "results")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "prune-ray sweep: error: quantize[1]: unknown quantizer 'int4'; allowed: binary, int8, kmeans, none"]
    assert not (tmp_path / "results").exists()


def test_export_picks_a_quantizers_trial_and_copies_its_encoded_file(spec, runs, tmp_path, capsys):
    from prune_ray import export

    out = tmp_path / "exported"
    code = export.main([spec.storage, "--sweep", "q", "--pick", "--method", "magnitude", "--budget", str(BUDGET),
                        "--quantizer", "kmeans", "--format", "safetensors", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    picked = printed.out.split("[prune-ray] export ")[1].split(" ")[0]
    row = read_results(spec.storage, "q").set_index("trial_id").loc[picked]
    assert row["quantizer"] == "kmeans"
    assert sorted(os.listdir(out)) == ["model.encoded", "plan.json"]
    x = runs["kmeans"].data.val_x.cpu()
    with torch.no_grad():
        assert torch.equal(load_pruned(str(out))(x), load_pruned(row["model_uri"])(x))
