"""Every registered pruning method on every registered model (both registries parametrise it),
and on models from outside the zoo (timm, torchvision, a user's file).

Inputs are 3x8x8 (every model runs at that size) so the whole matrix stays cheap on a CPU; the
invariants do not depend on the image size.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from prune_ray.measure import TimingOptions, measure
from prune_ray.models import create_model, list_models
from prune_ray.prune import UnsupportedModelError, apply_pruning, check_prunable, get_method, list_methods
from prune_ray.prune.unstructured import make_masks_permanent
from user_models import write_user_net

# the fast tier's cut, one model per kind of coupling: a plain conv-BN chain, no BatchNorm, residual adds,
# depthwise and inverted residuals, concatenation (vgg11_bn, a longer plain chain, is in the full suite)
FAST_MODELS = ("digits_cnn", "lenet5", "resnet20", "mobilenetv2", "densenet")
RATIO = 0.3
pytestmark = pytest.mark.usefixtures("few_lowrank_sweeps")  # conftest: the matrix needs working factors, not close fits
LOWRANK_RATIO = 0.9  # small ranks: CP-ALS on every layer of ResNet-34 stays a few seconds
CHANNELS, SIZE, CLASSES = 3, 8, 10


def unsupported_reason(method: str, model: torch.nn.Module) -> str | None:
    """The one combination the library refuses, and the words its error must use."""
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if method == "slimming" and not has_bn:
        return "has no BatchNorm layer"
    if get_method(method).granularity == "lowrank" and not any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        return "factorise convs with a spatial kernel, and Sequential has none"
    return None


# model string -> (model_args, {method: words of its one-line error} for the methods that cannot prune it)
FAST_EXTERNAL_METHODS = ("magnitude", "l1_filter")
STRUCTURED = [name for name in list_methods() if get_method(name).granularity == "structured"]
EXTERNAL_MODELS = {
    "timm:test_resnet": ({}, {}),
    "torchvision:mobilenet_v3_small": ({"width_mult": 0.25}, {}),
    # torch-pruning removes single qkv outputs, and the attention's reshape into heads breaks
    "timm:test_vit": ({"img_size": SIZE, "patch_size": 4},
                      {m: "cannot prune layer 'blocks.0.attn.qkv' of VisionTransformer" for m in STRUCTURED if m != "slimming"}
                      | {"slimming": "has no BatchNorm layer"}),
    "user": ({"width": 8}, {}),
}


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(16, CHANNELS, SIZE, SIZE, generator=generator), torch.randint(0, CLASSES, (16,), generator=generator)


FAMILY_METHODS = ("magnitude", "l1_filter", "tucker")  # one method per granularity


def _zoo_cases():
    """(method, model) pairs of the matrix. Models built from the same module types (the VGGs of
    one kind, the CIFAR ResNets) differ only in depth and width, which every method handles by the
    same code: the smallest of such a family meets every method, its larger members one method per
    granularity. A model of a new kind meets every method just by being registered."""
    with torch.device("meta"):  # shapes only: no weights are initialised
        zoo = {name: create_model(name, num_classes=CLASSES, in_channels=CHANNELS, image_size=SIZE) for name in list_models()}
    kinds = {name: frozenset(type(m).__name__ for m in model.modules() if m is not model) for name, model in zoo.items()}
    size = {name: sum(p.numel() for p in model.parameters()) for name, model in zoo.items()}
    smallest = {kind: min((n for n in zoo if kinds[n] == kind), key=size.__getitem__) for kind in kinds.values()}
    for method in list_methods():
        for name in zoo:
            if smallest[kinds[name]] == name or method in FAMILY_METHODS:
                yield pytest.param(method, name, marks=() if name in FAST_MODELS else pytest.mark.slow, id=f"{method}-{name}")


@pytest.mark.parametrize("method_name, model_name", list(_zoo_cases()))
def test_method_invariants_on_model(method_name, model_name, batch):
    x, y = batch
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=CLASSES, in_channels=CHANNELS, image_size=SIZE).eval()
    reason = unsupported_reason(method_name, model)
    if reason:
        with pytest.raises(UnsupportedModelError, match=reason):
            apply_pruning(copy.deepcopy(model), method_name, RATIO, x, y)
        return
    check_invariants(model, method_name, x, y)


def _external_params():
    for model, (_, unsupported) in EXTERNAL_MODELS.items():
        for method in list_methods():
            # the fast tier: the user's small net, the refusals, and one method of each granularity per hub
            # model (CP-ALS on every conv of a hub model takes tens of seconds)
            fast = model == "user" or method in unsupported or method in FAST_EXTERNAL_METHODS
            marks = [] if fast else [pytest.mark.slow]
            yield pytest.param(model, method, unsupported.get(method), marks=marks, id=f"{model}-{method}")


@pytest.mark.parametrize("model_name, method_name, refusal", list(_external_params()))
def test_method_invariants_on_external_model(model_name, method_name, refusal, batch, tmp_path):
    """The same invariants on timm/torchvision models and a user's file; a method that cannot prune
    one fails the spec check's probe (check_prunable) with its one-line error."""
    if model_name.startswith("timm:"):
        pytest.importorskip("timm")
    x, y = batch
    torch.manual_seed(0)
    name = f"{write_user_net(tmp_path)}:make" if model_name == "user" else model_name
    model_args = EXTERNAL_MODELS[model_name][0]
    model = create_model(name, num_classes=CLASSES, in_channels=CHANNELS, image_size=SIZE, model_args=model_args).eval()
    method = get_method(method_name)
    if refusal:
        with pytest.raises(UnsupportedModelError) as raised:
            check_prunable(method, model, method.layers(model, x[:1]), x[:1])
        assert refusal in str(raised.value) and "\n" not in str(raised.value)
        return
    check_prunable(method, model, method.layers(model, x[:1]), x[:1])
    check_invariants(model, method_name, x, y)


def check_invariants(model: torch.nn.Module, method_name: str, x: torch.Tensor, y: torch.Tensor) -> None:
    method = get_method(method_name)

    with torch.no_grad():
        reference = model(x)
    untouched = apply_pruning(copy.deepcopy(model), method_name, 0.0, x, y).eval()
    with torch.no_grad():
        assert torch.allclose(untouched(x), reference, atol=1e-5), "ratio 0 changed the outputs"

    ratio = LOWRANK_RATIO if method.granularity == "lowrank" else RATIO
    base = measure(model, x[:1], latency=False)
    pruned = make_masks_permanent(apply_pruning(copy.deepcopy(model), method_name, ratio, x, y))
    after = measure(pruned, x[:4], timing=TimingOptions(min_passes=2, min_time_ms=0))
    assert after.latency_ms is not None and after.latency_ms > 0
    if method.granularity == "unstructured":
        removed = 1 - after.params_nonzero / base.params_nonzero
        # weights of conv/linear layers are ~all parameters; BN and biases are not pruned
        assert ratio * 0.85 <= removed <= ratio + 1e-9, removed
        assert after.macs == base.macs
    else:
        assert after.params < base.params and after.macs < base.macs

    # the pruned model still trains a step and evaluates
    pruned.train()
    optimizer = torch.optim.SGD(pruned.parameters(), lr=0.01)
    loss = F.cross_entropy(pruned(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    pruned.eval()
    with torch.no_grad():
        assert pruned(x).shape == (len(x), CLASSES)
