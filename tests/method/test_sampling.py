"""referee.sample's plan, draw and estimate (lion_core.method.sampling): the newest generation in full, a
seeded stratified sample of the older pool sized from what generation needs, and an honest estimate."""

from __future__ import annotations

from random import Random

import pytest

from lion_core.config import LoopConfig, RefereeSample
from lion_core.method import sampling
from lion_core.method.discrimination import Split
from lion_core.records import Instruction


def pool_of(sizes: dict[int, int]) -> list[Instruction]:
    """A Cache Pool with `n` items born in each iteration `h` (0: seeds)."""
    return [
        Instruction(
            id=f"i{h}-{n}", instruction=f"task {h} {n}", iteration=h, origin="seed" if h == 0 else "hard"
        )
        for h, count in sizes.items()
        for n in range(count)
    ]


def test_the_newest_generation_is_judged_in_full_and_the_older_pool_by_stratum() -> None:
    pool = pool_of({0: 500, 1: 200, 2: 100})
    sample = RefereeSample(size=120, min_per_stratum=20)
    plan = sampling.plan(pool, 3, LoopConfig(), sample, None)
    assert plan.take[2] == 100  # born in iteration 2: the Train Pool iteration 3 just trained on
    assert plan.take[0] == 86 and plan.take[1] == 35  # 120 in proportion to 500 : 200, rounded up
    judged = sampling.draw(pool, plan, seed=7, k=3)
    assert len(judged) == plan.judged == 221
    assert [i.id for i in judged] == [i.id for i in pool if i in judged]  # in pool order
    assert sampling.draw(pool, plan, seed=7, k=3) == judged  # seeded: a re-run draws the same sample
    assert sampling.draw(pool, plan, seed=8, k=3) != judged
    small = sampling.plan(pool_of({0: 500, 1: 10}), 3, LoopConfig(), sample, None)
    assert small.take == {0: 118, 1: 10}  # no newest generation (none born in 2); a small stratum whole


def test_iteration_one_samples_the_seed_pool_and_every_stratum_keeps_its_minimum() -> None:
    pool = pool_of({0: 1000})
    assert sampling.plan(pool, 1, LoopConfig(), RefereeSample(size=30, min_per_stratum=50), None).take == {
        0: 50
    }


def test_auto_judges_enough_for_a_multiple_of_the_parents_drawn() -> None:
    loop = LoopConfig(new_per_iteration=100, hard_easy_ratio=1.0)  # 50 hard and 50 easy parents drawn
    sample = RefereeSample(size="auto", parents_multiple=2.0, min_per_stratum=1)
    pool = pool_of({0: 1000})
    assert sampling.plan(pool, 1, loop, sample, 0.25).judged == 400  # 2 × 50 / 0.25 hard candidates
    assert sampling.plan(pool, 1, loop, sample, 0.8).judged == 500  # 2 × 50 / 0.2 easy ones
    assert sampling.plan(pool, 1, loop, sample, None).judged == 200  # the prior 0.5 before any measure
    assert sampling.plan(pool, 1, loop, sample, 0.0).judged == 1000  # no hard seen: judge everything
    grown = pool_of({0: 1000, 1: 100})
    assert sampling.plan(grown, 2, loop, sample, 0.5).take == {1: 100, 0: 100}  # 200 − the newest 100


def labelled(pool: list[Instruction], hard_share: dict[int, float]) -> set[str]:
    """The ids that are hard: the first hard_share[h] of each stratum."""
    hard = set()
    for h, items in sampling.strata(pool).items():
        hard.update(i.id for i in items[: round(hard_share[h] * len(items))])
    return hard


def split_of(judged: list[Instruction], hard: set[str]) -> Split:
    return Split([i for i in judged if i.id in hard], [i for i in judged if i.id not in hard], [])


def test_the_estimate_is_exact_when_all_are_judged_and_weighs_each_stratum_by_its_size() -> None:
    pool = pool_of({0: 800, 1: 200})
    hard = labelled(pool, {0: 0.25, 1: 0.75})
    full = sampling.estimate(pool, split_of(pool, hard), 0.95)
    assert full.hard_share == pytest.approx(0.35) and full.low == full.high == pytest.approx(0.35)
    # the newest generation (iteration 1) in full, 100 of the seeds: the sample's share is biased toward
    # the newest generation (0.54), the estimate is not
    judged = sampling.draw(pool, sampling.plan(pool, 2, LoopConfig(), RefereeSample(size=100), None), 0, 2)
    found = sampling.estimate(pool, split_of(judged, hard), 0.95)
    assert found.judged == 300 and found.low < found.hard_share < found.high
    assert abs(found.hard_share - 0.35) < abs(len(hard & {i.id for i in judged}) / 300 - 0.35)


def test_the_interval_covers_the_pools_hard_share_as_often_as_it_says() -> None:
    pool = pool_of({0: 2000, 1: 300, 2: 300})
    hard = labelled(pool, {0: 0.4, 1: 0.7, 2: 0.2})
    truth = len(hard) / len(pool)
    sample = RefereeSample(size=150, min_per_stratum=30)
    covered = 0
    for seed in range(200):
        items = list(pool)
        Random(seed).shuffle(items)  # which items are hard varies with the pool's order
        judged = sampling.draw(items, sampling.plan(items, 3, LoopConfig(), sample, None), seed, 3)
        found = sampling.estimate(items, split_of(judged, hard), 0.95)
        covered += found.low <= truth <= found.high
    assert covered >= 180  # 95% nominal; at least 90% of 200 seeded samples
