"""Every registered pruning method on every registered model (both registries parametrise it).

Inputs are 3x8x8 (every model runs at that size) so the whole matrix stays cheap on a CPU; the
invariants do not depend on the image size.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from prune_ray.measure import TimingOptions, measure
from prune_ray.models import create_model, list_models
from prune_ray.prune import UnsupportedModelError, apply_pruning, get_method, list_methods
from prune_ray.prune.unstructured import make_masks_permanent

FAST_MODELS = ("digits_cnn", "lenet5", "resnet20", "vgg11_bn", "mobilenetv2", "densenet")  # the fast tier's cut
RATIO = 0.3
LOWRANK_RATIO = 0.9  # small ranks: CP-ALS on every layer of ResNet-34 stays a few seconds
CHANNELS, SIZE, CLASSES = 3, 8, 10


def unsupported_reason(method: str, model: torch.nn.Module) -> str | None:
    """The one combination the library refuses, and the words its error must use."""
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if method == "slimming" and not has_bn:
        return "has no BatchNorm layer"
    return None


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(16, CHANNELS, SIZE, SIZE, generator=generator), torch.randint(0, CLASSES, (16,), generator=generator)


@pytest.mark.parametrize(
    "model_name", [name if name in FAST_MODELS else pytest.param(name, marks=pytest.mark.slow) for name in list_models()]
)
@pytest.mark.parametrize("method_name", list_methods())
def test_method_invariants_on_model(method_name, model_name, batch):
    x, y = batch
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=CLASSES, in_channels=CHANNELS, image_size=SIZE).eval()
    method = get_method(method_name)
    reason = unsupported_reason(method_name, model)
    if reason:
        with pytest.raises(UnsupportedModelError, match=reason):
            apply_pruning(copy.deepcopy(model), method_name, RATIO, x, y)
        return

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
