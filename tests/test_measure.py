import copy

import pytest

import torch
import torch.nn as nn

from prune_ray.measure import (
    SPARSE_INDEX_BYTES, TimingOptions, count_macs, count_params, measure, time_model, time_paired,
)


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
    result = measure(model, torch.randn(4, 1, 4, 4), timing=TimingOptions(min_passes=3, min_time_ms=0))
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


# Timing. No test asserts a speed or depends on one: the real clock is only checked to run the
# passes and the time asked; the pairing's promise on a busy machine is checked on an injected clock.


def test_time_model_runs_at_least_the_passes_and_the_time_asked(cnn, digits):
    options = TimingOptions(warmup=1, min_passes=7, min_time_ms=30.0)
    timing = time_model(cnn.train(), digits.val_x[:8], options)
    assert timing.passes >= 7 and timing.total_ms >= 30.0
    assert 0 < timing.q1_ms <= timing.median_ms <= timing.q3_ms
    assert timing.method == "wall clock, 1 pass per sample"  # the CPU's path: one pass a sample
    assert cnn.training  # the model's mode is given back


def test_time_paired_interleaves_equal_numbers_of_passes(cnn, digits):
    speed = time_paired(cnn, copy.deepcopy(cnn), digits.val_x[:8], TimingOptions(warmup=0, min_passes=5, min_time_ms=0))
    assert speed.baseline.passes == speed.pruned.passes == 5  # pairs, the order alternating
    assert speed.low <= speed.median <= speed.high


class BurstyClock:
    """A busy machine as a latency model: each model's cost per pass, times a load that comes and
    goes in bursts longer than a pass (a neighbour's training starting and stopping), a steady
    slow-down, and seeded jitter of +-5% per sample. Nothing here is measured."""

    def __init__(self, per_pass_ms: dict[int, float], seed: int = 0):
        import random

        self.per_pass_ms, self.random, self.samples = per_pass_ms, random.Random(seed), 0

    def __call__(self, model, inputs, passes: int) -> float:
        self.samples += 1
        burst = 3.0 if (self.samples // 10) % 3 == 0 else 1.0  # bursts of 10 samples at 3x, then 20 at 1x
        drift = 1 + self.samples / 50  # and a machine slowing steadily: 2% of its first speed a sample
        return passes * self.per_pass_ms[id(model)] * burst * drift * self.random.uniform(0.95, 1.05)


@pytest.mark.parametrize("seed", range(5))
def test_interleaved_pairs_cancel_bursts_of_load(seed):
    """The timing's promise on a busy machine, with an injected clock: the load triples for a third
    of the samples, in bursts, and the machine slows steadily (timing one model's samples after the
    other's would make the second look slower: a time_paired mutated to do so fails here), yet two
    models of identical work get a median ratio near 1.0 and an interval containing it, and a model
    doing half the work a median near 2x (each pair sees one load; the few pairs a burst's edge
    splits widen the interval, not the median)."""
    a, b, half = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)
    clock = BurstyClock({id(a): 0.2, id(b): 0.2, id(half): 0.1}, seed)
    options = TimingOptions(warmup=1, min_passes=40, min_time_ms=0, sample_min_ms=0.0)
    same = time_paired(a, b, torch.zeros(1, 2), options, clock=clock)
    assert same.low <= 1.0 <= same.high and same.median == pytest.approx(1.0, abs=0.06), same
    faster = time_paired(a, half, torch.zeros(1, 2), options, clock=clock)
    assert faster.median == pytest.approx(2.0, rel=0.06) and faster.low <= faster.median <= faster.high, faster
    assert same.baseline.q3_ms / same.baseline.q1_ms > 2  # the load really varies: a model's own samples spread 2x


# A GPU's samples: K passes between one pair of events. An injected clock (a latency model: a
# fixed cost per sample for the launch and synchronize, plus each model's kernel time per pass)
# checks the choice of K and the arithmetic; nothing here is measured.


class LaunchBoundClock:
    def __init__(self, per_pass_ms: dict[int, float], per_sample_ms: float):
        self.per_pass_ms, self.per_sample_ms, self.calls = per_pass_ms, per_sample_ms, []

    def __call__(self, model, inputs, passes: int) -> float:
        self.calls.append(passes)
        return self.per_sample_ms + passes * self.per_pass_ms[id(model)]


def test_passes_per_sample_double_until_the_fastest_model_fills_a_sample():
    from prune_ray.measure import sample_passes

    slow, fast = nn.Linear(2, 2), nn.Linear(2, 2)
    clock = LaunchBoundClock({id(slow): 0.2, id(fast): 0.01}, per_sample_ms=0.05)
    options = TimingOptions(sample_min_ms=1.0, max_sample_passes=256)
    assert sample_passes(clock, [slow], None, options) == 8  # 0.05 + 8 x 0.2 >= 1 (4 passes: 0.85)
    assert sample_passes(clock, [slow, fast], None, options) == 128  # 0.05 + 128 x 0.01 >= 1
    assert sample_passes(clock, [fast], None, TimingOptions(sample_min_ms=1.0, max_sample_passes=64)) == 64


def test_k_passes_a_sample_see_the_pruned_models_kernels_not_the_launch():
    """One pass a sample would report (0.5 + 0.2) / (0.5 + 0.05) = 1.27x for a pruned model whose
    kernels take a quarter of the baseline's; K passes between one pair of events approach 4x."""
    baseline, pruned = nn.Linear(2, 2), nn.Linear(2, 2)
    clock = LaunchBoundClock({id(baseline): 0.2, id(pruned): 0.05}, per_sample_ms=0.5)
    options = TimingOptions(warmup=1, min_passes=5, min_time_ms=0, sample_min_ms=10.0)
    speed = time_paired(baseline, pruned, torch.zeros(1, 2), options, clock=clock)
    k = 256  # 0.5 + 128 x 0.05 < 10 <= 0.5 + 256 x 0.05
    assert speed.method == "injected clock, 256 passes per sample"
    assert speed.median == pytest.approx((0.5 + k * 0.2) / (0.5 + k * 0.05)) and speed.median > 3.8
    assert speed.pruned.median_ms == pytest.approx(0.05 + 0.5 / k)
    assert clock.calls[-10:] == [k] * 10 and speed.baseline.passes == speed.pruned.passes == 5
    timing = time_model(baseline, torch.zeros(1, 2), options, clock=clock)
    assert timing.method == "injected clock, 64 passes per sample"  # 0.5 + 64 x 0.2 >= 10
