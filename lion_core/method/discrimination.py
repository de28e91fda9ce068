"""Discrimination: split the Cache Pool into hard and easy instructions by the referee's gap.

gap = teacher score − student score (each the mean over the two orders); hard iff gap ≥ tau.
The means and the gap are computed exactly on the scores' decimal values (in floats, 8.2 − 7.2 falls
just short of 1.0 and would be labelled easy). Unscorable items are counted and excluded from the split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise

import numpy as np

from lion_core.records import Instruction, Judgement, Label

# Bin edges of the gap histogram (scores are 1–10, so gaps lie in [-9, 9]).
GAP_BINS = (-9.0, -3.0, -1.0, 0.0, 1.0, 3.0, 6.0, 9.0)


def exact(x: float) -> Fraction:
    """The decimal value a score or threshold was written as (8.2 → 41/5), not its binary float."""
    return Fraction(str(x))


def label_for(gap: Fraction | None, tau: float) -> Label:
    """hard iff gap ≥ tau (exactly); unscorable without a gap."""
    if gap is None:
        return "unscorable"
    return "hard" if gap >= exact(tau) else "easy"


def make_judgement(
    item_id: str,
    teacher_scores: tuple[float | None, float | None],
    student_scores: tuple[float | None, float | None],
    tau: float,
    reason: str | None = None,
) -> Judgement:
    """A judgement from the two orders' scores; any missing score makes the item unscorable."""
    scores = (*teacher_scores, *student_scores)
    if any(s is None for s in scores):
        teacher = student = gap = None
        reason = reason or "a score is missing"
    else:
        teacher = sum(map(exact, teacher_scores)) / 2  # type: ignore[arg-type]
        student = sum(map(exact, student_scores)) / 2  # type: ignore[arg-type]
        gap = teacher - student
        reason = None
    return Judgement(
        id=item_id,
        teacher_scores=list(teacher_scores),
        student_scores=list(student_scores),
        teacher_score=None if teacher is None else float(teacher),
        student_score=None if student is None else float(student),
        gap=None if gap is None else float(gap),
        label=label_for(gap, tau),
        reason=reason,
    )


# The reason an identical-answers verdict carries (the referee was not asked; see referee.judge).
IDENTICAL_REASON = "identical answers: gap 0 by the paper's rule, not judged"


def identical_judgement(item_id: str, tau: float) -> Judgement:
    """The verdict on an item whose student answer equals the teacher's: gap 0, no scores, no call."""
    return Judgement(
        id=item_id,
        teacher_scores=[None, None],
        student_scores=[None, None],
        teacher_score=None,
        student_score=None,
        gap=0.0,
        label=label_for(Fraction(0), tau),
        reason=IDENTICAL_REASON,
    )


@dataclass(frozen=True)
class Split:
    """The Cache Pool divided by the referee, with statistics of the division."""

    hard: list[Instruction]
    easy: list[Instruction]
    unscorable: list[Instruction]
    stats: dict[str, object] = field(default_factory=dict)

    @property
    def hard_share(self) -> float:
        """Hard share of the scorable items (0 when none is scorable)."""
        scorable = len(self.hard) + len(self.easy)
        return len(self.hard) / scorable if scorable else 0.0


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def order_disagreement(judgements: list[Judgement]) -> float:
    """Share of scorable items whose winner flips between the two orders (a position-bias measure)."""
    flips = total = 0
    for j in judgements:
        if j.label == "unscorable" or j.reason == IDENTICAL_REASON:  # not judged: no order to compare
            continue
        first = _sign(j.teacher_scores[0] - j.student_scores[0])  # type: ignore[operator]
        second = _sign(j.teacher_scores[1] - j.student_scores[1])  # type: ignore[operator]
        total += 1
        flips += first != second
    return flips / total if total else 0.0


def second_order_changes(judgements: list[Judgement], tau: float) -> float:
    """Share of scorable, judged items whose label the second order changed: the label from order 1
    alone (its gap ≥ tau) differs from the label of the two-order mean — what the second order buys."""
    changed = total = 0
    for j in judgements:
        if j.label == "unscorable" or j.reason == IDENTICAL_REASON:
            continue
        first = Fraction(str(j.teacher_scores[0])) - Fraction(str(j.student_scores[0]))
        total += 1
        changed += label_for(first, tau) != j.label
    return changed / total if total else 0.0


def gap_histogram(gaps: list[float]) -> dict[str, int]:
    """Counts of gaps per bin of GAP_BINS, labelled '[lo, hi)' (the last bin includes its upper edge)."""
    counts, _ = np.histogram(gaps, bins=GAP_BINS)
    return {f"[{lo:g}, {hi:g})": int(n) for (lo, hi), n in zip(pairwise(GAP_BINS), counts)}


def split(pool: list[Instruction], judgements: list[Judgement]) -> Split:
    """Split a judged pool by the judgements' labels (tau is already applied in the labels)."""
    by_id = {j.id: j for j in judgements}
    missing = [item.id for item in pool if item.id not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} Cache Pool instructions have no judgement, e.g. {missing[:3]}")
    groups: dict[str, list[Instruction]] = {"hard": [], "easy": [], "unscorable": []}
    for item in pool:
        groups[by_id[item.id].label].append(item)
    gaps = [j.gap for j in judgements if j.gap is not None]
    stats = {
        "judged": len(judgements),
        "hard": len(groups["hard"]),
        "easy": len(groups["easy"]),
        "unscorable": len(groups["unscorable"]),
        "identical": sum(j.reason == IDENTICAL_REASON for j in judgements),
        "mean_gap": sum(gaps) / len(gaps) if gaps else 0.0,
        "gap_histogram": gap_histogram(gaps),
        "order_disagreement": order_disagreement(judgements),
    }
    return Split(groups["hard"], groups["easy"], groups["unscorable"], stats)
