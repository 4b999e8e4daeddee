"""Small dataset files in the real on-disk formats (no downloads here)."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np


def write_idx_images(path: str, images: np.ndarray) -> None:
    with open(path, "wb") as handle:
        handle.write(struct.pack(">IIII", 2051, len(images), images.shape[1], images.shape[2]))
        handle.write(images.astype(np.uint8).tobytes())


def write_idx_labels(path: str, labels: np.ndarray) -> None:
    with open(path, "wb") as handle:
        handle.write(struct.pack(">II", 2049, len(labels)))
        handle.write(labels.astype(np.uint8).tobytes())


def make_mnist(root: str, folder: str = "MNIST", train: int = 200, test: int = 50, seed: int = 0) -> None:
    """MNIST-format idx files (uncompressed, as torchvision keeps them in <root>/<folder>/raw)."""
    rng = np.random.default_rng(seed)
    raw = os.path.join(root, folder, "raw")
    os.makedirs(raw, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = np.arange(count) % 10
        images = rng.integers(0, 256, (count, 28, 28))
        images[:, :4, :4] = labels[:, None, None] * 25  # a learnable pattern
        write_idx_images(os.path.join(raw, f"{prefix}-images-idx3-ubyte"), images)
        write_idx_labels(os.path.join(raw, f"{prefix}-labels-idx1-ubyte"), labels)


def _cifar_batch(count: int, classes: int, label_key: str, rng) -> dict:
    labels = (np.arange(count) % classes).tolist()
    data = rng.integers(0, 256, (count, 3 * 32 * 32), dtype=np.uint8)
    data[:, :32] = np.asarray(labels, dtype=np.uint8)[:, None] * (255 // classes)  # learnable top row
    return {"batch_label": "fixture", label_key: labels, "data": data, "filenames": [f"{i}.png" for i in range(count)]}


def make_cifar10(root: str, per_batch: int = 40, test: int = 50, seed: int = 0) -> None:
    """cifar-10-batches-py: five training batches, a test batch and batches.meta (pickle protocol 2)."""
    rng = np.random.default_rng(seed)
    directory = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(directory, exist_ok=True)
    files = {f"data_batch_{i}": _cifar_batch(per_batch, 10, "labels", rng) for i in range(1, 6)}
    files["test_batch"] = _cifar_batch(test, 10, "labels", rng)
    files["batches.meta"] = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch}
    for name, content in files.items():
        with open(os.path.join(directory, name), "wb") as handle:
            pickle.dump(content, handle, protocol=2)


def make_cifar100(root: str, train: int = 500, test: int = 100, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    directory = os.path.join(root, "cifar-100-python")
    os.makedirs(directory, exist_ok=True)
    for name, count in (("train", train), ("test", test)):
        with open(os.path.join(directory, name), "wb") as handle:
            pickle.dump(_cifar_batch(count, 100, "fine_labels", rng), handle, protocol=2)


def run_sweep_cli(env: dict | None, cwd, *args: str):
    """`python -m prune_ray.sweep ARGS` in `cwd`, as a user runs it (env None: this process's)."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "prune_ray.sweep", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900
    )


def write_image_folder(root, splits=("train",), per_class: int = 12, classes=("cat", "dog", "owl"), size: int = 8,
                       seed: int = 0) -> None:
    """PNG files in torchvision's ImageFolder layout: <root>/<split>/<class>/<n>.png, RGB, each class
    a learnable colour (its channel brighter) plus noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in splits:
        for index, name in enumerate(classes):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for n in range(per_class):
                pixels = rng.integers(0, 120, (size, size, 3))
                pixels[:, :, index % 3] += 120
                Image.fromarray(pixels.astype(np.uint8)).save(os.path.join(folder, f"{n}.png"))


def cli_cases(*cases):
    """Parametrize cases of a check of `python -m prune_ray.sweep`, each with `real` last: the first
    case runs a real interpreter (~5-10 s: the exit status and stderr a user sees), the others call
    the same `main` in this process (the same checks of the same code, in a second or so)."""
    import pytest

    def param(case):
        return case if isinstance(case, tuple) and not isinstance(case, str) else (case,)

    return [pytest.param(*param(case), n == 0) for n, case in enumerate(cases)]


def run_sweep_command(args: list[str], cwd, real: bool):
    """`python -m prune_ray.sweep ARGS` in `cwd`: a real interpreter, or (real False) `main(ARGS)`
    in this process with `cwd` as the working directory. Both give returncode, stdout, stderr."""
    import contextlib
    import io
    import subprocess

    if real:
        return run_sweep_cli(None, cwd, *args)
    from prune_ray.sweep import main

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse's own errors and --help; the interpreter's meaning of its code
                code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["prune_ray.sweep", *args], code, out.getvalue(), err.getvalue())
