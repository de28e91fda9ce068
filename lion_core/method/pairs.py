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


def judged_pairs(
    items: Sequence[Instruction],
    teacher: Sequence[Response],
    student: Sequence[Response],
    judgements: Sequence[Judgement],
    k: int,
) -> list[PreferencePair]:
    """A pair for every scorable judged item with a positive gap (the teacher's answer scored higher)."""
    by_id = {j.id: j for j in judgements}
    pairs = []
    for item, t, s in zip(items, teacher, student, strict=True):
        verdict = by_id.get(item.id)
        if verdict is None or verdict.gap is None or verdict.gap <= 0 or verdict.label == "unscorable":
            continue
        pairs.append(
            PreferencePair(
                id=item.id,
                iteration=k,
                prompt=prompt_of(item),
                chosen=t.output,
                rejected=s.output,
                margin=verdict.gap,
                label=verdict.label,
                source="referee",
            )
        )
    return pairs


def self_pairs(
    items: Sequence[Instruction], teacher: Sequence[Response], student: Sequence[Response], k: int
) -> list[PreferencePair]:
    """Without a referee: a pair for every item whose student answer differs from the teacher's."""
    return [
        PreferencePair(
            id=item.id,
            iteration=k,
            prompt=prompt_of(item),
            chosen=t.output,
            rejected=s.output,
            margin=None,
            label=None,
            source="self",
        )
        for item, t, s in zip(items, teacher, student, strict=True)
        if not same_answer(t.output, s.output)
    ]
