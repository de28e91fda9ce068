"""Paired statistics of the replication: per-seed differences against a reference arm, 95% t intervals,
the item-level SE of the difference, and the seeds needed for a given power."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from scipy import stats

CONFIDENCE = 0.95
POWER = 0.8


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): the t interval of the mean (low = high = mean with one value)."""
    centre = statistics.mean(values)
    if len(values) < 2:
        return centre, centre, centre
    half = (
        stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    )
    return centre, centre - half, centre + half


def item_se(differences: Sequence[Sequence[int]]) -> float:
    """SE of the mean item-level difference (hit_arm − hit_reference, pooled over seeds)."""
    pooled = [d for seed in differences for d in seed]
    return statistics.stdev(pooled) / math.sqrt(len(pooled)) if len(pooled) > 1 else 0.0


def seeds_for_power(sd: float, effect: float, power: float = POWER, confidence: float = CONFIDENCE) -> int:
    """The fewest paired seeds for which a two-sided t test at `confidence` detects `effect` with
    probability ≈ `power` (normal-shift approximation of the non-central t), given the paired SD."""
    if sd <= 0:
        return 2
    for n in range(2, 1000):
        df = n - 1
        shift = effect * math.sqrt(n) / sd
        if 1 - stats.t.cdf(stats.t.ppf(0.5 + confidence / 2, df) - shift, df) >= power:
            return n
    return 1000
