import os
import pickle

import pytest
import torch

from fixtures import make_cifar10, make_cifar100, make_mnist
from prune_ray.data import BatchLoader, DataOptions, DatasetFilesMissingError, crop_flip, list_datasets, load_dataset

WRITERS = {
    "mnist": lambda root: make_mnist(root, "MNIST"),
    "fashion_mnist": lambda root: make_mnist(root, "FashionMNIST", seed=1),
    "cifar10": make_cifar10,
    "cifar100": make_cifar100,
}
SHAPES = {"mnist": (1, 28, 10), "fashion_mnist": (1, 28, 10), "cifar10": (3, 32, 10), "cifar100": (3, 32, 100)}
SIZES = {"mnist": (200, 50), "fashion_mnist": (200, 50), "cifar10": (200, 50), "cifar100": (500, 100)}


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
    # normalised with the dataset's published statistics: near zero mean for the uniform fixture
    assert abs(float(data.train_x.mean())) < 1.5
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
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    out = crop_flip(images, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == images.shape and out.device == images.device
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(2):  # every output is some crop of the padded image, maybe mirrored
        candidates = [padded[i, :, r : r + 6, c : c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(2)) for c in candidates)


def test_loader_visits_every_example_once_per_epoch_in_a_seeded_order():
    x = torch.arange(10, dtype=torch.float32)[:, None, None, None]
    y = torch.arange(10)
    loader = BatchLoader(x, y, batch_size=4, shuffle=True, seed=3)
    first = torch.cat([batch_y for _, batch_y in loader])
    assert sorted(first.tolist()) == list(range(10)) and len(loader) == 3
    second = torch.cat([batch_y for _, batch_y in BatchLoader(x, y, batch_size=4, shuffle=True, seed=3)])
    assert torch.equal(first, second)


@pytest.mark.gpu
def test_dataset_moves_to_the_gpu_and_augments_there(tmp_path):
    make_cifar10(str(tmp_path))
    data = load_dataset("cifar10", DataOptions(root=str(tmp_path))).to("cuda")
    batch, _ = next(iter(BatchLoader(data.train_x, data.train_y, 32, shuffle=True, augment=True)))
    assert batch.is_cuda
