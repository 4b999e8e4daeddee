"""Han et al. 2015 and Deep Compression (Han et al., ICLR 2016) reproduced on real MNIST with the
papers' own networks (LeNet-300-100 and the Caffe LeNet-5), on this CPU.

    python benchmarks/mnist_papers.py [--mnist ../shared/data/mnist] [--storage DIR] [--report-only]

Per network it runs two recipes through the sweep CLI (real Ray, Parquet read back):
`sweeps/han2015_<net>_mnist.yaml` (iterative magnitude pruning with retraining to ~8% of the weights:
the paper's per-layer rates and ours) and `sweeps/deep_compression_<net>_mnist.yaml` (the same pruning,
then k-means weight sharing with centroid fine-tuning, then the entropy-coded file). The only changes
to the recipes: the data root (the IDX files unpacked from --mnist into DIR/data), one core per
trial (--max-concurrent trials at once within a sweep), every model saved, and Deep Compression's
unquantised twin left out (it is the han2015 recipe's second point, trained the same way). Each
network's baseline is trained first, in this process on one thread, into the store both of its sweeps
read; then all the sweeps run at once, each in its own sweep CLI process.

It prints, per network, the papers' figures beside ours: baseline test error, the error at 12x fewer
weights, the total compression (baseline float32 bytes / encoded file bytes) and its error, and the
encoded file's bits per nonzero weight by stage (relative indices, weight codes, the float part:
codebooks and biases) beside the bits Deep Compression reports for each stage.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from prune_ray import load_pruned  # noqa: E402
from prune_ray.artifacts.store import ENCODED_FILE  # noqa: E402
from prune_ray.quantize.encoding import decode_model, encode_model  # noqa: E402
from prune_ray.results import read_results  # noqa: E402
from prune_ray.results.storage import open_storage  # noqa: E402
from prune_ray.data import load_dataset  # noqa: E402
from prune_ray.spec import ArtifactOptions, Resources, SweepSpec, load_spec, spec_to_yaml  # noqa: E402
from prune_ray.trial_setup import obtain_baseline  # noqa: E402

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclasses.dataclass(frozen=True)
class Paper:
    """One network's figures in the papers (test error in percent)."""

    baseline_error: float  # Han et al. 2015, Table 1
    pruned_error: float  # Han et al. 2015, Table 1, at `pruned_x` fewer weights
    pruned_x: float
    dc_error: float  # Deep Compression, Table 1
    dc_x: float  # Deep Compression's total compression (pruning + quantisation + Huffman)
    # Deep Compression's bits per nonzero weight after Huffman coding (Tables 2 and 3): index, weight codes
    dc_index_bits: float
    dc_weight_bits: float
    dc_bits: str  # the bits asked of k-means (conv/fc)


PAPERS = {
    "lenet300": Paper(1.64, 1.59, 12, 1.58, 40, 3.7, 5.1, "fc 6"),
    "lenet5": Paper(0.80, 0.77, 12, 0.74, 39, 4.4, 4.1, "conv 8, fc 5"),
}


PAPER_RECIPES = ("han2015", "deep_compression")  # sweeps/<paper>_<network>_mnist.yaml


def unpack_mnist(source: str, root: str) -> str:
    """The four IDX files gunzipped into <root>/MNIST/raw (torchvision's layout); root returned."""
    raw = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    for name in IDX_FILES:
        target = os.path.join(raw, name)
        if not os.path.exists(target):
            with gzip.open(os.path.join(source, name + ".gz")) as packed, open(target + ".part", "wb") as out:
                shutil.copyfileobj(packed, out)
            os.replace(target + ".part", target)
    return root


def benchmark_spec(recipe: str, data_root: str, storage: str, kmeans_only: bool) -> SweepSpec:
    """The recipe on the unpacked MNIST, one core per trial, every model saved (see the module doc)."""
    spec = load_spec(os.path.join(ROOT, "sweeps", recipe))
    return dataclasses.replace(
        spec, data=dataclasses.replace(spec.data, root=data_root, download=False), storage=storage,
        resources=Resources(cpu=1, gpu=0), artifacts=ArtifactOptions(save="all"),
        quantize=tuple(q for q in spec.quantize if q != "none") if kmeans_only else spec.quantize,
    )


def train_baseline(spec: SweepSpec) -> float:
    """Train (or load) the recipe's baseline into the store in this process, on one thread, so the
    network's two sweeps can start together and share it; its wall time in seconds."""
    torch.set_num_threads(1)
    began = time.perf_counter()
    baseline = obtain_baseline(spec, load_dataset(spec.dataset, spec.data), spec.seeds[0])
    state = f"trained in {baseline.train_seconds / 60:.1f} min" if baseline.trained_now else "loaded from the store"
    print(f"baseline {spec.model} ({baseline.key}): test top-1 {baseline.test_top1:.4f}, {state}", flush=True)
    return time.perf_counter() - began


def start_sweep(spec: SweepSpec, name: str, short: str, max_concurrent: int) -> subprocess.Popen:
    """The sweep CLI on `spec` in its own process (real Ray; Ray's socket paths under `short`)."""
    ray_dir = tempfile.mkdtemp(prefix="s", dir=short)  # short: AF_UNIX socket paths are at most 107 bytes
    path = os.path.join(ray_dir, "spec.yaml")
    with open(path, "w") as handle:
        handle.write(spec_to_yaml(spec))
    env = {**os.environ, "RAY_TMPDIR": ray_dir, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    log = open(os.path.join(spec.storage, f"{name}.log"), "w")
    return subprocess.Popen([sys.executable, "-m", "prune_ray.sweep", path, "--storage", spec.storage, "--name", name,
                             "--max-concurrent", str(max_concurrent)], env=env, stdout=log, stderr=subprocess.STDOUT)


def weight_reduction(model_uri: str) -> float:
    """Conv and fc weights of the dense network / nonzero ones of the saved model (biases aside,
    as the papers count)."""
    layers = [m for m in load_pruned(model_uri).modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    return sum(m.weight.numel() for m in layers) / sum(int((m.weight != 0).sum()) for m in layers)


def stage_bits(model_uri: str) -> dict[str, float]:
    """Bits per nonzero weight of each part of the encoded file, re-encoded from its decoded codes
    (the same bytes: the encoder is deterministic)."""
    storage = open_storage(model_uri)
    data = storage.read_bytes(storage.path(ENCODED_FILE))
    decoded = decode_model(data)
    encoded = encode_model(decoded.state, decoded.quantized)
    assert len(encoded.data) == len(data), (len(encoded.data), len(data))
    nonzero = sum(int((q.codes != 0).sum()) for q in decoded.quantized.values())
    codebook = sum(4 * q.table.numel() for q in decoded.quantized.values())
    bits = {part: 8 * size / nonzero for part, size in encoded.parts.items()}
    return {"index": bits["indices"], "codes": bits["codes"], "floats": bits["floats"], "header": bits["header"],
            "total": 8 * len(data) / nonzero, "nonzero": nonzero, "codebook_bytes": codebook,
            "floats_bytes": encoded.parts["floats"], "file_bytes": len(data)}


def _same_ratios(measured: dict[str, float], asked: dict[str, float]) -> bool:
    """The realised per-layer ratios (counts / layer size, so 0.85 may read 0.8499999) are the asked ones."""
    return measured.keys() == asked.keys() and all(abs(measured[name] - asked[name]) < 1e-3 for name in asked)


def report(storage: str, network: str) -> list[str]:
    paper = PAPERS[network]
    han = read_results(storage, f"han2015-{network}")
    dc = read_results(storage, f"deep-compression-{network}")
    rows = han[han["status"] == "ok"].reset_index(drop=True)
    quantized = dc[(dc["status"] == "ok") & (dc["quantizer"] == "kmeans")].reset_index(drop=True)
    base_error = 100 * (1 - float(rows["baseline_test_top1"].iloc[0]))
    lines = [f"## {network} ({rows['model'].iloc[0]}, {int(rows['baseline_params'].iloc[0]):,} parameters)", "",
             "| | paper | ours | ours - own baseline |", "|---|---|---|---|",
             f"| baseline test error | {paper.baseline_error:.2f}% | {base_error:.2f}% | |"]
    recipe = load_spec(os.path.join(ROOT, "sweeps", f"han2015_{network}_mnist.yaml"))
    for index, ratios in enumerate(recipe.fixed_ratios):  # the paper's rates first, then ours
        row = rows[[_same_ratios(dict(zip(r["layer_names"], r["layer_ratios"])), ratios) for _, r in rows.iterrows()]].iloc[0]
        error = 100 * (1 - float(row["test_top1"]))
        reduction = weight_reduction(row["model_uri"])
        label = "paper's per-layer rates" if index == 0 else "our per-layer rates"
        lines.append(f"| pruned, {label}: {reduction:.1f}x fewer weights | "
                     f"{paper.pruned_error:.2f}% at {paper.pruned_x}x | {error:.2f}% | {error - base_error:+.2f} |")
    for _, row in quantized.iterrows():
        error = 100 * (1 - float(row["test_top1"]))
        bits = stage_bits(row["model_uri"])
        lines.append(f"| Deep Compression: total compression | {paper.dc_x}x | {float(row['compression_ratio_total']):.1f}x "
                     f"({int(row['bytes_encoded']):,} bytes) | |")
        lines.append(f"| Deep Compression: test error | {paper.dc_error:.2f}% | {error:.2f}% | {error - base_error:+.2f} |")
        lines += ["", f"Encoded file, bits per nonzero weight ({bits['nonzero']:,} nonzero; k-means {paper.dc_bits} "
                  f"bits asked; ours {int(row['quantize_bits_conv'])}/{int(row['quantize_bits_fc'])} conv/fc):", "",
                  "| stage | paper (after Huffman) | ours |", "|---|---|---|",
                  f"| relative indices | {paper.dc_index_bits} | {bits['index']:.2f} |",
                  f"| weight codes | {paper.dc_weight_bits} | {bits['codes']:.2f} |",
                  f"| codebooks + biases (float32, compressed: {bits['floats_bytes']:,} bytes, codebooks "
                  f"{bits['codebook_bytes']:,} raw) | not counted per weight | {bits['floats']:.2f} |",
                  f"| header | | {bits['header']:.2f} |",
                  f"| total | {paper.dc_index_bits + paper.dc_weight_bits:.1f} + codebooks | {bits['total']:.2f} |"]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default=os.path.join(ROOT, "..", "shared", "data", "mnist"),
                        help="folder of the four MNIST .gz files (default ../shared/data/mnist)")
    parser.add_argument("--storage", default=os.path.expanduser("~/.cache/prune-ray-bench/mnist-papers"),
                        help="results root; the unpacked data goes to <storage>/data")
    parser.add_argument("--networks", nargs="+", default=list(PAPERS), choices=list(PAPERS))
    parser.add_argument("--papers", nargs="+", default=list(PAPER_RECIPES), choices=list(PAPER_RECIPES),
                        help="which papers' recipes to run (the report reads both)")
    parser.add_argument("--max-concurrent", type=int, default=1, help="trials at once within a sweep")
    parser.add_argument("--report-only", action="store_true", help="print the table of sweeps already run")
    args = parser.parse_args(argv)
    storage = os.path.abspath(args.storage)
    if not args.report_only:
        if not all(os.path.exists(os.path.join(args.mnist, f + ".gz")) for f in IDX_FILES):
            print(f"--mnist: {args.mnist} does not hold the four MNIST .gz files ({', '.join(IDX_FILES)})", file=sys.stderr)
            return 2
        data_root = unpack_mnist(args.mnist, os.path.join(storage, "data"))
        began = time.perf_counter()
        sweeps = []
        for network in args.networks:
            for paper in args.papers:
                recipe, kmeans_only = f"{paper}_{network}_mnist.yaml", paper == "deep_compression"
                name = recipe.removesuffix("_mnist.yaml").replace("_", "-")
                shutil.rmtree(os.path.join(storage, name), ignore_errors=True)
                sweeps.append((name, benchmark_spec(recipe, data_root, storage, kmeans_only)))
            seconds = train_baseline(sweeps[-1][1])
            print(f"baseline {network}: {seconds / 60:.1f} min", flush=True)
        with tempfile.TemporaryDirectory(prefix="mnp", dir="/tmp") as short:  # Ray's socket paths stay short
            running = [(name, start_sweep(spec, name, short, args.max_concurrent)) for name, spec in sweeps]
            failed = [name for name, process in running if process.wait() != 0]  # every sweep ends before Ray's dir goes
        for name in failed:
            print(f"sweep {name} failed: see {os.path.join(storage, name + '.log')}", file=sys.stderr)
        if failed:
            return 1
        print(f"all sweeps: {(time.perf_counter() - began) / 60:.1f} min wall since the first baseline", flush=True)
    for network in args.networks:
        print("\n".join(report(storage, network)) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
