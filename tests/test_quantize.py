"""The quantiser registry: every entry on a pruned model (pruned weights stay zero, codes decode to
exactly the frozen weights, fine-tuning trains what the entry says it trains), and each entry's
own arithmetic (int8 per channel, k-means with linear init, binary sign x scale)."""

import pytest
import torch
import torch.nn as nn

from prune_ray.models import create_model
from prune_ray.quantize import BitWidths, get_quantizer, list_quantizers
from prune_ray.quantize.quantizers import linear_kmeans
from prune_ray.quantize.tensor import quantized_layers

BITS = BitWidths(conv=6, fc=4)


def pruned_model(keep: float = 0.2, seed: int = 0) -> nn.Module:
    """digits_cnn with every conv/linear layer pruned to its `keep` largest weights."""
    torch.manual_seed(seed)
    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=8).eval()
    with torch.no_grad():
        for _, module in quantized_layers(model):
            weight = module.weight
            threshold = weight.abs().flatten().kthvalue(int((1 - keep) * weight.numel())).values
            weight[weight.abs() <= threshold] = 0
    return model


def test_registry_lists_the_four_quantizers():
    assert list_quantizers() == ["binary", "int8", "kmeans", "none"]
    assert get_quantizer("kmeans").widths(BITS) == BITS
    assert get_quantizer("int8").widths(BITS) == BitWidths(8, 8)
    assert get_quantizer("binary").widths(BITS) == BitWidths(1, 1)
    assert get_quantizer("none").widths(BITS) is None


@pytest.mark.parametrize("name", list_quantizers())
def test_codes_decode_to_the_frozen_weights_and_pruned_weights_stay_zero(name):
    model = pruned_model()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    quantization = get_quantizer(name).quantize(model, BITS)
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        quantized_out = model(x)
    codes = quantization.freeze()
    state = model.state_dict()
    assert set(state) == set(before)  # the parametrizations are gone
    with torch.no_grad():
        assert torch.allclose(model(x), quantized_out, atol=1e-5)  # frozen = what evaluation measured
    widths = get_quantizer(name).widths(BITS)
    assert (widths is None) == (not codes)
    for key, tensor in codes.items():
        assert torch.equal(state[key], tensor.dequantize())  # bit-exact
        assert torch.equal(tensor.codes == 0, state[key] == 0)
        was_zero = before[key] == 0
        assert (state[key][was_zero] == 0).all()  # pruned weights stay pruned
        assert tensor.bits == widths.of(model.get_submodule(key.removesuffix(".weight")))
        distinct = state[key][~was_zero].unique().numel()
        per_channel = tensor.format == "scaled"
        assert distinct <= (2 * tensor.levels * tensor.codes.shape[0] if per_channel else 2**tensor.bits)


@pytest.mark.parametrize("name", list_quantizers())
def test_fine_tuning_trains_what_the_entry_says(name):
    model = pruned_model()
    quantizer = get_quantizer(name)
    quantization = quantizer.quantize(model, BITS)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    weights_before = {n: m.weight.detach().clone() for n, m in quantized_layers(model)}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    codes = quantization.freeze()
    changed = any(not torch.equal(m.weight.detach(), weights_before[n]) for n, m in quantized_layers(model))
    if name == "none":
        assert changed and not codes  # plain float weights train as usual
    else:
        assert changed == quantizer.trains


def test_int8_is_symmetric_per_output_channel():
    weight = torch.tensor([[0.5, -1.0, 0.0, 0.25], [2.0, 0.0, -0.02, 1.0]])
    model = nn.Sequential(nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(weight)
    codes = get_quantizer("int8").quantize(model, BITS).freeze()["0.weight"]
    assert torch.allclose(codes.table, torch.tensor([1.0, 2.0]) / 127)
    assert codes.codes.tolist() == [[64, -127, 0, 32], [127, 0, -1, 64]]  # round(w / scale)
    error = (model[0].weight - weight).abs()
    assert (error <= codes.table[:, None] / 2 + 1e-7).all()  # within half a step of its channel


def test_kmeans_centroids_start_linear_and_converge():
    values = torch.cat([torch.full((50,), -1.0), torch.full((30,), 0.2), torch.full((20,), 3.0)])
    centroids, assigned = linear_kmeans(values, 3)
    assert torch.allclose(centroids, torch.tensor([-1.0, 0.2, 3.0]))
    assert assigned.tolist() == [0] * 50 + [1] * 30 + [2] * 20
    # linear initialisation over [min, max]: with one iteration's worth of data the centroids span it
    spread, _ = linear_kmeans(torch.linspace(-2, 2, 1000), 4)
    assert spread[0] < -1.2 and spread[-1] > 1.2 and (spread.diff() > 0).all()


def test_kmeans_centroid_gradient_is_the_sum_of_its_weights_gradients():
    model = nn.Sequential(nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 1.0, -2.0]]))
    quantization = get_quantizer("kmeans").quantize(model, BitWidths(conv=8, fc=1))
    centroids = model[0].parametrizations.weight[0].centroids
    x = torch.tensor([[1.0, 2.0, 3.0]])
    model(x).sum().backward()
    # weights 1, 1 share one centroid (grads 1 + 2), -2 the other (grad 3)
    assert sorted(centroids.grad.tolist()) == [3.0, 3.0]
    codes = quantization.freeze()["0.weight"]
    assert codes.codes[0, 0] == codes.codes[0, 1] != codes.codes[0, 2]


def test_binary_is_sign_times_the_channels_mean_magnitude():
    weight = torch.tensor([[0.5, -1.5, 0.0, 1.0], [-0.2, 0.0, 0.0, 0.4]])
    model = nn.Sequential(nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(weight)
    codes = get_quantizer("binary").quantize(model, BITS).freeze()["0.weight"]
    assert codes.codes.tolist() == [[1, -1, 0, 1], [-1, 0, 0, 1]]
    assert torch.allclose(codes.table, torch.tensor([1.0, 0.3]))
    assert torch.allclose(model[0].weight, torch.tensor([[1.0, -1.0, 0.0, 1.0], [-0.3, 0.0, 0.0, 0.3]]))
