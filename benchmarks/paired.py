"""Statistics the benchmarks share over paired seeds: a mean and the half-width of its Student t
interval (scipy comes with scikit-learn, a dependency)."""

from __future__ import annotations

import math


def t_interval(values: list[float], level: float = 0.975) -> tuple[float, float]:
    """Mean and the half-width of its Student t interval at quantile `level` (0.975: the two-sided
    95% interval; 0.95: the one-sided 95% bound); nan for one value."""
    from scipy import stats

    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return mean, float(stats.t.ppf(level, len(values) - 1)) * sd / math.sqrt(len(values))
