"""lion_core/evaluation/protocols.py: relative-score maths, two-order judging that cancels a judge's
position bias, FastChat's review format read as FastChat's reviews write it, verdicts that name the
winner."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from lion_core import prompts
from lion_core.chat import Completion
from lion_core.config import LionConfig
from lion_core.evaluation.protocols import (
    DEFAULT_PROTOCOL,
    JUDGE_TAU,
    PROTOCOLS,
    judge_answers,
    parse_review_scores,
    reference_answers,
    reference_endpoint,
    relative_score,
    resolve_protocol,
    review_all,
    review_messages,
    verdict,
)
from lion_core.method.discrimination import make_judgement
from lion_core.records import Instruction, Response
from tests.support.fakes import RecordingClient
from tests.support.paths import TEST_DATA


def test_relative_score_is_a_ratio_of_sums_per_category() -> None:
    judgements = [
        make_judgement("a", (8, 8), (4, 4), tau=0),  # reference 8, candidate 4
        make_judgement("b", (10, 10), (10, 10), tau=0),
        make_judgement("c", (6, 6), (3, 3), tau=0),
        make_judgement("d", (9, None), (2, None), tau=0, reason="order 2: no scores"),
    ]
    score = relative_score(judgements, {"a": "writing", "b": "writing", "c": "math", "d": "math"})
    assert score.overall == pytest.approx(100 * (4 + 10 + 3) / (8 + 10 + 6))
    assert score.per_category == pytest.approx({"math": 50.0, "writing": 100 * 14 / 18})
    assert (score.questions, score.unscorable) == (4, 1)
    assert score.per_category_questions == {"math": 1, "writing": 2}


class BiasedJudge:
    """A judge that prefers whoever is shown first by 2 points; true scores: reference 8, candidate 5."""

    role, model_name = "judge", "fake-judge"

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def complete(self, messages, *, variant: int = 0) -> Completion:
        parsed = prompts.parse_rendered("referee", messages[-1]["content"])
        self.requests.append(parsed["answer_1"])
        first_is_reference = parsed["answer_1"] == "reference answer"
        one, two = (8 + 2, 5) if first_is_reference else (5 + 2, 8)
        text = f"Some explanation.\nScore of the Assistant 1: {one}\nScore of the Assistant 2: {two}"
        return Completion(text, "stop", 10, 10)


def test_two_order_judging_cancels_the_judges_position_bias() -> None:
    questions = [Instruction(id=f"q{i}", instruction=f"Question {i}?", category="generic") for i in range(3)]
    reference = [
        Response(id=q.id, instruction=q.instruction, output="reference answer", model="t") for q in questions
    ]
    candidate = [
        Response(id=q.id, instruction=q.instruction, output="candidate answer", model="s") for q in questions
    ]
    judge = BiasedJudge()
    judgements = asyncio.run(judge_answers(judge, questions, candidate, reference, retries=0))
    assert len(judge.requests) == 6  # every question in both orders
    assert all(
        j.teacher_score == 9.0 and j.student_score == 6.0 for j in judgements
    )  # bias cancels: 8+1, 5+1
    score = relative_score(judgements, {q.id: q.category for q in questions})
    assert score.overall == pytest.approx(100 * 6 / 9)
    first_order_only = 100 * 5 / 10
    assert score.overall != pytest.approx(first_order_only)


FASTCHAT_REVIEWS = TEST_DATA / "fastchat_reviews.jsonl"


@pytest.mark.parametrize(
    ("review", "scores"),
    [
        ("8 9\nBoth answers are good.", (8.0, 9.0)),
        ("9 8.5\nAssistant 1 was more detailed.", (9.0, 8.5)),
        ("\n\n  7 6  \nLeading blank lines and spaces.", (7.0, 6.0)),
        ("8, 9\nA comma between the scores.", (8.0, 9.0)),
        ("8/10 9/10\nScores with their scale.", (8.0, 9.0)),
        ("**(7, 3)**\nA bold tuple on the first line.", (7.0, 3.0)),
        ("0 9\nAssistant 1 gave no answer.", (0.0, 9.0)),
        ("My evaluation:\n\nAssistant 1: 9/10\nAssistant 2: 7 (no comments)\n", (9.0, 7.0)),
        ("Scores:\nScore for Assistant 1: 3/10\nScore for Assistant 2: 9/10", (3.0, 9.0)),
        ("Assistant 1:\nScore: 6/10\n\nStrengths: ...\n\nAssistant 2:\nScore: 8/10\n", (6.0, 8.0)),
        ("The points (2, -2) and (10, 4) give d = 10.\nAssistant 2 is right.\n(1, 10)", (1.0, 10.0)),
        ("Working with the point (10, 4).\nThe output tuple is (10, 1).", (10.0, 1.0)),
    ],
)
def test_review_scores_are_read_as_fastchat_reviews_write_them(review: str, scores: tuple) -> None:
    assert parse_review_scores(review) == scores


@pytest.mark.parametrize(
    "review",
    [
        "",
        "Both answers are fine.",
        "8\nOnly one score.",
        "7-8 9\nA range is not a score.",
        "8,5 9\nA decimal comma leaves three numbers.",
        "11 9\nOff the scale.",
        "8 9\n(3, 4)\nThe first line and the tuple disagree.",
        "Assistant 1: 8\nAssistant 2: 6\nAssistant 1: 7\nTwo scores for Assistant 1.",
        "Assistant 1: 3 steps are shown.\nAssistant 2: 2 steps are shown.",
        "The endpoints are (2, 5) and (10, 4).",
        "I would give Assistant 1 a score of 8 and Assistant 2 a score of 6.",
        "Score: 6/10\nScore: 8/10",
    ],
)
def test_a_review_without_one_clear_pair_is_unreadable(review: str) -> None:
    assert parse_review_scores(review) is None


def fastchat_reviews() -> list[dict]:
    return [json.loads(line) for line in FASTCHAT_REVIEWS.read_text(encoding="utf-8").splitlines()]


# A sentence, not a score line: at least this many words.
SENTENCE_WORDS = 8


def prose_lines_with_scores(review: dict) -> list[str]:
    """Lines of a review that name an assistant and its recorded score inside a sentence."""
    pattern = r"\b(?:{}|{})\b".format(*review["score"])
    return [
        line
        for line in review["text"].splitlines()
        if "assistant" in line.lower() and re.search(pattern, line) and len(line.split()) >= SENTENCE_WORDS
    ]


# FastChat's hand-fixed `score` differs from what the review says in these reviews; the parser reads
# the text ("Assistant 2: 4", not the recorded 2).
FASTCHAT_RECORD_ERRORS = 3


def test_the_parser_reads_real_fastchat_reviews() -> None:
    """1,440 real GPT-4 and GPT-3.5 reviews from FastChat (tests/data/README.md): every GPT-4 review is
    read; the unread ones state no scores or state them only in prose; a read value is what the
    review says, which is FastChat's own recorded score except where that record was fixed by hand wrongly.
    """
    reviews = fastchat_reviews()
    parsed = [(r, parse_review_scores(r["text"])) for r in reviews]
    unread = [r for r, p in parsed if p is None]
    assert len(reviews) == 1440
    assert len(reviews) - len(unread) == 1420
    assert all(r["judge"] == "gpt-3.5-turbo" for r in unread)
    refused = [r for r in unread if r["score"] == [-1, -1]]  # FastChat too found no score in these
    assert len(refused) == 2
    in_prose = [r for r in unread if r not in refused and prose_lines_with_scores(r)]
    assert len(in_prose) == len(unread) - len(refused) == 18
    differ = [(r, p) for r, p in parsed if p is not None and list(p) != [float(s) for s in r["score"]]]
    assert len(differ) == FASTCHAT_RECORD_ERRORS
    for review, pair in differ:
        assert f"Assistant 2: {pair[1]:.0f}" in review["text"]


def test_fastchat_recorded_no_score_where_the_parser_reads_none() -> None:
    refused = [r for r in fastchat_reviews() if r["score"] == [-1, -1]]
    assert len(refused) == 2
    assert all(parse_review_scores(r["text"]) is None for r in refused)


class ReviewJudge:
    """A FastChat-style judge preferring whoever is shown first by 2; true: reference 8, candidate 5.

    Math questions get the tuple on the last line, others the first-line pair; "broken" gets prose.
    """

    role, model_name = "judge", "fake-judge"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def complete(self, messages, *, variant: int = 0) -> Completion:
        text = messages[-1]["content"]
        name = next(
            n for n in ("review_math", "review_coding", "review_general") if prompts.parse_rendered(n, text)
        )
        self.prompts.append(name)
        fields = prompts.parse_rendered(name, text)
        first_is_reference = fields["answer_1"] == "reference answer"
        one, two = (8 + 2, 5) if first_is_reference else (5 + 2, 8)
        if "broken" in fields["question"]:
            return Completion("I would give the first a score of ten.", "stop", 10, 10)
        reply = f"Working.\n({one}, {two})" if name == "review_math" else f"{one} {two}\nWhy."
        return Completion(reply, "stop", 10, 10)


def test_vicuna_review_picks_the_category_prompt_and_cancels_position_bias() -> None:
    rows = [("g", "What is love?", "generic"), ("c", "Sort a list.", "coding"), ("m", "2+2?", "math")]
    items = [(i, q, c, "reference answer", "candidate answer") for i, q, c in rows]
    items.append(("x", "A broken question", "writing", "reference answer", "candidate answer"))
    judge = ReviewJudge()
    judgements = asyncio.run(review_all(judge, items))
    assert sorted(judge.prompts) == sorted(
        ["review_general"] * 4 + ["review_coding"] * 2 + ["review_math"] * 2
    )
    assert [(j.teacher_score, j.student_score) for j in judgements[:3]] == [(9.0, 6.0)] * 3
    assert judgements[3].label == "unscorable" and "no score pair" in judgements[3].reason
    score = relative_score(judgements, {i: c for i, _, c in rows} | {"x": "writing"})
    assert score.overall == pytest.approx(100 * 6 / 9) and score.unscorable == 1


def test_review_prompts_keep_fastchats_contract() -> None:
    for category, contract in (("writing", "first line"), ("coding", "first line"), ("math", "Python tuple")):
        messages = review_messages("Q?", "one", "two", category)
        assert messages[0]["role"] == "system" and contract in messages[1]["content"]
        assert "[Question]\nQ?" in messages[1]["content"]


def test_an_evaluation_verdict_names_the_winner_not_a_training_label() -> None:
    reference_wins = verdict(make_judgement("q1", (8.0, 7.0), (6.0, 6.0), JUDGE_TAU), "writing")
    assert reference_wins.model_dump() == {
        "id": "q1",
        "category": "writing",
        "reference_scores": [8.0, 7.0],
        "candidate_scores": [6.0, 6.0],
        "reference_score": 7.5,
        "candidate_score": 6.0,
        "gap": 1.5,
        "winner": "reference",
        "reason": None,
    }
    assert verdict(make_judgement("q2", (5.0, 5.0), (5.0, 5.0), JUDGE_TAU), None).winner == "tie"
    candidate = verdict(make_judgement("q3", (4.0, 5.0), (9.0, 8.0), JUDGE_TAU), "math")
    assert (candidate.winner, candidate.gap) == ("candidate", -4.0)
    lost = verdict(make_judgement("q4", (None, 5.0), (7.0, None), JUDGE_TAU, "order 1: no score"), "x")
    assert (lost.winner, lost.gap, lost.reason) == ("unscorable", None, "order 1: no score")


def test_the_protocol_is_the_configs_unless_the_flag_names_one() -> None:
    config = LionConfig()
    assert config.evaluation.protocol == DEFAULT_PROTOCOL == "lion" and set(PROTOCOLS) == {"lion", "vicuna"}
    assert resolve_protocol(config, None) == "lion"
    paper = LionConfig(evaluation={"protocol": "vicuna"})
    assert resolve_protocol(paper, None) == "vicuna" and resolve_protocol(paper, "lion") == "lion"


def test_vicuna_reference_answers_are_made_as_fastchats_chatgpt_baseline() -> None:
    # fastchat/eval/qa_baseline_gpt35.py: system "You are a helpful assistant.", the bare question, the
    # API's default temperature (1.0), --max-tokens 1024 — not Lion's teacher prompt at T 0.7
    fake = RecordingClient(lambda messages: " The answer. ")
    question = Instruction(id="q1", instruction="How can I improve my time management skills?")
    answers = asyncio.run(reference_answers(fake, [question]))
    assert fake.requests[0][0] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "How can I improve my time management skills?"},
    ]
    assert answers[0].output == "The answer." and answers[0].id == "q1"
    teacher = LionConfig().teacher
    assert teacher.temperature == 0.7  # the teacher's own decoding is not the baseline's
    endpoint = reference_endpoint(teacher)
    assert (endpoint.temperature, endpoint.top_p, endpoint.max_tokens) == (1.0, 1.0, 1024)
    assert (endpoint.base_url, endpoint.model) == (teacher.base_url, teacher.model)
