"""Models from outside the zoo: a user's file or module by import path, timm:<name> and
torchvision:<name>, with model_args; every bad string a one-line spec error; their baselines
(weights_only .pt and safetensors) and saved pruned models round-trip."""

import sys

import pytest
import torch
from safetensors.torch import save_file

from prune_ray import load_pruned
from prune_ray.artifacts import ModelRecipe, save_pruned
from prune_ray.baseline import BaselineConfig
from prune_ray.data import DataOptions
from prune_ray.models import ModelSourceError, create_model
from prune_ray.prune import apply_pruning
from prune_ray.prune.unstructured import make_masks_permanent
from prune_ray.results.storage import open_storage
from prune_ray.spec import SpecError, spec_from_yaml
from prune_ray.train import TrainRecipe
from prune_ray.trial_setup import preflight_checks
from fixtures import cli_cases, run_sweep_command
from user_models import write_user_net

SHAPE = {"num_classes": 10, "in_channels": 1, "image_size": 8}  # the digits dataset's


def test_file_factory_gets_the_data_shape_and_model_args(tmp_path):
    path = write_user_net(tmp_path)
    model = create_model(f"{path}:make", **SHAPE, model_args={"width": 6})
    assert model.stem[0].in_channels == 1 and model.stem[0].out_channels == 6 and model.head.out_features == 10
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_module_factory_by_import_path(tmp_path, monkeypatch):
    package = tmp_path / "mynets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write_user_net(package, "small.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = create_model("mynets.small:make", **SHAPE)
    assert model.head.in_features == 16
    sys.modules.pop("mynets.small"), sys.modules.pop("mynets")


@pytest.mark.parametrize("model, fragment", [
    ("{dir}/none.py:make", "none.py does not exist"),
    ("{dir}/syntax.py:make", "syntax.py does not import: SyntaxError"),
    ("{dir}/net.py:absent", "has no callable 'absent'"),
    ("{dir}/net.py:broken", "the factory raised ValueError: width must be even"),
    ("{dir}/net.py:not_a_model", "returned a int, not an nn.Module"),
    ("no_such_package_14.mod:make", "module 'no_such_package_14.mod' does not import: ModuleNotFoundError"),
    ("timm:no_such_net", "timm has no model 'no_such_net'"),
    ("torchvision:no_such_net", "torchvision has no model 'no_such_net'"),
    ("resnet9", "unknown value 'resnet9'"),
    ("{dir}/net.py:", "expected 'package.module:factory'"),
])
def test_bad_model_string_is_one_line_spec_error(tmp_path, model, fragment):
    write_user_net(tmp_path)
    (tmp_path / "syntax.py").write_text("def make(:\n")
    text = f"model: '{model.format(dir=tmp_path)}'\nmethods: [l1_filter]\n"
    with pytest.raises(SpecError) as raised:  # spec check: imports, builds nothing
        preflight_checks(spec_from_yaml(text, "spec.yaml"))
    message = str(raised.value)
    assert fragment in message and "\n" not in message, message


@pytest.mark.parametrize("args, fragment", [
    ("{nested: {a: 1}}", "model_args"),
    ("[1, 2]", "model_args: expected a mapping"),
])
def test_model_args_must_be_a_mapping_of_plain_values(tmp_path, args, fragment):
    path = write_user_net(tmp_path)
    with pytest.raises(SpecError, match=fragment):
        spec_from_yaml(f"model: '{path}:make'\nmodel_args: {args}\n", "spec.yaml")


def test_zoo_model_takes_no_model_args():
    with pytest.raises(SpecError, match="built-in model 'digits_cnn' takes none"):
        spec_from_yaml("model_args: {width: 4}\n", "spec.yaml")
    with pytest.raises(ModelSourceError, match="takes none"):
        create_model("digits_cnn", model_args={"width": 4})


def test_factory_error_at_build_time_is_a_spec_error_in_preflight(tmp_path):
    path = write_user_net(tmp_path)
    spec = spec_from_yaml(f"model: '{path}:make'\nmodel_args: {{depth: 3}}\nmethods: [l1_filter]\n", "spec.yaml")
    with pytest.raises(SpecError, match=r"the factory raised TypeError: .*depth"):
        preflight_checks(spec)


def test_method_that_cannot_prune_a_layer_fails_preflight_naming_layer_and_method():
    """timm's ViT: torch-pruning removes single qkv outputs, and the attention's reshape into heads
    breaks; the spec check says which layer and which method, before any trial."""
    pytest.importorskip("timm")
    text = "model: 'timm:test_vit'\nmodel_args: {img_size: 8, patch_size: 4}\nmethods: [magnitude, l1_filter]\n"
    with pytest.raises(SpecError) as raised:
        preflight_checks(spec_from_yaml(text, "spec.yaml"))
    message = str(raised.value)
    assert "method 'l1_filter' cannot prune layer 'blocks.0.attn.qkv' of VisionTransformer" in message
    assert "\n" not in message


def test_user_model_baseline_key_is_a_directory_name_and_counts_model_args(tmp_path):
    path = write_user_net(tmp_path)
    config = BaselineConfig(f"{path}:make", "digits", DataOptions(), TrainRecipe(epochs=1), 0)
    assert "/" not in config.key and ":" not in config.key and config.key.startswith("net.py_make-digits-")
    wider = BaselineConfig(f"{path}:make", "digits", DataOptions(), TrainRecipe(epochs=1), 0, {"width": 4})
    assert wider.key != config.key
    # a zoo baseline's key is what it was before model_args existed
    assert BaselineConfig("digits_cnn", "digits", DataOptions(), TrainRecipe(epochs=1), 0).key == "digits_cnn-digits-fe36bb2f91f001db"


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_user_checkpoint_loads_in_preflight(tmp_path, suffix):
    path = write_user_net(tmp_path)
    state = {k: v.contiguous() for k, v in create_model(f"{path}:make", **SHAPE, model_args={"width": 4}).state_dict().items()}
    checkpoint = tmp_path / f"mine{suffix}"
    torch.save(state, checkpoint) if suffix == ".pt" else save_file(state, str(checkpoint))
    base = f"model: '{path}:make'\nmethods: [l1_filter]\nbaseline: {{checkpoint: {checkpoint}}}\n"
    preflight_checks(spec_from_yaml(base + "model_args: {width: 4}\n", "spec.yaml"))
    with pytest.raises(SpecError, match=f"checkpoint {checkpoint} does not fit the model"):  # another width
        preflight_checks(spec_from_yaml(base, "spec.yaml"))


def test_checkpoint_pickling_a_module_is_refused_naming_the_file(tmp_path):
    path = write_user_net(tmp_path)
    checkpoint = tmp_path / "whole.pt"
    torch.save(create_model(f"{path}:make", **SHAPE), checkpoint)  # a pickle of code, not of tensors
    spec = spec_from_yaml(f"model: '{path}:make'\nmethods: [l1_filter]\nbaseline: {{checkpoint: {checkpoint}}}\n", "spec.yaml")
    with pytest.raises(SpecError) as raised:
        preflight_checks(spec)
    assert f"checkpoint {checkpoint} pickles code" in str(raised.value) and "\n" not in str(raised.value)


def _roundtrip(tmp_path, name, shape, model_args, method, ratio):
    torch.manual_seed(0)
    recipe = ModelRecipe(name, shape["num_classes"], shape["in_channels"], shape["image_size"], model_args)
    x = torch.randn(4, shape["in_channels"], shape["image_size"], shape["image_size"])
    pruned = apply_pruning(recipe.create().eval(), method, ratio, x, torch.zeros(4, dtype=torch.long)).eval()
    make_masks_permanent(pruned)  # as a trial does before saving
    saved = save_pruned(open_storage(str(tmp_path)), ("models", method), pruned, recipe, method, x[:1])
    loaded = load_pruned(saved.uri)
    with torch.no_grad():
        assert torch.allclose(loaded(x), pruned(x), atol=1e-5)
    return pruned, loaded


@pytest.mark.parametrize("method", ["l1_filter", "magnitude", "tucker"])
def test_user_model_saved_and_reloaded_by_load_pruned(tmp_path, method):
    path = write_user_net(tmp_path)
    pruned, loaded = _roundtrip(tmp_path, f"{path}:make", SHAPE, {"width": 8}, method, 0.5)
    if method == "l1_filter":  # channels really removed, and the plan rebuilt them
        assert loaded.side[0].out_channels < 8 and loaded.head.in_features == pruned.head.in_features


@pytest.mark.parametrize("name, args", [
    ("timm:test_resnet", {}),
    ("torchvision:mobilenet_v3_small", {"width_mult": 0.5}),
])
def test_hub_model_saved_and_reloaded_by_load_pruned(tmp_path, name, args):
    if name.startswith("timm:"):
        pytest.importorskip("timm")
    shape = {"num_classes": 10, "in_channels": 3, "image_size": 16}
    _roundtrip(tmp_path, name, shape, args, "l1_filter", 0.3)


@pytest.mark.parametrize("case, real", cli_cases("factory raises", "method cannot prune a layer", "unreadable image"))
def test_cli_exits_2_with_one_line_before_ray_starts(tmp_path, case, real):
    """What a user sees: exit status 2, one line on stderr naming the problem, nothing written."""
    from fixtures import write_image_folder

    write_user_net(tmp_path)
    spec, fragment = {
        "factory raises": ("model: net.py:broken\n", "the factory raised ValueError: width must be even"),
        "method cannot prune a layer": ("model: 'timm:test_vit'\nmodel_args: {img_size: 8, patch_size: 4}\nmethods: [taylor]\n",
                                        "method 'taylor' cannot prune layer 'blocks.0.attn.qkv'"),
        "unreadable image": ("model: net.py:make\ndataset: imagefolder\ndata: {root: images, image_size: 8}\n",
                             f"image {tmp_path / 'images' / 'train' / 'cat' / '0.png'} is unreadable"),
    }[case]
    if case == "method cannot prune a layer":
        pytest.importorskip("timm")
    write_image_folder(tmp_path / "images", per_class=3)
    (tmp_path / "images" / "train" / "cat" / "0.png").write_bytes(b"truncated")
    (tmp_path / "spec.yaml").write_text(spec)
    result = run_sweep_command(["spec.yaml", "--storage", "results"], tmp_path, real)
    errors = [line for line in result.stderr.splitlines() if line.startswith("prune-ray sweep: error:")]
    assert result.returncode == 2, result.stderr
    assert len(errors) == 1 and fragment in errors[0] and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "results").exists()
