"""How the offline world plays Teacher, Referee and Generator, as pure functions of the request.

The role is read from the prompt: a rendering of the referee template is judged, a rendering of a
generator template gets a new instruction, anything else is answered as the teacher (the oracle).
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

from rapidfuzz.distance import Indel

from lion_core import prompts
from lion_core.world.families import TaskFamily, families, identify, sample_task, solve

# Scores of the world referee: a correct answer gets CORRECT; a wrong one 1 + partial credit.
CORRECT_SCORE = 9.0
PARTIAL_CREDIT = 5.0
UNKNOWN_TASK_SCORE = 5.0
SCORE_RANGE = (1.0, 10.0)
NOT_A_WORLD_TASK = "I can only answer the offline world's task families."


@dataclass(frozen=True)
class RoleSettings:
    """Behaviour knobs of the world's roles (the server's faults are separate)."""

    referee_bias: float = 0.0
    referee_noise: float = 0.0
    near_duplicate_share: float = 0.1
    malformed_share: float = 0.05
    referee_malformed_share: float = 0.0
    max_level: int | None = None  # the generator never goes above this level (None: the family's top)


def user_text(messages: list[dict[str, str]]) -> str:
    """The last user message's content."""
    return next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")


def referee_fields(messages: list[dict[str, str]]) -> dict[str, str] | None:
    """The referee prompt's fields: from the last user message, or from the first one when the last is
    the repair request that follows a reply without scores (`prompts.referee_repair_messages`)."""
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    if not users:
        return None
    if users[-1] == prompts.template("referee_repair").strip():
        return prompts.parse_rendered("referee", users[0])
    return prompts.parse_rendered("referee", users[-1])


# The vicuna protocol's review prompts (`lion_core.evaluation.protocols.review_messages`), one per
# kind of question.
REVIEW_TEMPLATES = ("review_general", "review_coding", "review_math")
# The review prompt that asks for a Python tuple on the last line instead of a first-line pair.
TUPLE_REVIEW = "review_math"


def review_fields(messages: list[dict[str, str]]) -> tuple[str, dict[str, str]] | None:
    """(template name, fields) when the request is a review of the vicuna protocol, else None."""
    text = user_text(messages)
    for name in REVIEW_TEMPLATES:
        parsed = prompts.parse_rendered(name, text)
        if parsed is not None:
            return name, parsed
    return None


def classify(messages: list[dict[str, str]]) -> str:
    """Which role a request asks for: reviewer (the judge of `lion eval --protocol vicuna`), referee,
    generator or teacher."""
    if review_fields(messages) is not None:
        return "reviewer"
    if referee_fields(messages) is not None:
        return "referee"
    text = user_text(messages)
    if any(prompts.parse_rendered(f"generate_{m}", text) is not None for m in ("hard", "easy")):
        return "generator"
    return "teacher"


def _instruction_of_teacher_prompt(text: str) -> str:
    for name in ("teacher_input", "teacher"):
        parsed = prompts.parse_rendered(name, text)
        if parsed is not None:
            return parsed["instruction"]
    return text


def teacher_reply(messages: list[dict[str, str]]) -> str:
    """The oracle's answer to a world instruction."""
    answer = solve(_instruction_of_teacher_prompt(user_text(messages)).strip())
    return answer if answer is not None else NOT_A_WORLD_TASK


def score_answer(answer: str, truth: str | None) -> float:
    """CORRECT_SCORE for an exact answer, else 1 + partial credit by character similarity."""
    if truth is None:
        return UNKNOWN_TASK_SCORE
    answer = answer.strip()
    if answer == truth:
        return CORRECT_SCORE
    return 1.0 + round(PARTIAL_CREDIT * Indel.normalized_similarity(answer, truth), 1)


def _fmt(score: float) -> str:
    return f"{score:.0f}" if score == int(score) else f"{score:.1f}"


def judged_scores(
    parsed: dict[str, str], truth: str | None, rng: Random, settings: RoleSettings
) -> list[float]:
    """Both answers' scores against the truth, with the referee's position bias and noise, in range."""
    scores = []
    for position, key in enumerate(("answer_1", "answer_2")):
        score = score_answer(parsed[key], truth)
        score += settings.referee_bias if position == 0 else 0.0
        score += rng.gauss(0.0, settings.referee_noise) if settings.referee_noise else 0.0
        scores.append(round(min(max(score, SCORE_RANGE[0]), SCORE_RANGE[1]), 1))
    return scores


def referee_reply(messages: list[dict[str, str]], rng: Random, settings: RoleSettings) -> str:
    """A Lion-format verdict: explanation, then the two 'Score of the Assistant k' lines."""
    parsed = referee_fields(messages)
    assert parsed is not None, "referee_reply needs a referee prompt"
    if rng.random() < settings.referee_malformed_share:
        return "Both answers have merits. Overall I find them comparable. Score: N/A"
    truth = solve(parsed["instruction"].strip())
    scores = judged_scores(parsed, truth, rng, settings)
    verdict = "matches" if truth is not None else "cannot be checked against"
    return (
        f"Evaluation evidence: I compared both answers with the expected result, which {verdict} the task. "
        f"Assistant 1 answered {parsed['answer_1'].strip()[:40]!r}; Assistant 2 answered "
        f"{parsed['answer_2'].strip()[:40]!r}.\n"
        f"Score of the Assistant 1: {_fmt(scores[0])}\n"
        f"Score of the Assistant 2: {_fmt(scores[1])}"
    )


def review_reply(messages: list[dict[str, str]], rng: Random, settings: RoleSettings) -> str:
    """A review in its prompt's contract: first line "s1 s2" then the explanation; the math prompt's
    working first and the Python tuple "(s1, s2)" on the last line. Scored like the referee's."""
    found = review_fields(messages)
    assert found is not None, "review_reply needs a review prompt"
    name, parsed = found
    truth = solve(parsed["question"].strip())
    scores = judged_scores(parsed, truth, rng, settings)
    verdict = "matches" if truth is not None else "cannot be checked against"
    explanation = (
        f"I compared both answers with the expected result, which {verdict} the task. "
        f"Assistant 1 answered {parsed['answer_1'].strip()[:40]!r}; Assistant 2 answered "
        f"{parsed['answer_2'].strip()[:40]!r}."
    )
    if name == TUPLE_REVIEW:
        return f"{explanation}\n({_fmt(scores[0])}, {_fmt(scores[1])})"
    return f"{_fmt(scores[0])} {_fmt(scores[1])}\n{explanation}"


MALFORMED_GENERATIONS = (
    "",
    "?",
    "#Created Instruction#: {given}",
    "¿{given}?",
    "Here it is.",
    "... {given}",
)


def generator_level(family: TaskFamily, level: int, mode: str, rng: Random) -> int:
    """The level of a new instruction: the parent's (hard prompt: same domain and task type, similar
    difficulty), or any level of the family (easy prompt: same domain, rarer — the long tail of the
    family, not a harder task), drawn uniformly."""
    return level if mode == "hard" else rng.randint(1, family.max_level)


def generator_reply(messages: list[dict[str, str]], rng: Random, settings: RoleSettings) -> str:
    """A new instruction of the parent's family: at its level (hard prompt) or at any of the family's
    levels (easy prompt: "same domain, rarer", as the paper's prompt asks — not one level up).

    A share of replies are near-duplicates of the given instruction or malformed, so that the
    post-filters and the novelty filter have real work.
    """
    text = user_text(messages)
    mode = "easy" if prompts.parse_rendered("generate_easy", text) is not None else "hard"
    parsed = prompts.parse_rendered(f"generate_{mode}", text)
    assert parsed is not None, "generator_reply needs a generator prompt"
    given = parsed["instruction"].strip()
    draw = rng.random()
    if draw < settings.malformed_share:
        return rng.choice(MALFORMED_GENERATIONS).format(given=given)
    if draw < settings.malformed_share + settings.near_duplicate_share:
        return given.upper() if rng.random() < 0.5 else f"{given}."
    found = identify(given)
    if found is None:
        return sample_task(rng.choice(families()), rng, 1).instruction
    family, slots, _ = found
    level = generator_level(family, family.level_of(slots), mode, rng)
    if settings.max_level is not None:
        level = min(level, settings.max_level)
    return sample_task(family, rng, level).instruction


def reply(messages: list[dict[str, str]], rng: Random, settings: RoleSettings) -> tuple[str, str]:
    """(role, content) for any chat request."""
    role = classify(messages)
    if role == "reviewer":
        return role, review_reply(messages, rng, settings)
    if role == "referee":
        return role, referee_reply(messages, rng, settings)
    if role == "generator":
        return role, generator_reply(messages, rng, settings)
    return role, teacher_reply(messages)
