"""cluster.yaml is checked offline against Ray's own autoscaler schema.

`prepare_config` merges the provider's defaults (ray/autoscaler/aws/defaults.yaml: a shallow,
top-level merge), folds `setup_commands` into head/worker setup commands and fills per-type
min/max workers; `validate_config` runs the jsonschema (ray/autoscaler/ray-schema.json) plus Ray's
extra checks. Neither imports boto3 nor talks to AWS (that happens in `ray up`'s bootstrap step).
"""

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

import ray
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"


@pytest.fixture(scope="module")
def raw():
    with open(CLUSTER_YAML) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def prepared(raw):
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def _gpu_worker_types(config):
    head = config["head_node_type"]
    return {
        name: t
        for name, t in config["available_node_types"].items()
        if name != head and t.get("resources", {}).get("GPU", 0) > 0
    }


def test_validates_with_ray_schema(prepared):
    assert prepared["cluster_name"] == "prune-ray"
    assert prepared["provider"]["type"] == "aws"
    assert prepared["provider"]["region"] == "us-west-2"
    assert prepared["provider"]["cache_stopped_nodes"] is True
    assert prepared["auth"]["ssh_user"] == "ubuntu"
    assert prepared["idle_timeout_minutes"] > 0


def test_head_has_no_gpu_and_gpu_workers_autoscale_from_zero(prepared):
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert head["max_workers"] == 0

    gpu_types = _gpu_worker_types(prepared)
    assert gpu_types, "no worker node type advertises a GPU"
    for name, t in gpu_types.items():
        assert t["min_workers"] == 0, name
        assert 0 < t["max_workers"] <= prepared["max_workers"], name
        instance = t["node_config"]["InstanceType"]
        assert re.match(r"(g4dn|g5|g6|g6e|p3|p4d|p5)\.", instance), instance


def test_every_node_type_sets_the_same_ami(raw):
    # Ray's built-in default AMI (Ubuntu 18.04 DLAMI) is too old; and all nodes must share one
    # Python/Ray, so head and workers use the same image.
    amis = {t["node_config"].get("ImageId") for t in raw["available_node_types"].values()}
    assert len(amis) == 1 and None not in amis and "" not in amis, amis


def test_project_is_shipped_and_local_state_is_not(prepared):
    assert prepared["file_mounts"] == {"~/prune-ray": "."}
    excluded = " ".join(prepared["rsync_exclude"])
    for name in (".venv", "results", ".git"):
        assert name in excluded, name


def test_setup_installs_the_project_with_pinned_constraints(raw, prepared):
    install = [c for c in raw["setup_commands"] if "pip install -e ." in c]
    assert install, raw["setup_commands"]
    assert all("-c constraints.txt" in c and "cd ~/prune-ray" in c for c in install)
    # prepare_config prepends the common setup commands to both node kinds.
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert any(c in prepared[key] for c in install), key
    # The autoscaler on the head needs boto3 to launch workers.
    assert any("boto3" in c for c in prepared["head_setup_commands"])
    # The cluster runs the same Ray as this checkout's pins (and this venv).
    pins = (ROOT / "constraints.txt").read_text()
    assert f"ray=={ray.__version__}" in pins


def test_start_commands_and_dashboard_on_loopback(prepared):
    head = " ; ".join(prepared["head_start_ray_commands"])
    assert "ray start --head --port=6379" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "--dashboard-host=127.0.0.1" in head
    worker = " ; ".join(prepared["worker_start_ray_commands"])
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker
    text = CLUSTER_YAML.read_text()
    assert "0.0.0.0" not in text


SECRET_PATTERNS = [
    r"aws_access_key_id",
    r"aws_secret_access_key",
    r"aws_session_token",
    r"\bAKIA[0-9A-Z]{16}\b",  # access key id
    r"\bASIA[0-9A-Z]{16}\b",  # temporary access key id
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    r"arn:aws:[a-z0-9-]*:[a-z0-9-]*:\d{12}:",  # account id inside an ARN
    r"(?<![\w-])\d{12}(?![\w-])",  # a bare 12-digit account id
    r"(?i)(password|passwd|secret|token)\s*[:=]\s*\S",
]


def test_no_secrets_in_file():
    for lineno, line in enumerate(CLUSTER_YAML.read_text().splitlines(), 1):
        for pattern in SECRET_PATTERNS:
            assert not re.search(pattern, line), f"cluster.yaml:{lineno} looks like a secret: {line!r}"


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda c: c.update(max_wokers=8), id="unknown-top-level-key"),
        pytest.param(lambda c: c.update(max_workers="eight"), id="wrong-type"),
        pytest.param(
            lambda c: c["available_node_types"]["ray.worker.gpu"].pop("resources"),
            id="node-type-missing-resources",
        ),
        # Node resources are integers in the schema: fractions belong to trials, not nodes.
        pytest.param(
            lambda c: c["available_node_types"]["ray.worker.gpu"]["resources"].update(GPU=0.5),
            id="fractional-node-gpu",
        ),
    ],
)
def test_validator_rejects_broken_copies(raw, breakage):
    broken = copy.deepcopy(raw)
    breakage(broken)
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_on_premises_variant_validates(raw):
    # README: the same file with Ray's `local` provider (fixed machines, no autoscaling of VMs).
    local = copy.deepcopy(raw)
    for key in ("available_node_types", "head_node_type", "max_workers"):
        local.pop(key)
    local["provider"] = {"type": "local", "head_ip": "10.0.0.10", "worker_ips": ["10.0.0.11", "10.0.0.12"]}
    local["auth"] = {"ssh_user": "ubuntu", "ssh_private_key": "~/.ssh/id_ed25519"}
    config = prepare_config(local)
    validate_config(config)
    (node_type,) = config["available_node_types"].values()
    assert node_type["min_workers"] == node_type["max_workers"] == 2
