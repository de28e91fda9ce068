"""Judging a sample of the Cache Pool (config `referee.sample`): what selection needs, not all of it.

Generation draws N·r/(1+r) hard parents and as many easy ones; the paper's referee judges the whole,
growing Cache Pool in both orders every iteration to supply them. Here each iteration judges every item
of the newest generation (born in the previous iteration: the Train Pool the student was just trained
on; none in iteration 1) and a stratified random sample of the older pool, the strata being the
iteration an item was born in (0 for seeds). The student answers only the judged items, the referee
judges only them, and parents are drawn only from them.

The size of the older sample is either fixed (`size`) or automatic: enough judged items that the
expected number of hard candidates, and of easy ones, is `parents_multiple` × what the generator draws
of each, at the hard share the previous iteration estimated (`prior_hard_share` before any). Every
stratum gets at least `min_per_stratum` items (or all of it), so each is estimated.

The hard share reported (and the equilibrium stop) is the stratified estimate of the whole Cache Pool's
hard share, Σ W_h p_h over strata (W_h: a stratum's share of the pool; p_h: the hard share of its judged
scorable items), with a normal confidence interval from the stratified variance and the finite
population correction (a fully judged stratum adds no variance).

Pure functions: the draw is seeded by (loop seed, iteration), so a re-run draws the same sample.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from random import Random
from statistics import NormalDist

from lion_core.config import LoopConfig, RefereeSample
from lion_core.method.discrimination import Split
from lion_core.records import Instruction

ROUNDING = 9  # decimals kept before rounding a planned size up: 2 × 50 / (1 − 0.8) is 500, not 501


@dataclass(frozen=True)
class Plan:
    """How many items of each stratum (birth iteration) are judged, and why."""

    take: dict[int, int]
    sizes: dict[int, int]
    target: int  # judged items the rule asked for (before the strata's minimums and caps)

    @property
    def judged(self) -> int:
        return sum(self.take.values())


def strata(pool: Sequence[Instruction]) -> dict[int, list[Instruction]]:
    """The pool's items by the iteration they were born in (0: seeds), in pool order."""
    out: dict[int, list[Instruction]] = defaultdict(list)
    for item in pool:
        out[item.iteration].append(item)
    return dict(out)


def parents_drawn(loop: LoopConfig) -> tuple[int, int]:
    """Hard and easy parents the generator draws in one iteration (before any refill)."""
    hard = math.floor(loop.new_per_iteration * loop.hard_easy_ratio / (1.0 + loop.hard_easy_ratio) + 0.5)
    return hard, loop.new_per_iteration - hard


def needed(loop: LoopConfig, sample: RefereeSample, hard_share: float) -> float:
    """Judged items whose expected hard (and easy) candidates are `parents_multiple` × the draws; inf
    when a side the generator draws from is expected to be empty."""
    hard, easy = parents_drawn(loop)
    need = 0.0
    for draws, share in ((hard, hard_share), (easy, 1.0 - hard_share)):
        if draws:
            need = max(need, math.inf if share <= 0 else sample.parents_multiple * draws / share)
    return need


def plan(
    pool: Sequence[Instruction], k: int, loop: LoopConfig, sample: RefereeSample, hard_share: float | None
) -> Plan:
    """The sample's size per stratum in iteration k of this pool (see `plan_sizes`)."""
    return plan_sizes(
        {h: len(items) for h, items in sorted(strata(pool).items())}, k, loop, sample, hard_share
    )


def plan_sizes(
    sizes: dict[int, int], k: int, loop: LoopConfig, sample: RefereeSample, hard_share: float | None
) -> Plan:
    """The sample's size per stratum (birth iteration → items) in iteration k: the newest generation
    (born in k − 1 ≥ 1) in full, the older strata in proportion to their sizes, each at least
    `min_per_stratum` (or all of it). `hard_share`: the previous iteration's estimate (None: the prior)."""
    newest = {h: n for h, n in sizes.items() if h == k - 1 and h >= 1}
    older = {h: n for h, n in sizes.items() if h not in newest}
    share = sample.prior_hard_share if hard_share is None else hard_share
    if sample.size == "auto":
        target = needed(loop, sample, share)
        wanted = target - sum(newest.values())
    else:
        wanted = sample.size
        target = wanted + sum(newest.values())
    total_older = sum(older.values())
    take = dict(newest)
    for h, n in older.items():
        proportional = (
            math.ceil(round(min(wanted, total_older) * n / total_older, ROUNDING)) if wanted > 0 else 0
        )
        take[h] = min(n, max(proportional, sample.min_per_stratum))
    pool = sum(sizes.values())
    return Plan(take, dict(sizes), int(min(target, pool)) if math.isfinite(target) else pool)


def draw(pool: Sequence[Instruction], chosen: Plan, seed: int, k: int) -> list[Instruction]:
    """The judged items, in pool order: each stratum's seeded sample of its planned size."""
    rng = Random(f"{seed}:referee-sample:{k}")
    picked: set[str] = set()
    for h, items in sorted(strata(pool).items()):
        picked.update(item.id for item in rng.sample(items, chosen.take.get(h, 0)))
    return [item for item in pool if item.id in picked]


@dataclass(frozen=True)
class Estimate:
    """The Cache Pool's hard share estimated from a stratified sample, with its confidence interval."""

    hard_share: float
    low: float
    high: float
    judged: int
    pool: int

    def to_dict(self) -> dict[str, object]:
        return {
            "hard_share": self.hard_share,
            "hard_share_ci": [self.low, self.high],
            "judged": self.judged,
            "pool": self.pool,
        }


def estimate(pool: Sequence[Instruction], split: Split, level: float) -> Estimate:
    """The Cache Pool's hard share from the split of a judged sample: Σ W_h p_h over the strata that
    have scorable items (weights renormalised over them), with the normal interval at confidence
    `level`: variance Σ W_h² p_h (1 − p_h) / n_h × (1 − n_h / N_h)."""
    sizes = {h: len(items) for h, items in strata(pool).items()}
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # stratum → [hard, scorable]
    for item in split.hard:
        counts[item.iteration][0] += 1
    for item in [*split.hard, *split.easy]:
        counts[item.iteration][1] += 1
    judged = len(split.hard) + len(split.easy) + len(split.unscorable)
    covered = sum(sizes[h] for h in counts)
    if not covered:
        return Estimate(0.0, 0.0, 0.0, judged, len(pool))
    share = variance = 0.0
    for h, (hard, n) in counts.items():
        weight, p = sizes[h] / covered, hard / n
        share += weight * p
        variance += weight**2 * p * (1 - p) / n * (1 - n / sizes[h])
    half = NormalDist().inv_cdf(0.5 + level / 2) * math.sqrt(variance)
    return Estimate(share, max(0.0, share - half), min(1.0, share + half), judged, len(pool))
