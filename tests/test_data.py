import os
import pickle

import pytest
import torch

from fixtures import make_cifar10, make_cifar100, make_mnist
from prune_ray.data import (
    BatchLoader, DataOptions, DatasetFilesMissingError, crop_flip, draw_crop_flip, list_datasets, load_dataset,
)

WRITERS = {
    "mnist": lambda root: make_mnist(root, "MNIST"),
    "fashion_mnist": lambda root: make_mnist(root, "FashionMNIST", seed=1),
    "cifar10": make_cifar10,
    "cifar100": make_cifar100,
}
SHAPES = {"mnist": (1, 28, 10), "fashion_mnist": (1, 28, 10), "cifar10": (3, 32, 10), "cifar100": (3, 32, 100)}
SIZES = {"mnist": (200, 50), "fashion_mnist": (200, 50), "cifar10": (200, 50), "cifar100": (500, 100)}
# the published per-channel statistics each dataset is normalised with
NORMALISATION = {
    "mnist": ([0.1307], [0.3081]), "fashion_mnist": ([0.2860], [0.3530]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
    "cifar100": ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
}


def _idx_train_images(root: str, folder: str) -> torch.Tensor:
    with open(os.path.join(root, folder, "raw", "train-images-idx3-ubyte"), "rb") as handle:
        pixels = handle.read()[16:]  # after the idx header
    return torch.frombuffer(bytearray(pixels), dtype=torch.uint8).reshape(-1, 1, 28, 28).float()


def _cifar_train_images(root: str, folder: str, files: list[str]) -> torch.Tensor:
    batches = []
    for name in files:
        with open(os.path.join(root, folder, name), "rb") as handle:
            batches.append(torch.from_numpy(pickle.load(handle, encoding="latin1")["data"]).reshape(-1, 3, 32, 32))
    return torch.cat(batches).float()


RAW_PIXELS = {  # the training images the fixture wrote, as stored (0..255)
    "mnist": lambda root: _idx_train_images(root, "MNIST"),
    "fashion_mnist": lambda root: _idx_train_images(root, "FashionMNIST"),
    "cifar10": lambda root: _cifar_train_images(root, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)]),
    "cifar100": lambda root: _cifar_train_images(root, "cifar-100-python", ["train"]),
}


def test_registry_holds_the_literature_datasets():
    assert {"digits", "mnist", "fashion_mnist", "cifar10", "cifar100"} <= set(list_datasets())


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_loads_from_the_real_on_disk_format(tmp_path, name):
    WRITERS[name](str(tmp_path))
    data = load_dataset(name, DataOptions(root=str(tmp_path), val_fraction=0.2))
    channels, size, classes = SHAPES[name]
    train_files, test_files = SIZES[name]
    assert data.train_x.shape[1:] == (channels, size, size) and data.train_x.dtype == torch.float32
    assert len(data.train_x) + len(data.val_x) == train_files
    assert len(data.val_x) == round(0.2 * train_files)  # stratified: 20% of every class
    assert len(data.test_x) == test_files
    assert data.num_classes == classes
    assert data.augment == name.startswith("cifar")
    # normalised with the dataset's published statistics: the fixture's raw pixels, rescaled alike
    raw = RAW_PIXELS[name](str(tmp_path))
    mean, std = NORMALISATION[name]
    expected = (raw / 255.0 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    assert float(torch.cat([data.train_x, data.val_x]).mean()) == pytest.approx(float(expected.mean()), abs=1e-4)
    # the same seed gives the same split; another seed another split
    again = load_dataset(name, DataOptions(root=str(tmp_path), val_fraction=0.2))
    assert torch.equal(again.val_y, data.val_y) and torch.equal(again.val_x, data.val_x)
    other = load_dataset(name, DataOptions(root=str(tmp_path), val_fraction=0.2, split_seed=1))
    assert not torch.equal(other.val_x, data.val_x)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_offline_without_files_says_where_to_put_them(tmp_path, name):
    with pytest.raises(DatasetFilesMissingError) as caught:
        load_dataset(name, DataOptions(root=str(tmp_path)))
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message and "download: true" in message


def test_digits_splits_are_disjoint_and_stratified():
    data = load_dataset("digits")
    assert len(data.train_x) + len(data.val_x) + len(data.test_x) == 1797
    counts = torch.bincount(data.val_y, minlength=10)
    assert counts.min() >= 25 and counts.max() <= 31  # about 16% of each ~180-image class
    flat = lambda x: {tuple(row.tolist()) for row in x.flatten(1)}  # noqa: E731
    assert not flat(data.val_x) & flat(data.test_x)


def test_cifar_reader_refuses_pickled_code(tmp_path):
    make_cifar10(str(tmp_path))

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as handle:
        pickle.dump({"data": Payload(), "labels": []}, handle)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load_dataset("cifar10", DataOptions(root=str(tmp_path)))


def test_crop_flip_shifts_and_mirrors_on_the_batch_device():
    images = torch.arange(32 * 3 * 6 * 6, dtype=torch.float32).reshape(32, 3, 6, 6)
    offsets, flip = draw_crop_flip(32, torch.Generator().manual_seed(0), images.device, padding=2)
    out = crop_flip(images, offsets, flip, padding=2)
    assert out.shape == images.shape and out.device == images.device
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(32):  # each output is the crop at its drawn offset of the padded image, mirrored if drawn
        r, c = offsets[:, i].tolist()
        crop = padded[i, :, r : r + 6, c : c + 6]
        assert torch.equal(out[i], crop.flip(2) if flip[i] else crop)
    # the draws really move and mirror images: an identity crop_flip would fail here
    assert not torch.equal(out, images) and 0 < int(flip.sum()) < 32 and (offsets != 2).any()


def test_loader_visits_every_example_once_per_epoch_in_a_seeded_order():
    x = torch.arange(10, dtype=torch.float32)[:, None, None, None]
    y = torch.arange(10)
    loader = BatchLoader(x, y, batch_size=4, shuffle=True, seed=3)
    first = torch.cat([batch_y for _, batch_y in loader])
    assert sorted(first.tolist()) == list(range(10)) and len(loader) == 3
    second = torch.cat([batch_y for _, batch_y in BatchLoader(x, y, batch_size=4, shuffle=True, seed=3)])
    assert torch.equal(first, second)
    assert first.tolist() != list(range(10))  # shuffled, not the stored order
    other = torch.cat([batch_y for _, batch_y in BatchLoader(x, y, batch_size=4, shuffle=True, seed=4)])
    assert not torch.equal(first, other)  # the seed decides the order


@pytest.mark.gpu
def test_dataset_moves_to_the_gpu_and_augments_there(tmp_path):
    make_cifar10(str(tmp_path))
    data = load_dataset("cifar10", DataOptions(root=str(tmp_path))).to("cuda")
    batch, _ = next(iter(BatchLoader(data.train_x, data.train_y, 32, shuffle=True, augment=True)))
    assert batch.is_cuda


def test_train_limit_trains_on_a_seeded_subset_and_keeps_validation_and_test_whole():
    full = load_dataset("digits")
    limited = load_dataset("digits", DataOptions(train_limit=300))
    again = load_dataset("digits", DataOptions(train_limit=300))
    assert len(limited.train_y) == 300 < len(full.train_y)
    assert torch.equal(limited.train_x, again.train_x)  # seeded by data.split_seed: every trial sees the same
    assert torch.equal(limited.val_x, full.val_x) and torch.equal(limited.test_x, full.test_x)
    assert len(torch.unique(limited.train_y)) == full.num_classes  # a random subset, not the first class's files
    members = {tuple(row.tolist()) for row in full.train_x.flatten(1)}
    assert all(tuple(row.tolist()) in members for row in limited.train_x.flatten(1))
    assert load_dataset("digits", DataOptions(train_limit=10**6)).train_y.shape == full.train_y.shape


def test_auto_loader_weighs_the_data_against_the_trials_share_of_the_card(digits):
    """resources.gpu 0.25: the data must fit STREAM_FRACTION of a quarter of the card (injected
    card memory, so this runs without a GPU); a whole card holds them on the device."""
    from prune_ray.data.loaders import STREAM_FRACTION, dataset_bytes, resolve_loader

    cuda, size = torch.device("cuda"), dataset_bytes(digits)
    card = int(2 * size / STREAM_FRACTION)  # the data take half of STREAM_FRACTION of the card
    assert resolve_loader("auto", digits, cuda, gpu_share=1.0, card_memory=card) == "device"
    assert resolve_loader("auto", digits, cuda, gpu_share=0.5, card_memory=card) == "device"  # just fits
    assert resolve_loader("auto", digits, cuda, gpu_share=0.25, card_memory=card) == "stream"
    assert resolve_loader("auto", digits, cuda, gpu_share=2.0, card_memory=card // 4) == "stream"  # one card at most
    assert resolve_loader("device", digits, cuda, gpu_share=0.25, card_memory=card) == "device"  # asked for
    assert resolve_loader("auto", digits, torch.device("cpu"), gpu_share=0.25, card_memory=1) == "device"
