"""Export: saved models to ONNX (checked in onnxruntime) and the export CLI on a trial's saved model."""

import os
import shutil

import pyarrow.parquet as pq
import pytest
import torch

from prune_ray import load_pruned
from prune_ray.artifacts import ModelRecipe, save_pruned
from prune_ray.artifacts.export import main
from prune_ray.artifacts.onnx import check_onnx, export_onnx
from prune_ray.points import OperatingPoint, TrialConfig
from prune_ray.prune import apply_pruning, get_method, list_methods
from prune_ray.results import SCHEMA_VERSION, read_results
from prune_ray.results.parquet import read_trial, write_trial
from prune_ray.results.storage import open_storage
from prune_ray.spec import BaselineOptions, SweepSpec
from prune_ray.train import TrainRecipe, evaluate
from prune_ray.trial import TrialContext, run_trial

# One method per kind of shape change: every structured method removes channels through the same
# dependency graph (at one ratio, the same shapes: test_measure), each low-rank method puts its own
# factor convs in a conv's place
SHAPE_CHANGES = ["l1_filter"] + [name for name in list_methods() if get_method(name).granularity == "lowrank"]
RATIOS = {"structured": 0.5, "lowrank": 0.9}  # lowrank 0.9: small ranks keep CP-ALS on vgg11_bn short
FAST_ONNX = ("l1_filter",)  # the fast tier's cut; the full suite runs every kind


@pytest.mark.parametrize("model_name", ["resnet20", pytest.param("vgg11_bn", marks=pytest.mark.slow)])
@pytest.mark.parametrize("method", [name if name in FAST_ONNX else pytest.param(name, marks=pytest.mark.slow)
                                    for name in SHAPE_CHANGES])
def test_onnx_of_each_kind_of_shape_change_matches_pytorch(tmp_path, model_name, method, few_lowrank_sweeps):
    """CIFAR-shaped inputs; the ONNX file is made from the reloaded saved model, at its smaller shapes."""
    torch.manual_seed(0)
    recipe = ModelRecipe(model_name, 10, 3, 32)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    pruned = apply_pruning(recipe.create().eval(), method, RATIOS[get_method(method).granularity], x, y).eval()
    saved = save_pruned(open_storage(str(tmp_path)), ("m",), pruned, recipe, method, x[:1])
    model = load_pruned(saved.uri)
    path = str(tmp_path / "model.onnx")
    export_onnx(model, x, path)
    check = check_onnx(path, model, x)
    assert check.max_abs_diff <= 1e-4 and check.batch == 16 and check.latency_ms > 0
    assert check.max_abs_diff <= 1e-5 * check.max_abs_output  # small against the outputs too (untrained: ~0.1)
    dense = ModelRecipe(model_name, 10, 3, 32).create()
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in dense.parameters())


@pytest.fixture(scope="module")
def sweep_root(tmp_path_factory):
    """Two ok trials with saved models, as a sweep leaves them (Ray-free: run_trial)."""
    root = tmp_path_factory.mktemp("results")
    spec = SweepSpec(storage=str(root), schedule="uniform", finetune=TrainRecipe(epochs=1, lr=0.01),
                     baseline=BaselineOptions(train=TrainRecipe(epochs=2)))
    for method in ("magnitude", "l1_filter"):
        row = run_trial(TrialConfig(OperatingPoint(0.5, method, 0)), TrialContext(spec, "s", {}, None), f"t-{method}")
        assert row["status"] == "ok", row["error"]
    return root


def test_export_pick_as_safetensors_reloads_with_the_rows_accuracy(sweep_root, tmp_path, capsys, digits):
    out = tmp_path / "out"
    assert main([str(sweep_root), "--sweep", "s", "--pick", "--method", "l1_filter", "--budget", "0.5",
                 "--format", "safetensors", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{out}/model.safetensors  {os.path.getsize(out / 'model.safetensors'):,} bytes" in printed
    row = read_results(str(sweep_root), "s").set_index("trial_id").loc["t-l1_filter"]
    assert evaluate(load_pruned(str(out)), digits.val_x, digits.val_y)[0] == row["top1"]


def _printed_onnx_check(printed: str, out, dense_note: bool) -> None:
    assert f"{out}/model.onnx  {os.path.getsize(out / 'model.onnx'):,} bytes" in printed
    assert "onnxruntime: max |difference| from PyTorch" in printed and "ms per batch" in printed
    assert ("exported dense" in printed) == dense_note
    difference = float(printed.split("from PyTorch ")[1].split()[0])
    assert difference <= 1e-4


def test_export_trial_as_onnx_prints_its_check(sweep_root, tmp_path, capsys):
    """A masked model exports dense, and says so (the structured one: the metadata test below)."""
    out = tmp_path / "out"
    assert main([str(sweep_root), "--sweep", "s", "--trial", "t-magnitude", "--format", "onnx", "--out", str(out)]) == 0
    _printed_onnx_check(capsys.readouterr().out, out, dense_note=True)


@pytest.mark.parametrize("args, fragment", [
    (["--trial", "nope"], "trial 'nope' has no ok row"),
    (["--pick", "--method", "l1_filter", "--budget", "0.3"], "no ok trial of method 'l1_filter' at budget 0.3"),
])
def test_export_bad_input_exits_2_with_one_line(sweep_root, tmp_path, capsys, args, fragment):
    code = main([str(sweep_root), "--sweep", "s", *args, "--format", "onnx", "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and fragment in error[0], error


def test_export_of_a_corrupt_model_exits_2_naming_the_file(sweep_root, tmp_path, capsys):
    """A copy of the results root with one weights file cut short."""
    target = tmp_path / "copy"
    shutil.copytree(sweep_root, target)
    weights = target / "s" / "models" / "t-l1_filter" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code = main([str(target), "--sweep", "s", "--trial", "t-l1_filter", "--format", "safetensors", "--out", str(tmp_path / "o")])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and str(weights) in error[0], error


@pytest.mark.parametrize("args, fragment", [
    (["--pick", "--method", "l1_filter"], "--pick needs --method and --budget"),
    ([], "one of the arguments --trial --pick is required"),
])
def test_export_usage_errors_are_one_line_and_exit_2(sweep_root, tmp_path, capsys, args, fragment):
    with pytest.raises(SystemExit) as exited:
        main([str(sweep_root), "--sweep", "s", *args, "--format", "onnx", "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(error) == 1 and fragment in error[0], error


def test_onnx_metadata_alone_turns_raw_images_into_the_rows_accuracy(sweep_root, tmp_path, capsys):
    """Raw digits (sklearn's 0..16 pixels) through the exported ONNX file in onnxruntime, normalised
    with nothing but the file's metadata_props: the row's test-split top-1."""
    import numpy as np
    import onnx
    import onnxruntime
    from sklearn.datasets import load_digits

    from prune_ray.artifacts.deployment import Deployment
    from prune_ray.data import stratified_split
    from prune_ray.data.digits import TEST_FRACTION

    out = tmp_path / "onnx"
    assert main([str(sweep_root), "--sweep", "s", "--trial", "t-l1_filter", "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    _printed_onnx_check(printed, out, dense_note=False)
    assert "metadata_props prune_ray.*: digits input [1, 1, 8, 8]" in printed
    props = {entry.key: entry.value for entry in onnx.load(str(out / "model.onnx")).metadata_props}
    meta = Deployment.from_onnx_metadata(props)
    assert meta.class_names == tuple(str(n) for n in range(10)) and meta.num_classes == 10
    assert meta == load_pruned("t-l1_filter", str(sweep_root)).prune_ray_meta  # the same record load_pruned exposes

    bunch = load_digits()  # the dataset's own files, no prune-ray preprocessing
    _, test = stratified_split(torch.tensor(bunch.target), TEST_FRACTION, seed=0)
    pixels, labels = bunch.images[test.numpy()][:, None], bunch.target[test.numpy()]
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: meta.normalise(pixels)})[0]
    row = read_results(str(sweep_root), "s").set_index("trial_id").loc["t-l1_filter"]
    assert float(np.mean(logits.argmax(axis=1) == labels)) == pytest.approx(row["test_top1"], abs=1 / len(labels))


def test_a_copied_results_root_loads_and_exports_its_own_files(sweep_root, tmp_path, capsys):
    """Rows name their model relative to the sweep: a moved root loads from where it now is, and a
    copy with a model deleted fails naming the copy's missing file, never reading the original."""
    moved = tmp_path / "elsewhere" / "results"
    shutil.copytree(sweep_root, moved)
    row = read_results(str(moved), "s").set_index("trial_id").loc["t-magnitude"]
    assert row["model_uri"] == str(moved / "s" / "models" / "t-magnitude")
    raw = pq.read_table(moved / "s" / "trials" / "t-magnitude.parquet").to_pylist()[0]
    assert raw["model_uri"] == "models/t-magnitude" and raw["schema_version"] == SCHEMA_VERSION  # what pandas or DuckDB see
    assert load_pruned("t-magnitude", str(moved)) is not None and load_pruned(raw, str(moved / "s")) is not None

    shutil.rmtree(moved / "s" / "models" / "t-l1_filter")
    code = main([str(moved), "--sweep", "s", "--trial", "t-l1_filter", "--format", "safetensors", "--out", str(tmp_path / "o")])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and str(moved / "s" / "models" / "t-l1_filter" / "plan.json") in error[0], error
    assert os.path.exists(sweep_root / "s" / "models" / "t-l1_filter" / "plan.json")  # the original is still there


def test_a_row_without_a_saved_model_names_the_trial_and_the_setting(sweep_root, tmp_path, capsys):
    """artifacts.save best deleted it (its row keeps file_bytes) or none never wrote it: one line each."""
    from prune_ray.artifacts import NoSavedModelError

    target = tmp_path / "copy"
    shutil.copytree(sweep_root, target)
    storage = open_storage(str(target))
    row = read_trial(storage, "s", "t-l1_filter")
    write_trial(storage, {**row, "model_uri": None})  # as retention leaves a deleted model's row
    with pytest.raises(NoSavedModelError, match="trial 't-l1_filter' has no saved model: artifacts.save 'best' deleted it"):
        load_pruned("t-l1_filter", str(target))
    write_trial(storage, {**row, "model_uri": None, "file_bytes": None})  # as save: none leaves it
    code = main([str(target), "--sweep", "s", "--trial", "t-l1_filter", "--format", "onnx", "--out", str(tmp_path / "o")])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and "trial 't-l1_filter'" in error[0] and "artifacts.save 'none'" in error[0], error
