"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 in torchvision's on-disk layout.

With `download: true` torchvision fetches (and checksums) the files once per node under a file lock;
otherwise missing files are a one-line error saying where to put which files. CIFAR's python
batches are pickles, read with an unpickler that only rebuilds numpy arrays (no code runs).
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from . import DataOptions, Dataset, DatasetFilesMissingError, register_dataset, split_and_normalise

DEFAULT_ROOT = os.path.join(os.path.expanduser("~"), ".cache", "prune-ray", "datasets")
MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def dataset_root(options: DataOptions) -> str:
    return os.path.abspath(os.path.expanduser(options.root or DEFAULT_ROOT))


def _require(directory: str, files: list[str], name: str, options: DataOptions, download) -> None:
    missing = [f for f in files if not os.path.exists(os.path.join(directory, f))]
    if not missing:
        return
    if options.download:
        from filelock import FileLock

        os.makedirs(directory, exist_ok=True)
        with FileLock(os.path.join(os.path.dirname(directory.rstrip("/")), f".{name}.lock")):
            download()  # torchvision skips files another process finished meanwhile
        return
    raise DatasetFilesMissingError(
        f"{name} files missing: put {', '.join(missing)} in {directory} "
        f"(torchvision layout), or set data.download: true on a machine with network access"
    )


def _mnist_like(name: str, folder: str, torchvision_class: str, mean: float, std: float, options: DataOptions) -> Dataset:
    import torchvision.datasets as tvd

    root = dataset_root(options)
    dataset_class = {"MNIST": tvd.MNIST, "FashionMNIST": tvd.FashionMNIST}[torchvision_class]
    _require(os.path.join(root, folder, "raw"), MNIST_FILES, name, options,
             lambda: dataset_class(root, train=True, download=True))
    train = dataset_class(root, train=True, download=False)
    test = dataset_class(root, train=False, download=False)

    def images(split) -> torch.Tensor:
        return split.data.to(torch.float32).unsqueeze(1) / 255.0

    return split_and_normalise(
        name, images(train), train.targets.long(), images(test), test.targets.long(), options,
        mean=[mean], std=[std], augment=False, pixel_scale=1 / 255.0, class_names=list(dataset_class.classes),
    )


@register_dataset
def mnist(options: DataOptions) -> Dataset:
    return _mnist_like("mnist", "MNIST", "MNIST", 0.1307, 0.3081, options)


@register_dataset
def fashion_mnist(options: DataOptions) -> Dataset:
    return _mnist_like("fashion_mnist", "FashionMNIST", "FashionMNIST", 0.2860, 0.3530, options)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays, lists, dicts and strings; refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # protocol-2 pickles store array bytes as latin-1 text
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def read_cifar_batch(path: str, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR python batch -> (images float in [0, 1], N x 3 x 32 x 32; labels int64)."""
    with open(path, "rb") as handle:
        batch = _NumpyOnlyUnpickler(handle, encoding="latin1").load()
    data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return torch.from_numpy(data).to(torch.float32) / 255.0, torch.tensor(batch[label_key], dtype=torch.int64)


def _class_names(path: str, key: str) -> list[str] | None:
    """The label names a CIFAR meta file holds (None when it is absent)."""
    if not os.path.exists(path):
        return None
    with open(path, "rb") as handle:
        return [str(name) for name in _NumpyOnlyUnpickler(handle, encoding="latin1").load()[key]]


def _cifar(name: str, folder: str, train_files: list[str], test_file: str, label_key: str, torchvision_class: str,
           mean: list[float], std: list[float], options: DataOptions, meta: tuple[str, str]) -> Dataset:
    import torchvision.datasets as tvd

    root = dataset_root(options)
    directory = os.path.join(root, folder)
    dataset_class = {"CIFAR10": tvd.CIFAR10, "CIFAR100": tvd.CIFAR100}[torchvision_class]
    _require(directory, [*train_files, test_file], name, options, lambda: dataset_class(root, train=True, download=True))
    parts = [read_cifar_batch(os.path.join(directory, f), label_key) for f in train_files]
    test_images, test_labels = read_cifar_batch(os.path.join(directory, test_file), label_key)
    return split_and_normalise(
        name, torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), test_images, test_labels,
        options, mean=mean, std=std, augment=True, pixel_scale=1 / 255.0,
        class_names=_class_names(os.path.join(directory, meta[0]), meta[1]),
    )


@register_dataset
def cifar10(options: DataOptions) -> Dataset:
    return _cifar("cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels",
                  "CIFAR10", [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616], options, ("batches.meta", "label_names"))


@register_dataset
def cifar100(options: DataOptions) -> Dataset:
    return _cifar("cifar100", "cifar-100-python", ["train"], "test", "fine_labels",
                  "CIFAR100", [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762], options, ("meta", "fine_label_names"))
