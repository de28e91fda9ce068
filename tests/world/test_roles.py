"""lion_core/world/roles.py: the three roles (and the reviewer) read from the prompt and answered."""

from __future__ import annotations

from random import Random

import pytest

from lion_core import prompts
from lion_core.evaluation.protocols import parse_review_scores, review_messages
from lion_core.world import families as fam
from lion_core.world.roles import CORRECT_SCORE, RoleSettings, classify, generator_reply, referee_reply, reply


def test_roles_are_read_from_the_prompt() -> None:
    assert classify(prompts.teacher_messages("Reverse abc")) == "teacher"
    assert classify(prompts.referee_messages("Reverse abc", "cba", "abc")) == "referee"
    assert classify(prompts.generator_messages("hard", "Reverse abc")) == "generator"
    assert classify(prompts.generator_messages("easy", "Reverse abc")) == "generator"
    assert classify([{"role": "user", "content": "Hello there"}]) == "teacher"


@pytest.mark.parametrize(("category", "first_line"), [("writing", True), ("coding", True), ("math", False)])
def test_the_world_reviews_in_the_vicuna_contract(category: str, first_line: bool) -> None:
    messages = review_messages("Reverse abc", "cba", "abd", category)
    assert classify(messages) == "reviewer"
    role, text = reply(messages, Random(0), RoleSettings())
    assert role == "reviewer"
    correct, wrong = parse_review_scores(text)
    assert correct == CORRECT_SCORE and wrong < correct
    pair_on_first_line = text.splitlines()[0] == f"{correct:.0f} {wrong:g}"
    assert pair_on_first_line == first_line  # math: the Python tuple closes the review instead
    assert text.splitlines()[-1] == f"({correct:.0f}, {wrong:g})" or first_line


def test_generator_keeps_family_and_level_for_hard_and_draws_any_level_of_the_family_for_easy() -> None:
    clean = RoleSettings(near_duplicate_share=0.0, malformed_share=0.0)
    rng = Random(0)
    easy_levels = set()
    for _ in range(60):
        hard = generator_reply(prompts.generator_messages("hard", "Reverse abcd"), rng, clean)
        easy = generator_reply(prompts.generator_messages("easy", "Reverse abcd"), rng, clean)
        assert fam.identify(hard)[0].name == "reverse" and fam.level_of(hard) == 1
        assert fam.identify(easy)[0].name == "reverse"
        easy_levels.add(fam.level_of(easy))
    assert easy_levels == {1, 2, 3}  # "same domain, rarer": the family's whole range, not one level up


def test_generator_makes_near_duplicates_and_malformed_replies() -> None:
    rng = Random(1)
    given = "Reverse abcd"
    replies = [
        generator_reply(prompts.generator_messages("hard", given), rng, RoleSettings()) for _ in range(400)
    ]
    parsed = [r for r in replies if fam.identify(r)]
    assert len(parsed) > 300
    assert any(r.lower().rstrip(".") == given.lower() for r in replies)
    assert any(fam.identify(r) is None for r in replies)


def test_referee_scores_follow_correctness_and_bias() -> None:
    messages = prompts.referee_messages("Reverse abcd", "dcba", "abcd")
    fair = referee_reply(messages, Random(0), RoleSettings())
    assert "Score of the Assistant 1: 9" in fair
    biased = referee_reply(messages, Random(0), RoleSettings(referee_bias=1.0))
    assert "Score of the Assistant 1: 10" in biased
