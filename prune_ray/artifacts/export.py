"""python -m prune_ray.export: one trial's saved model out of a sweep, as safetensors or ONNX.

    python -m prune_ray.export RESULTS --sweep NAME (--trial ID | --pick --method M --budget B)
                               --format safetensors|onnx --out DIR

The trial is named (--trial) or picked (--pick: of the operating point's trials that kept a model,
the best validation top-1, the smaller keep on a tie, as the analysis picks). safetensors copies the
saved model (weights, sparse where masked, and plan.json; reload with load_pruned(DIR)); onnx writes
DIR/model.onnx and checks it in onnxruntime against PyTorch on a batch. Exit codes: 0 written;
1 onnxruntime's outputs differ from PyTorch's; 2 bad input or an unreadable model (one line).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd
import torch

from ..results.analyze import load_results
from ..results.frontier import in_pick_order, usable_rows
from ..results.location import BadInput
from ..results.storage import open_storage
from .deployment import Deployment
from .locate import ModelSource, model_directory, why_no_model
from .onnx import ONNX_ATOL, ExportError, check_onnx, export_onnx
from .store import PLAN_FILE, ArtifactError, load_model, read_plan, weights_file

EXIT_MISMATCH, EXIT_BAD_INPUT = 1, 2
CHECK_SEED = 0


@dataclass(frozen=True)
class Export:
    files: list[str]  # written, in order
    notes: list[str]  # lines printed after the files
    ok: bool = True  # False: the exported model's outputs differ from PyTorch's


# (model directory URI, the loaded model, its plan, output folder, check batch size) -> Export
Exporter = Callable[[str, torch.nn.Module, dict, str, int], Export]


def _safetensors(uri: str, model: torch.nn.Module, plan: dict, out: str, batch: int) -> Export:
    source = open_storage(uri)
    files = []
    for name in (weights_file(plan), PLAN_FILE):  # the plan last, as the sweep writes them
        path = os.path.join(out, name)
        with open(path, "wb") as handle:
            handle.write(source.read_bytes(source.path(name)))
        files.append(path)
    load_model(out)  # the copy loads
    masks, quantized = plan.get("masks", []), plan.get("quantized", [])
    sparse = f", {len(masks)} tensors sparse (bitmask + nonzero values)" if masks else ""
    sparse += f", {len(quantized)} tensors quantised and entropy coded" if quantized else ""
    return Export(files, [f"reload: from prune_ray import load_pruned; load_pruned({out!r}){sparse}"])


def _onnx(uri: str, model: torch.nn.Module, plan: dict, out: str, batch: int) -> Export:
    path = os.path.join(out, "model.onnx")
    generator = torch.Generator().manual_seed(CHECK_SEED)
    inputs = torch.randn([batch, *plan["input_shape"][1:]], generator=generator)
    deployment = Deployment.from_plan(plan.get("deployment"))
    export_onnx(model, inputs, path, deployment.onnx_metadata() if deployment else None)
    check = check_onnx(path, model, inputs)
    notes = [describe_deployment(deployment), f"onnxruntime: max |difference| from PyTorch {check.max_abs_diff:.2e} on a batch of {check.batch} "
             f"(outputs up to {check.max_abs_output:.3g}; tolerance {ONNX_ATOL:g}); latency {check.latency_ms:.3f} ms per batch (median, CPU)"]
    if plan["granularity"] == "unstructured":
        notes.append("note: unstructured model exported dense: ONNX stores every weight, the masked zeros included")
    return Export([path], notes, ok=check.max_abs_diff <= ONNX_ATOL)


def describe_deployment(deployment: Deployment | None) -> str:
    """One line: what the model takes and gives (the metadata_props the ONNX file carries)."""
    if deployment is None:
        return "metadata: none (saved before prune-ray recorded the input normalisation)"
    classes = f" ({', '.join(deployment.class_names)})" if deployment.class_names else ""
    return (f"metadata_props prune_ray.*: {deployment.dataset} input {list(deployment.input_shape)}, "
            f"(pixels x {deployment.pixel_scale:.6g} - mean {list(deployment.mean)}) / std {list(deployment.std)}; "
            f"{deployment.num_classes} classes{classes}")


FORMATS: dict[str, Exporter] = {"safetensors": _safetensors, "onnx": _onnx}


def select_row(results: pd.DataFrame, trial: str | None, method: str | None, budget: float | None,
               quantizer: str | None = None) -> pd.Series:
    """The row of --trial, or the pick of (--method, --budget[, --quantizer]) among rows that kept a model."""
    rows = usable_rows(results, include_screen=True)
    if trial is not None:
        match = rows[rows["trial_id"] == trial]
        if match.empty:
            raise BadInput(f"trial {trial!r} has no ok row in these results")
        row = match.iloc[0]
    else:
        match = rows[(rows["method"] == method) & rows["budget"].map(lambda b: math.isclose(b, budget)) & ~rows["stage"].eq("screen")]
        if quantizer is not None:
            match = match[match["quantizer"] == quantizer]
        if match.empty:
            known = sorted({f"{m}@{b:g}" for m, b in zip(rows["method"], rows["budget"]) if not math.isnan(b)})
            quantized = "" if quantizer is None else f" quantised by {quantizer!r}"
            raise BadInput(f"no ok trial of method {method!r}{quantized} at budget {budget:g}; operating points: {', '.join(known) or 'none'}")
        saved = match[match["model_uri"].notna()]
        if saved.empty:
            raise BadInput(f"no trial of {method!r} at budget {budget:g} kept a model; the pick: {why_no_model(in_pick_order(match).iloc[0])}")
        row = in_pick_order(saved).iloc[0]
    if pd.isna(row["model_uri"]):
        raise BadInput(why_no_model(row))
    return row


def export_model(source: ModelSource, out: str, format: str, root: str | None = None, sweep: str | None = None,
                 batch: int = 32) -> Export:
    """Write the saved model `source` names (a directory, a row, or a trial id plus root: as
    load_pruned takes it) into folder `out` as `format` (safetensors or onnx)."""
    uri = model_directory(source, root, sweep)
    model, plan = load_model(uri), read_plan(uri)
    os.makedirs(out, exist_ok=True)
    return FORMATS[format](uri, model, plan, out, batch)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block: the house style for bad input
        print(f"prune-ray export: error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m prune_ray.export", description="Export one trial's saved pruned model as safetensors or ONNX.",
        epilog="Exit codes: 0 written; 1 onnxruntime's outputs differ from PyTorch's; 2 bad input (one line on stderr).")
    parser.add_argument("results", metavar="RESULTS", help="results root (the sweep's --storage), or a sweep's directory")
    parser.add_argument("--sweep", metavar="NAME", help="the sweep under RESULTS")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", metavar="ID", help="the trial_id of the row to export")
    which.add_argument("--pick", action="store_true", help="the best trial of --method at --budget that kept a model")
    parser.add_argument("--method", help="with --pick: the pruning method")
    parser.add_argument("--budget", type=float, help="with --pick: the budget (fraction of the resource kept)")
    parser.add_argument("--quantizer", help="with --pick: only trials of this quantiser (default: any)")
    parser.add_argument("--format", choices=sorted(FORMATS), required=True, help="safetensors (the saved files, "
                        "sparse where masked) or onnx (checked in onnxruntime)")
    parser.add_argument("--out", metavar="DIR", required=True, help="folder to write into (created if absent)")
    parser.add_argument("--batch", type=int, default=32, help="examples in the onnxruntime check batch (default 32)")
    return parser


def _describe(path: str) -> str:
    return f"  {path}  {os.path.getsize(path):,} bytes"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.pick and (args.method is None or args.budget is None):
        parser.error("--pick needs --method and --budget")
    try:
        row = select_row(load_results(args.results, args.sweep, include_screen=True), args.trial, args.method, args.budget,
                         args.quantizer)
        print(f"[prune-ray] export {row['trial_id']} ({row['method']}, {row['granularity']}, val top-1 {row['top1']:.4f}) "
              f"from {row['model_uri']} as {args.format}")
        result = export_model(row, args.out, args.format, batch=args.batch)
    except (BadInput, ArtifactError, ExportError, OSError) as error:
        print(f"prune-ray export: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print("\n".join([*map(_describe, result.files), *result.notes]))
    if not result.ok:
        print(f"prune-ray export: error: onnxruntime's outputs differ from PyTorch's by more than {ONNX_ATOL:g}", file=sys.stderr)
        return EXIT_MISMATCH
    return 0
