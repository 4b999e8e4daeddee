"""dataset: imagefolder (PNG trees the tests write) and the two training loaders (data.loader)."""

import os

import pytest
import torch

from fixtures import write_image_folder
from prune_ray.data import BatchLoader, DataOptions, load_dataset
from prune_ray.data.loaders import StreamLoader, resolve_loader
from prune_ray.points import OperatingPoint, Proposal, TrialConfig
from prune_ray.spec import SpecError, spec_from_yaml
from prune_ray.trial import TrialContext, run_trial
from prune_ray.trial_setup import preflight_checks

CLASSES = ("cat", "dog", "owl")


def spec_text(root, extra: str = "") -> str:
    return f"dataset: imagefolder\ndata: {{root: {root}, image_size: 8{extra}}}\nmethods: [l1_filter]\n"


def test_train_only_tree_splits_test_then_val_seeded_and_normalises_by_train(tmp_path):
    write_image_folder(tmp_path, splits=("train",), per_class=10)
    data = load_dataset("imagefolder", DataOptions(root=str(tmp_path), image_size=8, val_fraction=0.25))
    assert data.num_classes == 3 and data.in_channels == 3 and data.image_size == 8 and data.augment
    assert len(data.test_y) == 6 and len(data.val_y) == 6 and len(data.train_y) == 18  # 20% test, then 25% val
    assert torch.bincount(data.val_y).tolist() == [2, 2, 2]  # stratified
    assert data.train_x.mean(dim=(0, 2, 3)).abs().max() < 1e-5  # the training split's own statistics
    assert (data.train_x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-4
    again = load_dataset("imagefolder", DataOptions(root=str(tmp_path), image_size=8, val_fraction=0.25))
    assert torch.equal(again.val_x, data.val_x)  # the same seeded split every time


def test_the_transform_records_the_computed_statistics_and_class_names(tmp_path):
    """mean/std null: the training split's statistics, as applied, so raw pixels become the inputs."""
    import numpy as np
    from PIL import Image

    write_image_folder(tmp_path, splits=("train", "test"), per_class=4)
    data = load_dataset("imagefolder", DataOptions(root=str(tmp_path), image_size=8))
    transform = data.transform
    assert transform.class_names == CLASSES and transform.pixel_scale == 1 / 255.0 and len(transform.mean) == 3
    raw = np.stack([np.asarray(Image.open(tmp_path / "test" / name / f"{n}.png").convert("RGB")) for name in CLASSES
                    for n in range(4)]).transpose(0, 3, 1, 2)  # the files' own 0..255 pixels, the loader's order
    mean, std = (torch.tensor(values).reshape(1, -1, 1, 1) for values in (transform.mean, transform.std))
    assert torch.allclose((torch.from_numpy(raw).float() * transform.pixel_scale - mean) / std, data.test_x, atol=1e-5)


def test_val_and_test_folders_are_used_as_given_and_images_resized(tmp_path):
    write_image_folder(tmp_path, splits=("train", "val", "test"), per_class=4, size=12)
    options = DataOptions(root=str(tmp_path), image_size=6, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    data = load_dataset("imagefolder", options)
    assert len(data.train_y) == len(data.val_y) == len(data.test_y) == 12 and data.train_x.shape[2:] == (6, 6)
    assert data.train_x.min() >= (0 - 0.5) / 0.25 and data.train_x.max() <= (1 - 0.5) / 0.25  # the spec's mean, std


def _break(tmp_path, how):
    write_image_folder(tmp_path, splits=("train", "test"), per_class=3)
    if how == "no classes":
        for name in CLASSES:
            for f in os.listdir(tmp_path / "train" / name):
                os.remove(tmp_path / "train" / name / f)
            os.rmdir(tmp_path / "train" / name)
        return tmp_path / "train", "has no class folders"
    if how == "empty class":
        os.makedirs(tmp_path / "train" / "yak")
        return tmp_path / "train" / "yak", "holds no images"
    if how == "unreadable":
        (tmp_path / "train" / "dog" / "9.png").write_bytes(b"not a png")
        return tmp_path / "train" / "dog" / "9.png", "is unreadable"
    if how == "mismatched":
        os.rename(tmp_path / "test" / "owl", tmp_path / "test" / "bat")
        return tmp_path / "test", "other classes than"
    if how == "no train":
        os.rename(tmp_path / "train", tmp_path / "training")
        return tmp_path / "train", "is not a directory"


@pytest.mark.parametrize("how", ["no classes", "empty class", "unreadable", "mismatched", "no train"])
def test_bad_tree_is_one_line_spec_error_naming_the_path(tmp_path, how):
    path, fragment = _break(tmp_path, how)
    with pytest.raises(SpecError) as raised:  # validation (folders) or preflight (images): before Ray
        preflight_checks(spec_from_yaml(spec_text(tmp_path), "spec.yaml"))
    message = str(raised.value)
    assert str(path) in message and fragment in message and "\n" not in message, message


@pytest.mark.parametrize("text, fragment", [
    ("dataset: imagefolder\ndata: {image_size: 8}\n", "data.root"),
    ("dataset: imagefolder\ndata: {root: /x}\n", "data.image_size"),
    ("dataset: imagefolder\ndata: {root: /x, image_size: 8, mean: [0.5, 0.5, 0.5]}\n", "give both"),
    ("dataset: imagefolder\ndata: {root: /x, image_size: 8, mean: [0.5], std: [0.2]}\n", "one value per RGB channel"),
    ("data: {image_size: 8}\n", "only read by dataset 'imagefolder'"),
    ("data: {loader: disk}\n", "data.loader: unknown value 'disk'; allowed: auto, device, stream"),
    ("data: {workers: -1}\n", "data.workers"),
])
def test_bad_data_options_are_spec_errors(text, fragment):
    with pytest.raises(SpecError, match=fragment):
        spec_from_yaml(text, "spec.yaml")


def test_stream_loader_yields_the_device_loaders_batches(tmp_path):
    """Same seed, same permutation, same crops and flips, over two epochs, with two workers."""
    write_image_folder(tmp_path, per_class=10)
    data = load_dataset("imagefolder", DataOptions(root=str(tmp_path), image_size=8))
    device = BatchLoader(data.train_x, data.train_y, 5, shuffle=True, seed=3, augment=True)
    stream = StreamLoader(data.train_x, data.train_y, 5, shuffle=True, seed=3, augment=True, workers=2)
    expected, got = list(device) + list(device), list(stream) + list(stream)
    assert len(got) == len(expected) == 2 * 4
    for (x1, y1), (x2, y2) in zip(expected, got):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(expected[0][0], expected[4][0])  # a new order and new crops each epoch


def test_auto_is_the_device_loader_on_the_cpu(tmp_path):
    write_image_folder(tmp_path, per_class=4)
    data = load_dataset("imagefolder", DataOptions(root=str(tmp_path), image_size=8))
    assert resolve_loader("auto", data, torch.device("cpu")) == "device"
    assert resolve_loader("stream", data, torch.device("cpu")) == "stream"


@pytest.mark.gpu
def test_auto_streams_when_the_data_exceed_a_fraction_of_the_gpu(tmp_path):
    from prune_ray.data import loaders

    write_image_folder(tmp_path, per_class=4)
    data = load_dataset("imagefolder", DataOptions(root=str(tmp_path), image_size=8))
    assert resolve_loader("auto", data, torch.device("cuda")) == "device"
    total = torch.cuda.get_device_properties(0).total_memory
    big = int(loaders.STREAM_FRACTION * total / data.train_x[0].numel() / 4) + 1  # images of 4 bytes a value
    huge = type(data)(**{**data.__dict__, "train_x": data.train_x[:1].expand(big, -1, -1, -1)})
    assert resolve_loader("auto", huge, torch.device("cuda")) == "stream"


def test_trials_via_stream_and_device_loader_give_the_same_row(tmp_path):
    """One ImageFolder trial (baseline trained, pruned, fine-tuned) per loader, no Ray: the rows'
    accuracies agree and each row says which loader ran."""
    write_image_folder(tmp_path / "images", splits=("train", "test"), per_class=12)
    rows = {}
    for loader in ("device", "stream"):
        text = spec_text(tmp_path / "images", f", loader: {loader}, workers: 1") + (
            f"storage: {tmp_path / loader}\nbaseline: {{train: {{epochs: 2, batch_size: 8}}}}\n"
            "finetune: {epochs: 1, batch_size: 8}\nschedule: uniform\nmeasure: {latency_repeats: 2}\n"
        )
        spec = spec_from_yaml(text, "spec.yaml")
        config = TrialConfig(OperatingPoint(0.5, "l1_filter", 0), Proposal({}))
        rows[loader] = run_trial(config, TrialContext(spec, "s", {}, None), "t1")
        assert rows[loader]["status"] == "ok", rows[loader]["error"]
        assert rows[loader]["data_loader"] == loader
    for column in ("baseline_top1", "top1_pruned", "top1", "test_top1"):
        assert rows["stream"][column] == pytest.approx(rows["device"][column], abs=1e-9), column
