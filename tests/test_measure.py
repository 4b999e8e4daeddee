import torch
import torch.nn as nn

from prune_ray.measure import SPARSE_INDEX_BYTES, count_macs, count_params, measure


def tiny_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, bias=False),  # 2 filters x (1 x 3 x 3) weights, 4x4 output
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * 4 * 4, 3),  # 32 inputs x 3 outputs, plus 3 biases
    )


def test_macs_match_a_count_by_hand():
    # conv: 2 output channels * 16 positions * (1 input channel * 3 * 3) = 288
    # linear: 32 inputs * 3 outputs = 96; BN, ReLU and biases are not MACs (README convention)
    assert count_macs(tiny_model(), torch.randn(5, 1, 4, 4)) == 288 + 96


def test_macs_are_per_example_whatever_the_batch():
    model = tiny_model()
    assert count_macs(model, torch.randn(1, 1, 4, 4)) == count_macs(model, torch.randn(64, 1, 4, 4))


def test_params_nonzeros_and_bytes():
    model = tiny_model()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, 0, 0, 0] = 1.0  # one nonzero conv weight
    result = measure(model, torch.randn(4, 1, 4, 4), latency_repeats=3)
    conv, bn, linear = 18, 4, 99
    assert result.params == conv + bn + linear
    assert result.params_nonzero == 1 + 2 + int(torch.count_nonzero(model[4].weight)) + int(
        torch.count_nonzero(model[4].bias)
    )  # BN weight=1, bias=0 at init
    assert result.bytes_dense == 4 * result.params
    # each tensor is stored the cheaper way: the conv weight (1 nonzero) sparse, 1 * (4 value +
    # 4 index) bytes instead of 72; the BN weight (2 ones) dense, 8 bytes; the all-zero BN bias
    # sparse, 0 bytes; the linear layer dense, 4 * 99 bytes
    assert result.bytes_sparse == 1 * (4 + SPARSE_INDEX_BYTES) + 4 * 2 + 0 + 4 * linear
    assert result.latency_ms > 0


def test_masked_weights_count_as_zeros():
    import torch.nn.utils.prune as torch_prune

    model = tiny_model()
    torch_prune.l1_unstructured(model[4], "weight", amount=40)
    params, nonzero = count_params(model)
    assert params == 18 + 4 + 99  # weight_orig is not counted twice
    assert nonzero == params - 40 - 2  # 40 masked weights, 2 BN biases at zero
