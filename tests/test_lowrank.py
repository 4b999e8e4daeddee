import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from prune_ray.prune.lowrank import (
    conv_params,
    cp_conv,
    cp_decompose,
    cp_max_rank,
    cp_max_ratio,
    cp_params,
    cp_rank_for_ratio,
    tucker2_conv,
    tucker2_decompose,
    tucker2_max_ranks,
    tucker2_max_ratio,
    tucker2_params,
    tucker2_rank_pairs,
    tucker2_ranks_for_ratio,
)

# (in, out, kernel, stride, padding, dilation, bias): square and non-square kernels, strides and
# paddings, so a swapped height/width axis in the CP split shows up as a wrong shape or output.
CONFIGS = [
    (8, 12, 3, 1, 1, 1, True),
    (12, 8, 5, 2, 2, 1, False),
    (6, 10, 3, 2, 0, 1, True),
    (8, 8, 3, 1, "same", 1, True),
    (5, 7, (3, 5), (2, 1), (1, 2), (1, 2), True),
]


def _conv(config, seed: int = 0) -> nn.Conv2d:
    c_in, c_out, kernel, stride, padding, dilation, bias = config
    torch.manual_seed(seed)
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, bias=bias)


def _inputs(conv: nn.Conv2d) -> torch.Tensor:
    return torch.randn(2, conv.in_channels, 13, 11, generator=torch.Generator().manual_seed(1))


def _relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approx - exact).norm() / exact.norm())


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _macs(module: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2


def _cp_kernel(rank: int, shape: tuple[int, int, int, int], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    factors = [torch.randn(size, rank, generator=generator) for size in shape]
    return torch.einsum("or,ir,hr,wr->oihw", *factors)


@pytest.mark.parametrize("config", CONFIGS)
@torch.no_grad()
def test_decomposed_layers_keep_the_output_shape(config):
    conv = _conv(config)
    x = _inputs(conv)
    expected = conv(x).shape
    assert tucker2_conv(conv, 2, 3, init="random")(x).shape == expected
    assert cp_conv(conv, 4, init="random")(x).shape == expected


@pytest.mark.parametrize("config", CONFIGS)
@torch.no_grad()
def test_full_rank_tucker2_reproduces_the_conv(config):
    conv = _conv(config)
    x = _inputs(conv)
    layers = tucker2_conv(conv, conv.in_channels, conv.out_channels)
    torch.testing.assert_close(layers(x), conv(x), rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_hooi_fits_at_least_as_well_as_hosvd():
    conv = _conv((16, 16, 3, 1, 1, 1, False))

    def error(n_iter: int) -> float:
        core, u_out, u_in = tucker2_decompose(conv.weight, 6, 6, n_iter=n_iter)
        return _relative_error(torch.einsum("rshw,or,is->oihw", core, u_out, u_in), conv.weight)

    assert error(5) <= error(0) + 1e-6 < 1.0


@pytest.mark.parametrize("config", CONFIGS)
@torch.no_grad()
def test_cp_layers_reproduce_a_kernel_that_is_rank_r(config):
    # Exercises the whole layer wiring (stride, padding and dilation split over kx1 and 1xk).
    conv = _conv(config)
    conv.weight.copy_(_cp_kernel(5, tuple(conv.weight.shape), seed=0))
    x = _inputs(conv)
    layers = cp_conv(conv, 5, n_iter=300)
    assert _relative_error(layers(x), conv(x)) < 1e-3


@torch.no_grad()
def test_cp_recovers_a_rank_r_kernel():
    kernel = _cp_kernel(6, (10, 12, 3, 3), seed=0)
    weights, factors = cp_decompose(kernel, 6, n_iter=300)
    approx = torch.einsum("r,or,ir,hr,wr->oihw", weights, *factors)
    assert _relative_error(approx, kernel) < 1e-3


@torch.no_grad()
def test_cp_error_falls_as_the_rank_grows():
    kernel = torch.randn(8, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    errors = []
    for rank in (2, 8, 24):
        weights, factors = cp_decompose(kernel, rank, n_iter=50)
        errors.append(_relative_error(torch.einsum("r,or,ir,hr,wr->oihw", weights, *factors), kernel))
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[1], (32, 64, 3, 1, 1, 1, True), (64, 16, 1, 1, 0, 1, False)])
@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.75])
def test_ranks_for_ratio_are_the_largest_within_budget(config, ratio):
    conv = _conv(config)
    budget = (1 - ratio) * conv_params(conv)

    rank = cp_rank_for_ratio(conv, ratio)
    assert cp_params(conv, rank) <= budget < cp_params(conv, rank + 1)
    assert _params(cp_conv(conv, rank, init="random")) == cp_params(conv, rank)

    pairs = tucker2_rank_pairs(conv)
    ranks = tucker2_ranks_for_ratio(conv, ratio)
    assert tucker2_params(conv, *ranks) <= budget
    following = pairs[pairs.index(ranks) + 1 :]
    assert not following or tucker2_params(conv, *following[0]) > budget
    assert _params(tucker2_conv(conv, *ranks, init="random")) == tucker2_params(conv, *ranks)
    # Ranks follow the channel counts: rank_out / rank_in ~ C_out / C_in.
    rank_in, rank_out = ranks
    assert abs(rank_out * conv.in_channels - rank_in * conv.out_channels) <= max(conv.in_channels, conv.out_channels)


def test_max_ranks_are_where_the_saving_ends():
    conv = _conv((32, 64, 3, 1, 1, 1, True))
    original = conv_params(conv)
    rank = cp_max_rank(conv)
    assert cp_params(conv, rank) <= original < cp_params(conv, rank + 1)
    ranks = tucker2_max_ranks(conv)
    pairs = tucker2_rank_pairs(conv)
    assert tucker2_params(conv, *ranks) <= original < tucker2_params(conv, *pairs[pairs.index(ranks) + 1])


def test_unreachable_and_invalid_ratios_raise():
    conv = _conv((1, 8, 3, 1, 1, 1, True))  # a first layer: rank 1 already costs a lot
    assert 0 < cp_max_ratio(conv) < 0.9
    with pytest.raises(ValueError, match="out of reach for CP"):
        cp_rank_for_ratio(conv, 0.9)
    with pytest.raises(ValueError, match="out of reach for Tucker-2"):
        tucker2_ranks_for_ratio(conv, max(tucker2_max_ratio(conv), 0) + 0.05)
    with pytest.raises(ValueError, match=r"outside \[0, 1\)"):
        cp_rank_for_ratio(conv, 1.0)


@torch.no_grad()
def test_half_ratio_layers_have_fewer_params_and_macs():
    conv = _conv((32, 32, 3, 1, 1, 1, True))
    x = torch.randn(1, 32, 16, 16)
    tucker = tucker2_conv(conv, *tucker2_ranks_for_ratio(conv, 0.5), init="random")
    cp = cp_conv(conv, cp_rank_for_ratio(conv, 0.5), init="random")
    for layers in (tucker, cp):
        assert _params(layers) <= 0.5 * _params(conv)
        assert _macs(layers, x) < _macs(conv, x)


def test_random_init_builds_the_structure_without_decomposing():
    conv = _conv(CONFIGS[0])
    layers = cp_conv(conv, 4, init="random")
    assert [tuple(layer.weight.shape) for layer in layers] == [(4, 8, 1, 1), (4, 1, 3, 1), (4, 1, 1, 3), (12, 4, 1, 1)]
    assert torch.equal(layers[-1].bias, conv.bias)
    with pytest.raises(ValueError, match="init 'svd'; allowed: decompose, random"):
        tucker2_conv(conv, 2, 2, init="svd")


@pytest.mark.parametrize("groups", [2, 8])
def test_grouped_convs_are_rejected(groups):
    conv = nn.Conv2d(8, 8, 3, groups=groups)
    kind = "depthwise" if groups == 8 else "grouped"
    with pytest.raises(ValueError, match=f"Tucker-2 needs an ordinary Conv2d .*{kind} Conv2d with groups={groups}"):
        tucker2_conv(conv, 2, 2)
    with pytest.raises(ValueError, match=f"CP needs an ordinary Conv2d .*{kind}"):
        cp_conv(conv, 2)
    with pytest.raises(ValueError, match="groups=1"):
        cp_rank_for_ratio(conv, 0.5)


@pytest.mark.parametrize("padding_mode", ["reflect", "circular"])
@torch.no_grad()
def test_padding_modes_carry_over(padding_mode):
    # Padding commutes with the 1x1 convs and each axis is padded by its own spatial conv.
    conv = nn.Conv2d(6, 7, (3, 5), stride=(2, 1), padding=(1, 2), padding_mode=padding_mode)
    conv.weight.copy_(_cp_kernel(4, (7, 6, 3, 5), seed=0))
    x = _inputs(conv)
    torch.testing.assert_close(tucker2_conv(conv, 6, 7)(x), conv(x), rtol=1e-4, atol=1e-4)
    assert _relative_error(cp_conv(conv, 4, n_iter=300)(x), conv(x)) < 1e-3
