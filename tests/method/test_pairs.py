"""Verdicts are data: preference pairs from the referee's verdicts, and without a referee (SPIN-style)."""

from __future__ import annotations

from lion_core.method.discrimination import identical_judgement, make_judgement
from lion_core.method.pairs import judged_pairs, prompt_of, self_pairs
from lion_core.records import Instruction, Response

ITEMS = [
    Instruction(id="a", instruction="Reverse abc"),
    Instruction(id="b", instruction="Sort the letters", input="cab"),
    Instruction(id="c", instruction="Count vowels in idea"),
    Instruction(id="d", instruction="Uppercase xy"),
]


def answers(outputs: list[str], model: str) -> list[Response]:
    return [
        Response(id=i.id, instruction=i.instruction, output=o, model=model) for i, o in zip(ITEMS, outputs)
    ]


def test_a_pair_for_every_scorable_verdict_with_a_positive_gap() -> None:
    teacher = answers(["cba", "abc", "3", "XY"], "t")
    student = answers(["abc", "abc", "2", "xy"], "s")
    verdicts = [
        make_judgement("a", (9, 9), (2, 3), tau=1.0),  # gap 6.5: hard
        make_judgement("b", (8, 8), (8, 8), tau=1.0),  # gap 0: no pair
        make_judgement("c", (7, 8), (7, 7.5), tau=1.0),  # gap 0.25: easy, still preferred
        make_judgement("d", (None, 8), (2, 2), tau=1.0),  # unscorable: no pair
    ]
    pairs = judged_pairs(ITEMS, teacher, student, verdicts, k=2)
    assert [(p.id, p.label, p.margin, p.chosen, p.rejected) for p in pairs] == [
        ("a", "hard", 6.5, "cba", "abc"),
        ("c", "easy", 0.25, "3", "2"),
    ]
    assert all(p.iteration == 2 and p.source == "referee" for p in pairs)
    assert judged_pairs(ITEMS[:1], teacher[:1], student[:1], [identical_judgement("a", 1.0)], 1) == []
    assert prompt_of(ITEMS[1]) == "Sort the letters\n\ncab"


def test_without_a_referee_a_pair_is_an_answer_that_differs_from_the_teachers() -> None:
    teacher = answers(["cba", "abc", "3", "XY"], "t")
    student = answers(["abc", " abc ", "2", "xy"], "s")
    pairs = self_pairs(ITEMS, teacher, student, k=1)
    assert [p.id for p in pairs] == ["a", "c", "d"]  # b equals the teacher's after whitespace
    assert all(p.source == "self" and p.margin is None and p.label is None for p in pairs)
