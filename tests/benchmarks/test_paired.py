"""benchmarks/paired.py: paired statistics (interval, item standard error, seeds for power)."""

from __future__ import annotations

import pytest

from tests.support.paths import benchmark


def test_paired_statistics_interval_item_se_and_power() -> None:
    paired = benchmark("paired")
    item_se, seeds_for_power, t_interval = paired.item_se, paired.seeds_for_power, paired.t_interval

    centre, low, high = t_interval([0.01, 0.03, 0.02, 0.04])
    assert (
        centre == pytest.approx(0.025)
        and low < centre < high
        and high - centre == pytest.approx(centre - low)
    )
    assert item_se([[1, 0, -1, 0], [0, 0, 1, 0]]) > 0
    assert seeds_for_power(0.025, 0.03) == 8  # the pilot's worst paired SD: 8 seeds for 80% at +3 points
    assert seeds_for_power(0.01, 0.03) < seeds_for_power(0.025, 0.03)
