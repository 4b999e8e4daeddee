"""Low-rank decomposition of Conv2d layers: Tucker-2 and CP, each replacing one conv by a sequence.

Tucker-2 (Kim et al. 2016, Compression of Deep Convolutional Neural Networks for Fast and Low Power
Mobile Applications) factors the kernel over its output and input channels:
    1x1 (C_in -> rank_in)  ->  kxk (rank_in -> rank_out)  ->  1x1 (rank_out -> C_out, with the bias)
CP (Lebedev et al. 2015, Speeding-up Convolutional Neural Networks Using Fine-tuned
CP-Decomposition) factors it into rank-one terms over all four modes:
    1x1 (C_in -> R)  ->  depthwise kx1  ->  depthwise 1xk  ->  1x1 (R -> C_out, with the bias)

The decompositions are plain torch (HOOI through eigh of Gram matrices; CP by alternating least
squares), on the weight's own device, so no tensor library joins the dependencies.

`ratio` is the fraction of a layer's parameters removed, in [0, 1). Ratio 0 means "do not
decompose": the caller keeps the original conv, since even the largest decomposition that adds no
parameters only approximates it (`*_ranks_for_ratio(conv, 0.0)` gives those largest ranks).
`init="random"` builds the same structure with PyTorch's default initialisation and skips the
decomposition, for counting parameters and MACs while searching ranks.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

INITS = ("decompose", "random")


# ---------------------------------------------------------------- parameter counts and ranks


def _check_conv(conv: nn.Module, kind: str) -> None:
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"{kind} decomposes nn.Conv2d layers, not {type(conv).__name__}")
    if conv.groups != 1:
        layer = "depthwise" if conv.groups == conv.in_channels else "grouped"
        raise ValueError(
            f"{kind} needs an ordinary Conv2d (groups=1); got a {layer} Conv2d with groups={conv.groups}"
        )


def _bias(conv: nn.Conv2d) -> int:
    return conv.out_channels if conv.bias is not None else 0


def conv_params(conv: nn.Conv2d) -> int:
    return conv.weight.numel() + _bias(conv)


def tucker2_params(conv: nn.Conv2d, rank_in: int, rank_out: int) -> int:
    kh, kw = conv.kernel_size
    return conv.in_channels * rank_in + rank_out * rank_in * kh * kw + rank_out * conv.out_channels + _bias(conv)


def cp_params(conv: nn.Conv2d, rank: int) -> int:
    kh, kw = conv.kernel_size
    return rank * (conv.in_channels + kh + kw + conv.out_channels) + _bias(conv)


def _allowed_params(conv: nn.Conv2d, ratio: float) -> int:
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio {ratio} is outside [0, 1)")
    # The tolerance keeps e.g. (1 - 0.7) * 100 = 29.999... from losing a whole parameter.
    return math.floor((1.0 - ratio) * conv_params(conv) + 1e-9)


def tucker2_rank_pairs(conv: nn.Conv2d) -> list[tuple[int, int]]:
    """Candidate (rank_in, rank_out) in growing size, proportional to (C_in, C_out).

    The larger channel count steps by one, so the ratio is met as finely as the shape allows.
    """
    c_in, c_out = conv.in_channels, conv.out_channels
    big = max(c_in, c_out)
    pairs = []
    for step in range(1, big + 1):
        rank_in = max(1, round(step * c_in / big))
        rank_out = max(1, round(step * c_out / big))
        pairs.append((rank_in, rank_out))
    return pairs


def tucker2_ranks_for_ratio(conv: nn.Conv2d, ratio: float) -> tuple[int, int]:
    """Largest proportional (rank_in, rank_out) whose Tucker-2 layers keep <= (1 - ratio) of the params."""
    _check_conv(conv, "Tucker-2")
    allowed = _allowed_params(conv, ratio)
    fitting = [pair for pair in tucker2_rank_pairs(conv) if tucker2_params(conv, *pair) <= allowed]
    if not fitting:
        raise ValueError(
            f"ratio {ratio} is out of reach for Tucker-2 of this conv; at most {tucker2_max_ratio(conv):.4f}"
        )
    return fitting[-1]  # params grow along the pairs, so the last one that fits is the largest


def cp_rank_for_ratio(conv: nn.Conv2d, ratio: float) -> int:
    """Largest CP rank whose layers keep <= (1 - ratio) of the conv's parameters."""
    _check_conv(conv, "CP")
    kh, kw = conv.kernel_size
    rank = (_allowed_params(conv, ratio) - _bias(conv)) // (conv.in_channels + kh + kw + conv.out_channels)
    if rank < 1:
        raise ValueError(f"ratio {ratio} is out of reach for CP of this conv; at most {cp_max_ratio(conv):.4f}")
    return rank


def tucker2_max_ranks(conv: nn.Conv2d) -> tuple[int, int]:
    """Largest proportional ranks that add no parameters; beyond them Tucker-2 saves nothing."""
    return tucker2_ranks_for_ratio(conv, 0.0)


def cp_max_rank(conv: nn.Conv2d) -> int:
    """Largest CP rank that adds no parameters; beyond it CP saves nothing."""
    return cp_rank_for_ratio(conv, 0.0)


def tucker2_max_ratio(conv: nn.Conv2d) -> float:
    """Largest reachable ratio: the one of ranks (1, 1). Negative when no decomposition saves params."""
    return 1.0 - tucker2_params(conv, 1, 1) / conv_params(conv)


def cp_max_ratio(conv: nn.Conv2d) -> float:
    """Largest reachable ratio: the one of rank 1. Negative when no decomposition saves params."""
    return 1.0 - cp_params(conv, 1) / conv_params(conv)


# ---------------------------------------------------------------- decompositions


def _leading_vectors(matrix: torch.Tensor, count: int) -> torch.Tensor:
    """The `count` leading left singular vectors of `matrix`.

    eigh of the (rows x rows) Gram matrix in float64: kernels are wide (C x C*k*k), where it is
    several times faster than an SVD, and float64 makes up for squaring the condition number.
    """
    gram = matrix.double() @ matrix.double().T
    _, vectors = torch.linalg.eigh(gram)  # ascending eigenvalues
    return vectors[:, -count:].flip(1).to(matrix.dtype)


def _work_copy(weight: torch.Tensor) -> torch.Tensor:
    # float32 at least: half-precision ALS/eigh would lose the small singular directions.
    dtype = weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32
    return weight.detach().to(dtype)


def tucker2_decompose(
    weight: torch.Tensor, rank_in: int, rank_out: int, n_iter: int = 5, tol: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(core, u_out, u_in) with weight[o,i,h,w] ~= sum core[r,s,h,w] u_out[o,r] u_in[i,s].

    HOSVD start, then HOOI sweeps until the core's norm (the captured energy) stops growing.
    At full ranks the factors are square orthogonal matrices and the decomposition is exact.
    """
    x = _work_copy(weight)
    c_out, c_in = x.shape[:2]
    u_out = _leading_vectors(x.reshape(c_out, -1), rank_out)
    u_in = _leading_vectors(x.transpose(0, 1).reshape(c_in, -1), rank_in)
    captured, scale = 0.0, float(x.norm())
    for _ in range(n_iter):
        u_out = _leading_vectors(torch.einsum("oihw,is->oshw", x, u_in).reshape(c_out, -1), rank_out)
        projected = torch.einsum("oihw,or->irhw", x, u_out)
        u_in = _leading_vectors(projected.reshape(c_in, -1), rank_in)
        core = torch.einsum("irhw,is->rshw", projected, u_in)
        previous, captured = captured, float(core.norm())
        if captured - previous <= tol * scale:
            break
    core = torch.einsum("oihw,or,is->rshw", x, u_out, u_in)
    return core, u_out, u_in


def _init_factor(unfolded: torch.Tensor, rank: int, generator: torch.Generator) -> torch.Tensor:
    # Leading singular vectors where the mode is large enough, random unit columns past its size.
    rows = unfolded.shape[0]
    leading = _leading_vectors(unfolded, min(rank, rows))
    if rank <= rows:
        return leading
    extra = torch.randn(rows, rank - rows, generator=generator, dtype=unfolded.dtype).to(unfolded.device)
    return torch.cat([leading, extra / extra.norm(dim=0)], dim=1)


def _solve_factor(mttkrp: torch.Tensor, grams: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares factor M @ inv(hadamard of the other modes' Grams), with a tiny ridge.

    The ridge keeps the solve defined when the rank exceeds what the other modes can span
    (e.g. a conv with one input channel), where the normal equations are singular.
    """
    gram = torch.ones_like(grams[0], dtype=torch.float64)
    for other in grams:
        gram = gram * other.double()
    ridge = 1e-9 * gram.diagonal().mean().clamp_min(1e-30)
    gram = gram + ridge * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram, mttkrp.double().T).T.to(mttkrp.dtype)


def _normalized(factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    norms = factor.norm(dim=0).clamp_min(torch.finfo(factor.dtype).tiny)
    return factor / norms, norms


def cp_decompose(
    weight: torch.Tensor, rank: int, n_iter: int = 100, tol: float = 1e-6, seed: int = 0
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Rank-`rank` CP of a 4-D kernel by ALS: (weights, [A, B, C, D]) with
    weight[o,i,h,w] ~= sum_r weights[r] A[o,r] B[i,r] C[h,r] D[w,r], factor columns of unit norm.

    Each sweep costs three GEMMs of the kernel's size times the rank (two updates, one error):
    the other contractions reuse T = x contracted with A over the output mode (a dimension tree)
    instead of forming the Khatri-Rao product of the large modes. Stops when a sweep improves the
    relative error by less than `tol` of itself (scale-free: an exactly low-rank kernel keeps
    converging towards 0).
    ALS can stall in "swamps" on hard kernels; more `n_iter` or another `seed` gets it out.
    """
    x = _work_copy(weight)
    c_out, c_in, kh, kw = x.shape
    generator = torch.Generator().manual_seed(seed)
    unfoldings = [x.movedim(mode, 0).reshape(x.shape[mode], -1) for mode in range(4)]
    a, b, c, d = (_init_factor(unfolded, rank, generator) for unfolded in unfoldings)
    x_out = unfoldings[0]  # (C_out, C_in*kh*kw)
    scale = max(float(x_out.norm()), torch.finfo(x.dtype).tiny)
    weights = torch.ones(rank, dtype=x.dtype, device=x.device)
    previous = math.inf
    for sweep in range(n_iter):
        khatri_rao = torch.einsum("ir,hr,wr->ihwr", b, c, d).reshape(-1, rank)
        if sweep > 0:
            # The last sweep's error, measured directly: the usual shortcut through Gram matrices
            # (|x|^2 - 2<x, x_hat> + |x_hat|^2) cancels to float32 noise near 3e-4, right where
            # a close fit needs telling apart from a converged one.
            error = float((x_out - (a * weights) @ khatri_rao.T).norm()) / scale
            if previous - error <= tol * error:
                break
            previous = error
        gram_b, gram_c, gram_d = b.T @ b, c.T @ c, d.T @ d
        a, _ = _normalized(_solve_factor(x_out @ khatri_rao, [gram_b, gram_c, gram_d]))
        gram_a = a.T @ a
        t = (x_out.T @ a).reshape(c_in, kh * kw, rank)  # x contracted with A over C_out
        spatial = torch.einsum("hr,wr->hwr", c, d).reshape(kh * kw, rank)
        b, _ = _normalized(_solve_factor((t * spatial).sum(1), [gram_a, gram_c, gram_d]))
        gram_b = b.T @ b
        z = torch.einsum("ikr,ir->kr", t, b).reshape(kh, kw, rank)  # x contracted with A and B
        c, _ = _normalized(_solve_factor(torch.einsum("hwr,wr->hr", z, d), [gram_a, gram_b, gram_d]))
        d, weights = _normalized(_solve_factor(torch.einsum("hwr,hr->wr", z, c), [gram_a, gram_b, c.T @ c]))
    return weights, [a, b, c, d]


# ---------------------------------------------------------------- decomposed layers


def _check_init(init: str) -> None:
    if init not in INITS:
        raise ValueError(f"init {init!r}; allowed: {', '.join(INITS)}")


def _set_weights(layers: nn.Sequential, weights: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for layer, weight in zip(layers, weights):
            layer.weight.copy_(weight.reshape(layer.weight.shape))


def tucker2_conv(
    conv: nn.Conv2d, rank_in: int, rank_out: int, *, init: str = "decompose", n_iter: int = 5
) -> nn.Sequential:
    """Tucker-2 replacement of `conv`: 1x1 (C_in -> rank_in), kxk (rank_in -> rank_out), 1x1 (-> C_out)."""
    _check_conv(conv, "Tucker-2")
    _check_init(init)
    if not (1 <= rank_in <= conv.in_channels and 1 <= rank_out <= conv.out_channels):
        raise ValueError(
            f"ranks ({rank_in}, {rank_out}) are outside [1, {conv.in_channels}] x [1, {conv.out_channels}]"
        )
    new = {"device": conv.weight.device, "dtype": conv.weight.dtype}
    layers = nn.Sequential(
        nn.Conv2d(conv.in_channels, rank_in, 1, bias=False, **new),
        nn.Conv2d(
            rank_in,
            rank_out,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            bias=False,
            padding_mode=conv.padding_mode,
            **new,
        ),
        nn.Conv2d(rank_out, conv.out_channels, 1, bias=conv.bias is not None, **new),
    )
    if conv.bias is not None:
        with torch.no_grad():
            layers[2].bias.copy_(conv.bias)
    if init == "decompose":
        core, u_out, u_in = tucker2_decompose(conv.weight, rank_in, rank_out, n_iter=n_iter)
        _set_weights(layers, [u_in.T, core, u_out])
    return layers


def cp_conv(
    conv: nn.Conv2d, rank: int, *, init: str = "decompose", n_iter: int = 100, tol: float = 1e-6, seed: int = 0
) -> nn.Sequential:
    """CP replacement of `conv`: 1x1 (C_in -> R), depthwise kx1, depthwise 1xk, 1x1 (R -> C_out)."""
    _check_conv(conv, "CP")
    _check_init(init)
    if rank < 1:
        raise ValueError(f"CP rank {rank} must be at least 1")
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    # Height and width are filtered by separate convs, so each takes its own axis of the stride,
    # padding and dilation; a string padding ('same'/'valid') means the same thing per axis.
    if isinstance(conv.padding, str):
        pad_h = pad_w = conv.padding
    else:
        pad_h, pad_w = (conv.padding[0], 0), (0, conv.padding[1])
    new = {"device": conv.weight.device, "dtype": conv.weight.dtype}
    spatial = {"groups": rank, "bias": False, "padding_mode": conv.padding_mode, **new}
    layers = nn.Sequential(
        nn.Conv2d(conv.in_channels, rank, 1, bias=False, **new),
        nn.Conv2d(rank, rank, (kh, 1), stride=(sh, 1), padding=pad_h, dilation=(dh, 1), **spatial),
        nn.Conv2d(rank, rank, (1, kw), stride=(1, sw), padding=pad_w, dilation=(1, dw), **spatial),
        nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None, **new),
    )
    if conv.bias is not None:
        with torch.no_grad():
            layers[3].bias.copy_(conv.bias)
    if init == "decompose":
        weights, (a, b, c, d) = cp_decompose(conv.weight, rank, n_iter=n_iter, tol=tol, seed=seed)
        # Spread the weights evenly over the four factors so no layer starts with outsized values
        # (fine-tuning follows the decomposition in Lebedev et al.).
        share = weights.pow(0.25)
        _set_weights(layers, [(b * share).T, (c * share).T, (d * share).T, a * share])
    return layers
