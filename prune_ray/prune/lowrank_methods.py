"""Low-rank methods `cp` and `tucker`: each eligible conv is replaced by its factorisation.

A layer's units are percent of its parameters: removing k units asks for a decomposition keeping
at most (100 - k)% of them (rank chosen by `*_rank_for_ratio`). A layer whose ask is beyond what
rank 1 reaches gets rank 1; an ask so small that no rank saves parameters keeps the original conv.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn as nn

from . import Calibration, Layer, UnsupportedModelError, register_method
from .lowrank import cp_conv, cp_max_ratio, cp_rank_for_ratio, tucker2_conv, tucker2_max_ratio, tucker2_ranks_for_ratio

PERCENT = 100
MAX_RATIO = 0.95
# CP-ALS passes per layer: ALS cost grows with rank x channels (minutes for all of ResNet-34 at
# 100 passes on a CPU), and the fit it reaches in 25 is refined by fine-tuning anyway (Lebedev et al.).
CP_ITERATIONS = 25
# Tucker-2 HOOI sweeps after the HOSVD start per layer (each stops early once the captured energy stops growing)
TUCKER_ITERATIONS = 5


def factorisable_convs(model: nn.Module, example_inputs: torch.Tensor | None = None) -> list[Layer]:
    """Ordinary (groups=1) convs with a spatial kernel: 1x1 and depthwise convs have nothing to factor.
    UnsupportedModelError for a model without one (an MLP): the method would change nothing."""
    layers = [
        Layer(name, PERCENT)
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d) and module.groups == 1 and module.kernel_size != (1, 1)
    ]
    if not layers:
        raise UnsupportedModelError(
            f"low-rank methods factorise convs with a spatial kernel, and {type(model).__name__} has none; "
            "use an unstructured or structured method"
        )
    return layers


def _factorise(
    model: nn.Module,
    removed: Mapping[str, int],
    max_ratio_of: Callable[[nn.Conv2d], float],
    build: Callable[[nn.Conv2d, float], nn.Module],
) -> nn.Module:
    modules = dict(model.named_modules())
    for name, count in removed.items():
        if count <= 0:
            continue
        conv = modules[name]
        reachable = max_ratio_of(conv)
        if reachable <= 0:
            continue  # no rank saves parameters on this layer (e.g. a 3-channel stem)
        model.set_submodule(name, build(conv, min(count / PERCENT, reachable)))  # built on conv's device
    return model


# a factorisation of one conv to a parameter ratio: (conv, ratio, init) -> replacement module
Factorise = Callable[[nn.Conv2d, float, str], nn.Module]


def _register_lowrank(name: str, paper: str, label: str, max_ratio_of: Callable[[nn.Conv2d], float], build: Factorise) -> None:
    """Register a low-rank method: `prune` decomposes the trained weights; `shape_prune` (the
    same ranks from random factors) is what the budget search measures."""

    def with_init(init: str):
        def prune(model: nn.Module, removed: Mapping[str, int], calibration: Calibration) -> nn.Module:
            return _factorise(model, removed, max_ratio_of, lambda conv, ratio: build(conv, ratio, init))

        return prune

    register_method(
        name,
        granularity="lowrank",
        paper=paper,
        ratio_meaning=f"fraction of each kxk conv's parameters removed by a {label} factorisation (rank chosen to fit)",
        layers=factorisable_convs,
        max_ratio=MAX_RATIO,
        shape_prune=with_init("random"),
    )(with_init("decompose"))


_register_lowrank(
    "tucker", "Kim et al. 2016, Tucker-2 decomposition of conv kernels", "Tucker-2", tucker2_max_ratio,
    lambda conv, ratio, init: tucker2_conv(conv, *tucker2_ranks_for_ratio(conv, ratio), init=init, n_iter=TUCKER_ITERATIONS),
)
_register_lowrank(
    "cp", "Lebedev et al. 2015, CP-decomposition of conv kernels", "CP", cp_max_ratio,
    lambda conv, ratio, init: cp_conv(conv, cp_rank_for_ratio(conv, ratio), init=init, n_iter=CP_ITERATIONS),
)
