"""Your own network on your own data, through a real sweep on Ray: a model file the test writes
(a residual add and a concat) named by a relative path, an ImageFolder tree of PNGs, every
structured method, through the streaming loader (DataLoader workers inside Ray's worker
processes); the same trials through the device loader, run Ray-free from the same spec, give the
same rows' accuracies; the saved models reload with their rows' accuracy."""

import pytest

from fixtures import run_sweep_cli as sweep
from fixtures import write_image_folder
from prune_ray import load_pruned
from prune_ray.data import DataOptions, load_dataset
from prune_ray.points import OperatingPoint, Proposal, TrialConfig
from prune_ray.prune import get_method, list_methods
from prune_ray.results import read_results
from prune_ray.spec import spec_from_yaml
from prune_ray.train import evaluate
from prune_ray.trial import TrialContext, run_trial
from user_models import write_user_net

pytestmark = [pytest.mark.ray]

STRUCTURED = [name for name in list_methods() if get_method(name).granularity == "structured"]
SPEC = """
name: own
model: net.py:make
model_args: {{width: 8}}
dataset: imagefolder
data: {{root: images, image_size: 8, loader: {loader}, workers: 1}}
methods: [{methods}]
budgets: [0.6]
schedule: uniform
baseline: {{train: {{epochs: 2, batch_size: 8}}}}
finetune: {{epochs: 1, batch_size: 8}}
search: {{max_concurrent: 2}}
measure: {{latency_repeats: 2}}
artifacts: {{save: all}}
"""


def test_user_network_on_image_folder_every_structured_method_stream_equals_device(tmp_path, ray_env):
    write_user_net(tmp_path)
    write_image_folder(tmp_path / "images", splits=("train", "test"), per_class=12)
    (tmp_path / "stream.yaml").write_text(SPEC.format(loader="stream", methods=", ".join(STRUCTURED)))
    result = sweep(ray_env, tmp_path, "stream.yaml", "--storage", "results", "--name", "own")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    frame = read_results(str(tmp_path / "results"), "own").set_index("method").sort_index()
    assert sorted(frame.index) == sorted(STRUCTURED)
    assert (frame["status"] == "ok").all(), frame["error"].tolist()
    assert (frame["data_loader"] == "stream").all() and (frame["dataset"] == "imagefolder").all()
    assert (frame["model"] == f"{tmp_path / 'net.py'}:make").all()  # made absolute: Ray's workers run elsewhere
    assert (frame["macs_keep"] <= 0.6).all() and (frame["params"] < frame["baseline_params"]).all()

    # the device loader, Ray-free (the trial code Ray's workers run): the same rows
    text = SPEC.format(loader="device", methods=", ".join(STRUCTURED)).replace(
        "model: net.py:make", f"model: {tmp_path / 'net.py'}:make").replace("root: images", f"root: {tmp_path / 'images'}")
    device = spec_from_yaml(text + f"storage: {tmp_path / 'results-device'}\n", "device.yaml")
    for method, row in frame.iterrows():
        other = run_trial(TrialConfig(OperatingPoint(0.6, method, 0), Proposal({})), TrialContext(device, "own", {}, None), method)
        assert other["status"] == "ok" and other["data_loader"] == "device", other["error"]
        for column in ("baseline_top1", "top1_pruned", "top1", "test_top1", "macs"):
            assert row[column] == pytest.approx(other[column], abs=1e-9), (method, column)

    data = load_dataset("imagefolder", DataOptions(root=str(tmp_path / "images"), image_size=8))
    for method, row in frame.iterrows():
        model = load_pruned(row["model_uri"])
        assert evaluate(model, data.val_x, data.val_y)[0] == row["top1"], method
