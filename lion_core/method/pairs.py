"""Verdicts are data: each judged Cache Pool item whose teacher answer the referee preferred becomes a
preference pair (prompt, chosen = the teacher's answer, rejected = the student's, margin = the gap). They
cost nothing: the referee already paid for the verdicts. Without a referee (the imitation baseline) a
pair is any item whose student answer differs from the teacher's (the model's own answer as the rejected
side, as SPIN, arXiv 2401.01335)."""

from __future__ import annotations

from collections.abc import Sequence

from lion_core.method.referee import same_answer
from lion_core.records import Instruction, Judgement, PreferencePair, Response


def prompt_of(item: Instruction) -> str:
    """The instruction as a preference trainer's prompt: the instruction, and its input after a blank line."""
    return f"{item.instruction}\n\n{item.input}" if item.input else item.instruction


def pair(
    item: Instruction, teacher: Response, student: Response, k: int, verdict: Judgement | None
) -> PreferencePair:
    """The teacher's answer preferred to the student's; margin and label from the verdict, if any."""
    return PreferencePair(
        id=item.id,
        iteration=k,
        prompt=prompt_of(item),
        chosen=teacher.output,
        rejected=student.output,
        margin=None if verdict is None else verdict.gap,
        label=None if verdict is None else verdict.label,
        source="self" if verdict is None else "referee",
    )


def preferred(verdict: Judgement | None) -> bool:
    """A scorable verdict with a positive gap: the referee scored the teacher's answer higher."""
    return (
        verdict is not None and verdict.gap is not None and verdict.gap > 0 and verdict.label != "unscorable"
    )


def judged_pairs(
    items: Sequence[Instruction],
    teacher: Sequence[Response],
    student: Sequence[Response],
    judgements: Sequence[Judgement],
    k: int,
) -> list[PreferencePair]:
    """A pair for every scorable judged item with a positive gap (the teacher's answer scored higher)."""
    by_id = {j.id: j for j in judgements}
    rows = zip(items, teacher, student, strict=True)
    return [pair(i, t, s, k, by_id[i.id]) for i, t, s in rows if preferred(by_id.get(i.id))]


def self_pairs(
    items: Sequence[Instruction], teacher: Sequence[Response], student: Sequence[Response], k: int
) -> list[PreferencePair]:
    """Without a referee: a pair for every item whose student answer differs from the teacher's."""
    rows = zip(items, teacher, student, strict=True)
    return [pair(i, t, s, k, None) for i, t, s in rows if not same_answer(t.output, s.output)]
