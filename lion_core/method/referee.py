"""The Referee: score the teacher's and the student's answers in both orders and parse the verdicts.

Each instruction is judged twice, concurrently: order 1 shows the teacher as Assistant 1 and the student
as Assistant 2, order 2 swaps them. Each side's score is the mean over both orders, so a referee's
position bias (a constant bonus for whoever is shown first) cancels out of the gap. A reply without
both score lines is followed by a repair turn that asks again for the score lines (the conversation
grows by the bad reply and the request, and `variant` 1..retries keeps each attempt a fresh one); an order
that never yields scores makes the item unscorable, with the reason recorded in its Judgement.

Errors of the endpoint itself (`LLMError` after the client's HTTP retries, `BudgetExceededError`)
propagate: they are not a verdict on the item, and the response cache keeps whatever was paid for.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence

from lion_core import prompts
from lion_core.chat import ChatClient, Messages
from lion_core.method.discrimination import identical_judgement, make_judgement
from lion_core.records import Instruction, Judgement

Scores = tuple[float, float]

# The score scale the referee prompt asks for; anything outside it is not a valid score.
MIN_SCORE = 1.0
MAX_SCORE = 10.0
# Characters of the last bad reply quoted in an unscorable item's reason.
REASON_PREVIEW_CHARS = 80
ASSISTANTS = ("1", "2")

# A score label, canonical ("Score of the Assistant 1") or a near variant ("Score for Assistant 1",
# "Assistant 1 score", "Assistant 1's score"), followed by a colon (markdown bold may close before or
# after the colon). `start` participates only when the label begins its line (after indentation,
# bullets, '>' or '#' and bold markers). `value` is the rest of the line, read by lookahead so that a
# second label on the same line is still found.
_SCORE_LABEL = re.compile(
    r"(?P<start>^[ \t>#*_+\-]*)?"
    r"\b(?:score[ \t]+(?:of|for)[ \t]+(?:the[ \t]+)?assistant[ \t]*(?P<a>[12])(?!\d)"
    r"|assistant[ \t]*(?P<b>[12])(?!\d)(?:['’]s)?[ \t]+score)"
    r"[ \t]*[*_]*[ \t]*:(?=(?P<value>[^\n]*))",
    re.IGNORECASE | re.MULTILINE,
)
# A score value: a number, optionally bold, optionally "/10" or "out of 10"; the rest is kept to
# detect ranges and decimal commas.
_SCORE_VALUE = re.compile(
    r"[ \t*_]*(?P<number>\d+(?:\.\d+)?)"
    r"(?:[ \t*_]*(?:/|out[ \t]+of)[ \t]*(?P<scale>\d+(?:\.\d+)?))?"
    r"(?P<rest>.*)",
    re.IGNORECASE,
)
# What after a number makes the value ambiguous: a range ("7-8", "7 – 8", "7 to 8", "7 or 8") or a
# decimal comma ("7,5").
_AMBIGUOUS_REST = re.compile(r"[ \t*_]*(?:(?:-|–|—|to\b|or\b)[ \t]*\d|,\d)", re.IGNORECASE)


def judged_text(item: Instruction, *, send_inputs: bool = True) -> str:
    """What the referee sees as the [Instruction]: the instruction and its input (config
    `loop.send_inputs`), or the instruction alone, as the original `chatgpt_referee.py`."""
    return item.text if send_inputs else item.instruction


def render(instruction: str, answer_1: str, answer_2: str) -> Messages:
    """The referee's request for one order (see `lion_core.prompts.referee_messages`)."""
    return prompts.referee_messages(instruction, answer_1, answer_2)


def score_value(text: str) -> float | None:
    """The score at the start of `text` (what follows a score label), or None if it is not one.

    Accepts "8", "8.5", "8/10", "8 out of 10", "**8**", with any text after it. Refuses (None): no
    number ("N/A", "<score>"), a negative number, a range or alternative ("7-8", "7 to 8", "7 or 8"), a
    decimal comma ("7,5"), another scale ("85/100") and a value outside MIN_SCORE..MAX_SCORE.
    """
    match = _SCORE_VALUE.match(text)
    if match is None or _AMBIGUOUS_REST.match(match["rest"]):
        return None
    if match["scale"] is not None and float(match["scale"]) != MAX_SCORE:
        return None
    score = float(match["number"])
    return score if MIN_SCORE <= score <= MAX_SCORE else None


def _chosen_mentions(reply: str) -> dict[str, re.Match[str]]:
    """Per assistant ('1', '2'), the label that counts: the last one that starts a line, else the last."""
    line_starts: dict[str, re.Match[str]] = {}
    anywhere: dict[str, re.Match[str]] = {}
    for match in _SCORE_LABEL.finditer(reply):
        assistant = match["a"] or match["b"]
        anywhere[assistant] = match
        if match["start"] is not None:
            line_starts[assistant] = match
    return {**anywhere, **line_starts}


def parse_scores(reply: str) -> Scores | None:
    """(Assistant 1's score, Assistant 2's score) from a referee reply, or None — never a guess.

    Rules:
    - a score follows a label and a colon: "Score of the Assistant 1: 8" (the prompt's form), or a
      near variant "Score for Assistant 1:", "Assistant 1 score:", "Assistant 1's score:"; case,
      spacing, markdown bold ("**Score of the Assistant 1:** 8"), bullets and \\r\\n newlines do not
      matter, nor does the order of the two lines or text after the number;
    - the value is read by `score_value`: "8", "8.5", "8/10", "8 out of 10", "**8**" count; "N/A",
      ranges ("7-8"), decimal commas, other scales and scores outside 1–10 do not;
    - when a label occurs more than once, labels that start a line win over mentions inside a sentence
      (e.g. a quotation in the explanation), and among those the LAST one counts (the verdict lines come
      last). Only that occurrence is read: if its value is invalid the score is missing — an earlier
      mention is never used instead;
    - a value on the line after its label is not read;
    - both scores are needed: if either is missing or invalid, the result is None.
    """
    text = reply.replace("\r\n", "\n").replace("\r", "\n")
    chosen = _chosen_mentions(text)
    scores = [score_value(chosen[a]["value"]) if a in chosen else None for a in ASSISTANTS]
    if scores[0] is None or scores[1] is None:
        return None
    return scores[0], scores[1]


def readable(reply: str) -> bool:
    """Whether a referee reply carries both scores (what the client keeps serving from its cache)."""
    return parse_scores(reply) is not None


async def ask_scores(client: ChatClient, messages: Messages, *, retries: int) -> tuple[Scores | None, str]:
    """Ask for one order's verdict, asking for a repair (variant 1..retries) while the reply has no scores.

    Returns the parsed scores (None if no reply had them) and the last reply's text.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    content = ""
    for variant in range(retries + 1):
        request = prompts.referee_repair_messages(messages, content) if variant else messages
        content = (await client.complete(request, variant=variant)).content
        scores = parse_scores(content)
        if scores is not None:
            return scores, content
    return None, content


def _failure(order: int, retries: int, last_reply: str) -> str:
    """Why an order gave no scores, quoting the start of its last reply."""
    return f"order {order}: no scores in {retries + 1} replies; last: {last_reply[:REASON_PREVIEW_CHARS]!r}"


def same_answer(first: str, second: str) -> bool:
    """Equal after whitespace normalisation (runs of whitespace are one space; ends stripped)."""
    return " ".join(first.split()) == " ".join(second.split())


async def judge(
    client: ChatClient,
    item_id: str,
    instruction: str,
    teacher_answer: str,
    student_answer: str,
    *,
    tau: float,
    retries: int,
    skip_identical: bool = False,
) -> Judgement:
    """The two-order verdict on one instruction (its text including the input), labelled by `tau`.

    Order 1: Assistant 1 = teacher, Assistant 2 = student; order 2: the reverse. Both are asked at once.
    `skip_identical` (config `referee.skip_identical`): equal answers get the verdict `identical`
    (gap 0) without a request.
    """
    if skip_identical and same_answer(teacher_answer, student_answer):
        return identical_judgement(item_id, tau)
    orders = (
        render(instruction, teacher_answer, student_answer),
        render(instruction, student_answer, teacher_answer),
    )
    (first, first_reply), (second, second_reply) = await asyncio.gather(
        *(ask_scores(client, messages, retries=retries) for messages in orders)
    )
    teacher_scores = (first[0] if first else None, second[1] if second else None)
    student_scores = (first[1] if first else None, second[0] if second else None)
    failures = [
        _failure(order, retries, last)
        for order, (scores, last) in enumerate(((first, first_reply), (second, second_reply)), start=1)
        if scores is None
    ]
    return make_judgement(item_id, teacher_scores, student_scores, tau, "; ".join(failures) or None)


async def judge_all(
    client: ChatClient,
    items: Sequence[tuple[str, str, str, str]],
    *,
    tau: float,
    retries: int,
    on_done: Callable[[int], None] | None = None,
    skip_identical: bool = False,
) -> list[Judgement]:
    """Judgements of (id, instruction, teacher_answer, student_answer) items, concurrently, in input order.

    `on_done(n)` is called with the number of items judged so far after each one finishes;
    `skip_identical`: see `judge`.
    """
    done = 0

    async def one(item: tuple[str, str, str, str]) -> Judgement:
        nonlocal done
        item_id, instruction, teacher_answer, student_answer = item
        result = await judge(
            client,
            item_id,
            instruction,
            teacher_answer,
            student_answer,
            tau=tau,
            retries=retries,
            skip_identical=skip_identical,
        )
        done += 1
        if on_done is not None:
            on_done(done)
        return result

    return list(await asyncio.gather(*(one(item) for item in items)))
