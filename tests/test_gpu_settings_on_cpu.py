"""The GPU's training settings forced on the CPU (bf16 autocast with device_type="cpu",
channels_last, the compiled step) through whole Ray-free trials of a structured, an unstructured,
a low-rank and a quantised method, so that their dtype and layout bugs show without a GPU.

A user's small network (tests/user_models.py: a residual add, a concatenation, BatchNorm) on
512 digits, baseline and fine-tuning 1 epoch each; the step is compiled with the aot_eager backend
(Dynamo's capture and AOTAutograd's backward; inductor's first compile takes minutes on this CPU:
benchmarks/gpu_check.py runs these trials with inductor on a GPU)."""

import dataclasses

import pytest
import torch

from user_models import write_user_net

from prune_ray import load_pruned
from prune_ray.data import DataOptions
from prune_ray.points import OperatingPoint, Proposal, TrialConfig
from prune_ray.spec import ArtifactOptions, MeasureOptions, SweepSpec
from prune_ray.train import GPU_SETTINGS_ON_CPU, TrainRecipe, evaluate
from prune_ray.trial import TrialContext, run_trial
from prune_ray.trial_setup import trial_data

CASES = [  # (method, budget, quantizer): one of each kind
    ("l1_filter", 0.5, "none"),
    ("magnitude", 0.3, "none"),
    ("tucker", 0.6, "none"),
    ("magnitude", 0.5, "kmeans"),
]


@pytest.fixture(scope="module")
def gpu_like(tmp_path_factory):
    """The spec and the rows of the four trials, run with the GPU's settings on the CPU."""
    root = tmp_path_factory.mktemp("gpu_like")
    net = write_user_net(root)
    spec = SweepSpec(model=f"{net}:make", storage=str(root / "results"), data=DataOptions(train_limit=512), methods=tuple({m: None for m, _, _ in CASES}),
                     baseline=dataclasses.replace(SweepSpec().baseline, train=TrainRecipe(epochs=1)),
                     finetune=TrainRecipe(epochs=1, lr=0.01, compile="on"), artifacts=ArtifactOptions(save="all"),
                     measure=MeasureOptions(latency_repeats=5, latency_min_time_ms=5.0, latency_warmup=1))
    rows = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(GPU_SETTINGS_ON_CPU, "1")
        patch.setattr("prune_ray.train.COMPILE_BACKEND", "aot_eager")
        for method, budget, quantizer in CASES:
            config = TrialConfig(OperatingPoint(budget, method, 0, quantizer=quantizer), Proposal({}))
            rows[(method, quantizer)] = run_trial(config, TrialContext(spec, "s", {}, None), f"t-{method}-{quantizer}")
    return spec, rows


@pytest.mark.slow
@pytest.mark.parametrize("method, quantizer", [(case[0], case[2]) for case in CASES])
def test_a_trial_runs_with_the_gpus_settings_on_the_cpu(gpu_like, method, quantizer):
    spec, rows = gpu_like
    row = rows[(method, quantizer)]
    assert row["status"] == "ok", row.get("error")
    assert 0 < row["top1"] <= 1 and row["top1_pruned"] is not None
    model = load_pruned(row, spec.storage)  # saved as float32 NCHW, whatever the training ran in
    for name, tensor in model.state_dict().items():
        assert not tensor.is_floating_point() or tensor.dtype == torch.float32, name
        assert tensor.dim() != 4 or tensor.is_contiguous(), name
    data = trial_data(spec)
    assert evaluate(model, data.val_x, data.val_y)[0] == pytest.approx(row["top1"], abs=0.02)  # fp32 vs bf16 evaluation
