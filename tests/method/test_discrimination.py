"""lion_core/method/discrimination.py: labels and statistics of a split; a gap of exactly tau is hard."""

from __future__ import annotations

import pytest

from lion_core.method.discrimination import make_judgement, order_disagreement, split
from tests.support.world import world_instructions


def test_discrimination_labels_and_statistics() -> None:
    pool = world_instructions(4)
    judgements = [
        make_judgement(pool[0].id, (9, 9), (1, 1), tau=1.0),  # gap 8: hard
        make_judgement(pool[1].id, (9, 8), (8, 8), tau=1.0),  # gap 0.5: easy
        make_judgement(pool[2].id, (9, 9), (8, 8), tau=1.0),  # gap exactly tau: hard
        make_judgement(pool[3].id, (9, None), (1, None), tau=1.0, reason="order 2: no scores"),
    ]
    result = split(pool, judgements)
    assert [i.id for i in result.hard] == [pool[0].id, pool[2].id]
    assert [i.id for i in result.easy] == [pool[1].id]
    assert [i.id for i in result.unscorable] == [pool[3].id]
    assert result.stats["unscorable"] == 1 and result.stats["mean_gap"] == pytest.approx((8 + 0.5 + 1) / 3)
    assert result.hard_share == pytest.approx(2 / 3)
    flipped = make_judgement("x", (9, 4), (5, 6), tau=1.0)  # order 1 teacher wins, order 2 student wins
    assert order_disagreement([flipped, judgements[0]]) == 0.5


@pytest.mark.parametrize(
    ("teacher", "student", "tau"),
    [((8.2, 8.2), (7.2, 7.2), 1.0), ((0.3, 0.3), (0.2, 0.2), 0.1), ((7.1, 8.7), (6.1, 7.7), 1.0)],
)
def test_a_gap_of_exactly_tau_in_decimal_scores_is_hard(
    teacher: tuple[float, float], student: tuple[float, float], tau: float
) -> None:
    assert sum(teacher) / 2 - sum(student) / 2 < tau  # in floats the gap falls short of tau
    judgement = make_judgement("x", teacher, student, tau=tau)
    assert judgement.label == "hard" and judgement.gap == tau
