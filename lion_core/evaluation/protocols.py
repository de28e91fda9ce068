"""Evaluation of a candidate against a reference under a judge model, two protocols.

Both give the relative score of the Lion paper (§4): 100 × Σ candidate / Σ reference over the scorable
questions, overall and per category, each question judged in both orders so that the judge's
position bias cancels. An unscorable verdict is counted, never averaged in.

- ``vicuna`` — the paper's protocol, FastChat's GPT-4 review (``fastchat/eval/eval_gpt_review.py``):
  the judge at temperature 0.2, one prompt per kind of question (general, coding, math: chosen by the
  question's category as FastChat's reviewer table does), the reply's first line "score1 score2"
  (math: a Python tuple of the two scores). Read by `parse_review_scores`. The reference answers are
  made as FastChat's ChatGPT baseline made them (`reference_answers`: the bare question, "You are a
  helpful assistant.", T 1.0), by the teacher's endpoint.
- ``lion`` — the referee's request and reply (`lion_core.method.referee`): the reference takes the teacher's
  slot, the candidate the student's.

Exact match on the offline world's held-out tasks lives in `lion_core.world.evaluation`.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from lion_core import data as packaged_data
from lion_core import prompts
from lion_core.chat import ChatClient, Messages, complete_all
from lion_core.config import EndpointConfig, EvalConfig, LionConfig
from lion_core.method import referee
from lion_core.method.discrimination import make_judgement
from lion_core.records import Instruction, Judgement, Response, read_instructions

PROTOCOLS: tuple[str, ...] = get_args(EvalConfig.model_fields["protocol"].annotation)
DEFAULT_PROTOCOL: str = EvalConfig.model_fields["protocol"].default
UNCATEGORIZED = "uncategorized"
JUDGE_TAU = 0.0  # the hard/easy label is meaningless in evaluation; only the scores are used
PERCENT = 100.0


@dataclass(frozen=True)
class RelativeScore:
    """Candidate vs reference under a judge: 100 × sum(candidate) / sum(reference), scorable items only."""

    overall: float
    per_category: dict[str, float]
    questions: int
    unscorable: int
    candidate_total: float
    reference_total: float
    per_category_questions: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


Winner = Literal["reference", "candidate", "tie", "unscorable"]


class Verdict(BaseModel):
    """One evaluation question as written to RUN/eval/<candidate>/judgements.jsonl: the two-order
    scores of the reference and the candidate and who won (not the loop's hard/easy training label)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    category: str | None = Field(description="The question's category (None when the file has none).")
    reference_scores: list[float | None] = Field(description="Reference's score in order 1 and order 2.")
    candidate_scores: list[float | None] = Field(description="Candidate's score in order 1 and order 2.")
    reference_score: float | None = Field(description="Mean of reference_scores; None if unscorable.")
    candidate_score: float | None = Field(description="Mean of candidate_scores; None if unscorable.")
    gap: float | None = Field(description="reference_score − candidate_score; None if unscorable.")
    winner: Winner
    reason: str | None = Field(None, description="Why the question is unscorable.")


def verdict(judgement: Judgement, category: str | None) -> Verdict:
    """A judgement (reference in the teacher's slot, candidate in the student's) as an evaluation verdict."""
    gap = judgement.gap
    if gap is None:
        winner: Winner = "unscorable"
    else:
        winner = "reference" if gap > 0 else "candidate" if gap < 0 else "tie"
    return Verdict(
        id=judgement.id,
        category=category,
        reference_scores=judgement.teacher_scores,
        candidate_scores=judgement.student_scores,
        reference_score=judgement.teacher_score,
        candidate_score=judgement.student_score,
        gap=gap,
        winner=winner,
        reason=judgement.reason,
    )


def _ratio(candidate: float, reference: float) -> float:
    return PERCENT * candidate / reference if reference else 0.0


def relative_score(judgements: Sequence[Judgement], categories: Mapping[str, str | None]) -> RelativeScore:
    """The paper's relative score from two-order judgements (reference in the teacher's slot)."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    counts: dict[str, int] = defaultdict(int)
    scorable = [j for j in judgements if j.student_score is not None and j.teacher_score is not None]
    for j in scorable:
        category = categories.get(j.id) or UNCATEGORIZED
        sums[category][0] += j.student_score  # type: ignore[operator]
        sums[category][1] += j.teacher_score  # type: ignore[operator]
        counts[category] += 1
    candidate = sum(s[0] for s in sums.values())
    reference = sum(s[1] for s in sums.values())
    return RelativeScore(
        overall=_ratio(candidate, reference),
        per_category={c: _ratio(*sums[c]) for c in sorted(sums)},
        questions=len(judgements),
        unscorable=len(judgements) - len(scorable),
        candidate_total=candidate,
        reference_total=reference,
        per_category_questions=dict(sorted(counts.items())),
    )


async def judge_answers(
    judge: ChatClient,
    questions: Sequence[Instruction],
    candidate: Sequence[Response],
    reference: Sequence[Response],
    *,
    retries: int,
    on_done: Callable[[int], None] | None = None,
) -> list[Judgement]:
    """Two-order judgements of candidate vs reference answers (the paper's GPT-4 protocol)."""
    items = [(q.id, q.text, r.output, c.output) for q, c, r in zip(questions, candidate, reference)]
    return await referee.judge_all(judge, items, tau=JUDGE_TAU, retries=retries, on_done=on_done)


# ----------------------------------------------------------------------------- the vicuna protocol

# FastChat's reviewer table (eval/table/reviewer.jsonl) runs every reviewer at temperature 0.2.
REVIEW_TEMPERATURE = 0.2
# Which prompt reviews a question, by its category (FastChat: "coding" and "math"; anything else general).
REVIEW_PROMPTS = {"coding": "review_coding", "math": "review_math"}
GENERAL_REVIEW = "review_general"
# The prompts ask for 1–10. A 0 is read too: GPT-4 gives it to a missing answer ("0 9" in FastChat's own
# reviews), and refusing it would drop exactly the questions a candidate failed from the sums.
REVIEW_MIN, REVIEW_MAX = 0.0, 10.0
# Characters of an unreadable review quoted in the unscorable item's reason.
REVIEW_PREVIEW_CHARS = 80

Pair = tuple[float, float]

# One score: a number, optionally "/10" or "out of 10" (the only scale the prompts ask for).
_SCORE = r"(\d+(?:\.\d+)?)(?:[ \t]*/[ \t]*10(?:\.0+)?\b|[ \t]+out[ \t]+of[ \t]+10\b)?"
# Markdown decoration a reviewer puts around a line: bold, italics, code ticks, quotes.
_DECORATION = "*_`> \t"
# The first line of the contract: two scores separated by spaces, a comma or a semicolon, optionally
# bracketed as a tuple or list and closed by a full stop.
_PAIR_LINE = re.compile(rf"[(\[]?[ \t]*{_SCORE}[ \t]*(?:[,;][ \t]*|[ \t]+){_SCORE}[ \t]*[)\]]?\.?")
# What may follow a score on its line: nothing, a bracketed remark, a dash or colon and a remark, a stop.
_SCORE_END = r"[ \t*_]*(?:$|\(|[-–—:][ \t]|\.[ \t]*$)"
# A labelled score that starts a line: "Assistant 1: 8/10", "Score for Assistant 2: 7 (reason)",
# "- **Assistant 1's score:** 9 - reason". After the score only the end of the line, a bracketed
# remark, a dash or a colon with a remark, or a full stop may follow — "Assistant 1: 3 steps" is no score.
_LABELLED = re.compile(
    rf"^[ \t>*_#\-•]*(?:score[ \t]+(?:of|for)[ \t]+(?:the[ \t]+)?)?assistant[ \t]*([12])(?!\d)"
    rf"(?:['’]s[ \t]+score)?[ \t*_]*:[ \t*_]*{_SCORE}{_SCORE_END}",
    re.IGNORECASE | re.MULTILINE,
)
# An assistant's heading alone on its line ("Assistant 1:"), its score on the next ("Score: 6/10").
_HEADING = re.compile(r"[ \t>*_#\-•]*assistant[ \t]*([12])[ \t*_]*:?[ \t*_]*", re.IGNORECASE)
_SCORE_LINE = re.compile(rf"[ \t>*_\-•]*score[ \t*_]*:[ \t*_]*{_SCORE}{_SCORE_END}", re.IGNORECASE)
# The math prompt's Python tuple of two scores ("(7, 3)").
_TUPLE = re.compile(rf"\([ \t]*{_SCORE}[ \t]*,[ \t]*{_SCORE}[ \t]*\)")
# A tuple counts when it is alone on its line, or when its line says it holds the scores or the output
# ("The output tuple is (10, 4).", "the scores are (1, 5) for Assistant 1 and Assistant 2");
# a point such as "(10, 4)" in the working is neither.
_TUPLE_CONTEXT = re.compile(r"\b(?:tuple|output|scores?)\b", re.IGNORECASE)
_ANY_TUPLE = re.compile(r"\([^()\n]*,[^()\n]*\)")


# The reference answers of the vicuna protocol, as FastChat's ChatGPT baseline made them
# (fastchat/eval/qa_baseline_gpt35.py): this system prompt, the bare question as the user's turn, no
# temperature sent (the API's default, 1.0) and --max-tokens 1024.
REFERENCE_SYSTEM = "You are a helpful assistant."
REFERENCE_TEMPERATURE = 1.0
REFERENCE_TOP_P = 1.0
REFERENCE_MAX_TOKENS = 1024


def resolve_protocol(config: LionConfig, protocol: str | None) -> str:
    """The protocol asked for (the --protocol flag), else the config's `evaluation.protocol`."""
    return protocol or config.evaluation.protocol


def reference_endpoint(teacher: EndpointConfig) -> EndpointConfig:
    """The teacher's endpoint at the decoding of FastChat's ChatGPT baseline, whatever the config says."""
    return teacher.model_copy(
        update={
            "temperature": REFERENCE_TEMPERATURE,
            "top_p": REFERENCE_TOP_P,
            "max_tokens": REFERENCE_MAX_TOKENS,
        }
    )


def reference_messages(question: str) -> Messages:
    """FastChat's baseline request for one question: its system prompt and the bare question."""
    return [{"role": "system", "content": REFERENCE_SYSTEM}, {"role": "user", "content": question}]


async def reference_answers(
    client: ChatClient, items: Sequence[Instruction], on_done: Callable[[int], None] | None = None
) -> list[Response]:
    """The vicuna protocol's reference answers (FastChat's ChatGPT baseline), in input order."""
    replies = await complete_all(client, [reference_messages(q.text) for q in items], on_done=on_done)
    return [
        Response(
            id=q.id,
            instruction=q.instruction,
            input=q.input,
            output=r.content.strip(),
            model=client.model_name,
            finish_reason=r.finish_reason,
        )
        for q, r in zip(items, replies)
    ]


def review_prompt(category: str | None) -> str:
    """The review prompt's template name for a question category (FastChat's reviewer choice)."""
    return REVIEW_PROMPTS.get((category or "").strip().lower(), GENERAL_REVIEW)


def review_messages(question: str, answer_1: str, answer_2: str, category: str | None) -> Messages:
    """The judge's request for one order: system prompt + the category's review prompt."""
    user = prompts.render(review_prompt(category), question=question, answer_1=answer_1, answer_2=answer_2)
    return [
        {"role": "system", "content": prompts.template("review_system").strip()},
        {"role": "user", "content": user.rstrip()},
    ]


def _pair(first: str, second: str) -> Pair | None:
    """Two scores on the 1–10 scale, or None if either is off it."""
    scores = (float(first), float(second))
    return scores if all(REVIEW_MIN <= s <= REVIEW_MAX for s in scores) else None


def _first_line_pair(lines: list[str]) -> list[Pair | None]:
    """The contract: the first non-blank line holds the two scores and nothing else."""
    first = next((line.strip(_DECORATION) for line in lines if line.strip(_DECORATION)), "")
    match = _PAIR_LINE.fullmatch(first)
    return [_pair(match[1], match[2])] if match else []


def _labelled_scores(lines: list[str]) -> dict[str, set[str]]:
    """Per assistant, every score given on a labelled line or under the assistant's heading."""
    values: dict[str, set[str]] = {"1": set(), "2": set()}
    for match in _LABELLED.finditer("\n".join(lines)):
        values[match[1]].add(str(float(match[2])))
    filled = [line for line in lines if line.strip()]
    for heading, below in itertools.pairwise(filled):
        if (head := _HEADING.fullmatch(heading)) and (score := _SCORE_LINE.match(below)):
            values[head[1]].add(str(float(score[1])))
    return values


def _labelled_pair(lines: list[str]) -> list[Pair | None]:
    """The labelled scores' pair (None when an assistant is given two different scores)."""
    values = _labelled_scores(lines)
    if any(len(v) > 1 for v in values.values()):
        return [None]
    if not all(values.values()):
        return []
    return [_pair(values["1"].pop(), values["2"].pop())]


def _tuple_pairs(lines: list[str]) -> list[Pair | None]:
    """Every score tuple the reply states (the math prompt's contract)."""
    found: list[Pair | None] = []
    for line in lines:
        match = _TUPLE.search(line)
        if match is None or len(_ANY_TUPLE.findall(line)) != 1:
            continue
        bare = line.strip(_DECORATION + ".").removeprefix("Output:").strip(_DECORATION)
        if _TUPLE.fullmatch(bare) or _TUPLE_CONTEXT.search(line[: match.start()]):
            found.append(_pair(match[1], match[2]))
    return found


def parse_review_scores(text: str) -> Pair | None:
    """(Assistant 1's score, Assistant 2's score) from a FastChat-style review, or None — never a guess.

    Reads the forms FastChat's GPT-4 and GPT-3.5 reviews use (tests/data/fastchat_reviews.jsonl):
    - the contract: the first non-blank line is the two scores — "8 9", "8.5 9", "8, 9", "8/10 9/10",
      "(8, 9)", in markdown bold or not, after blank lines or spaces;
    - labelled lines: "Assistant 1: 8/10" and "Assistant 2: 9 (reason)", "Score for Assistant 1: 8", or
      a heading "Assistant 1:" with "Score: 8/10" on the next line;
    - the math prompt's Python tuple: "(10, 4)" alone on its line, or on a line that says it gives the
      scores, the output or the tuple.
    Every score is on the 0–10 scale (the prompts ask for 1–10; a reviewer gives 0 to a missing
    answer). The answer is None when no form is found, when the forms found disagree, when an
    assistant is given two different labelled scores, or when a form is off the scale. Scores written
    only in prose ("I would give Assistant 1 a score of 8") are not read.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    readings = {*_first_line_pair(lines), *_labelled_pair(lines), *_tuple_pairs(lines)}
    if len(readings) != 1:
        return None
    return readings.pop()


async def _review_order(client: ChatClient, messages: Messages) -> tuple[Pair | None, str]:
    """One order's review: the parsed scores (None if unreadable) and the reply."""
    content = (await client.complete(messages)).content
    return parse_review_scores(content), content


async def review(
    client: ChatClient, item_id: str, question: str, category: str | None, reference: str, candidate: str
) -> Judgement:
    """The two-order review of one question (order 1: reference as Assistant 1; order 2: swapped).

    The reference takes the judgement's teacher slot, the candidate the student's. An order whose
    review cannot be read leaves the question unscorable, the review's start quoted in the reason.
    """
    orders = (
        review_messages(question, reference, candidate, category),
        review_messages(question, candidate, reference, category),
    )
    (first, first_reply), (second, second_reply) = await asyncio.gather(
        *(_review_order(client, messages) for messages in orders)
    )
    failures = [
        f"order {order}: no score pair in the review: {reply[:REVIEW_PREVIEW_CHARS]!r}"
        for order, (scores, reply) in enumerate(((first, first_reply), (second, second_reply)), start=1)
        if scores is None
    ]
    reference_scores = (first[0] if first else None, second[1] if second else None)
    candidate_scores = (first[1] if first else None, second[0] if second else None)
    return make_judgement(item_id, reference_scores, candidate_scores, JUDGE_TAU, "; ".join(failures) or None)


ReviewItem = tuple[str, str, str | None, str, str]  # id, question, category, reference, candidate


async def review_all(client: ChatClient, items: Sequence[ReviewItem]) -> list[Judgement]:
    """Two-order reviews of (id, question, category, reference answer, candidate answer), in order."""
    return list(await asyncio.gather(*(review(client, *item) for item in items)))


def check_inputs(
    config: LionConfig,
    candidate: str,
    questions: str | None,
    world: int,
    harness: str | None,
    protocol: str | None = None,
) -> None:
    """Raise ValueError (one line) for an evaluation that cannot run, before any work starts."""
    protocol = resolve_protocol(config, protocol)
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if not (questions or world or harness):
        raise ValueError(
            "nothing to evaluate: give --questions (or evaluation.questions), --world, --harness"
        )
    is_checkpoint = Path(candidate).is_dir()
    if not is_checkpoint and not candidate.startswith(("http://", "https://")):
        raise ValueError(
            f"--candidate {candidate!r} is neither a checkpoint directory nor an http(s) endpoint"
        )
    if questions and config.evaluation.judge is None:
        raise ValueError(
            "evaluation.judge is not set in the config: the judge protocol needs a judge endpoint"
        )
    heldout = config.evaluation.heldout_path
    if world and heldout is not None and not Path(heldout).is_file():
        raise ValueError(f"evaluation.heldout_path: {heldout}: no such file")
    if harness and not is_checkpoint:
        raise ValueError("--harness runs on a local checkpoint, not on an endpoint")
    if questions:
        # a RecordError (a ValueError) names file, line and field
        read_instructions(Path(str(packaged_data.resolve(questions))))
