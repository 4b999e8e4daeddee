"""A pruned model as ONNX (torch.onnx.export, the dynamo exporter), checked in onnxruntime.

Needs the optional extra `export` (onnx, onnxruntime, onnxscript): `pip install -e ".[export]"`.
Structured and low-rank models export at their smaller shapes; unstructured ones export dense
(ONNX keeps every weight, the zeros included: the size saving stays in the safetensors form).
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn

ONNX_ATOL = 1e-4  # onnxruntime's outputs against PyTorch's on the check batch


class ExportError(RuntimeError):
    """The export failed, or onnxruntime's outputs differ from PyTorch's; the message says how."""


@dataclass(frozen=True)
class OnnxCheck:
    max_abs_diff: float  # onnxruntime vs PyTorch on the check batch
    max_abs_output: float  # PyTorch's largest output magnitude there: the scale of the difference
    latency_ms: float  # median onnxruntime time of one batch (CPU execution provider)
    batch: int


def _runtime():
    try:
        import onnxruntime
    except ImportError:
        raise ExportError('ONNX export needs onnx, onnxruntime and onnxscript: pip install -e ".[export]" -c constraints.txt') from None
    return onnxruntime


def export_onnx(model: nn.Module, example: torch.Tensor, path: str, metadata: dict[str, str] | None = None) -> None:
    """Write `model` to `path`, weights inside (one file), with a dynamic batch dimension (input
    'input', output 'logits'), and `metadata` as the model's metadata_props."""
    _runtime()
    model = model.eval()
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example[:1],), path, dynamo=True, external_data=False, verbose=False, input_names=["input"],
                              output_names=["logits"], dynamic_shapes=({0: batch},))
        except Exception as error:  # the exporter raises many types; name the failure in one line
            raise ExportError(f"torch.onnx.export failed: {type(error).__name__}: {str(error).splitlines()[0]}") from None
    if metadata:
        import onnx

        proto = onnx.load(path)
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, path)


@torch.no_grad()
def check_onnx(path: str, model: nn.Module, batch: torch.Tensor, repeats: int = 20) -> OnnxCheck:
    """Run the ONNX file in onnxruntime on `batch`; compare with PyTorch; time it (median)."""
    onnxruntime = _runtime()
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: batch.cpu().numpy()}
    got = torch.from_numpy(session.run(None, feed)[0])
    expected = model.eval()(batch.cpu())
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - began) * 1000)
    return OnnxCheck(float((got - expected).abs().max()), float(expected.abs().max()), statistics.median(times), len(batch))
