"""lion_core/method/decontamination.py: generated instructions that copy an evaluation question are
rejected and counted."""

from __future__ import annotations

import asyncio

from lion_core import data as packaged_data
from lion_core.chat import Completion
from lion_core.config import LionConfig
from lion_core.method.decontamination import EvalNgrams, words
from lion_core.method.discrimination import Split
from lion_core.method.loop import new_instructions
from lion_core.records import Instruction, read_instructions

VICUNA = packaged_data.path("vicuna_bench_questions.jsonl")
QUESTION = next(q.text for q in read_instructions(VICUNA) if len(q.text.split()) > 25)  # over 13 words


def test_thirteen_shared_words_after_normalisation_contaminate_twelve_do_not() -> None:
    sets = EvalNgrams.of([QUESTION], 13)
    assert sets.contaminated(QUESTION.upper().replace(",", " ,;"), 0.0)  # case, punctuation, spacing
    thirteen = " ".join(words(QUESTION)[:13])
    assert sets.contaminated(f"Please help: {thirteen} thanks", 0.0)
    twelve = " ".join(words(QUESTION)[:12])
    assert not sets.contaminated(f"Please help: {twelve} thanks", 0.0)
    assert not EvalNgrams.of(["Reverse abc"], 13).contaminated("Reverse abcd", 0.0)  # short: whole words
    assert EvalNgrams.of(["Reverse abc"], 13).contaminated("please reverse ABC.", 0.0)


def test_max_overlap_is_the_share_of_the_instructions_ngrams_that_may_be_shared() -> None:
    sets = EvalNgrams.of([QUESTION], 13)
    thirteen = " ".join(words(QUESTION)[:13])
    text = f"{thirteen} " + " ".join(f"w{i}" for i in range(12))  # 13 of its 25 words: 1 of 13 n-grams
    assert sets.overlap(text) == 1 / 13
    assert sets.contaminated(text, 0.0) and not sets.contaminated(text, 0.1)


def config(enabled: bool) -> LionConfig:
    return LionConfig.model_validate(
        {
            "loop": {"new_per_iteration": 2, "min_words": 1, "generation_rounds": 1},
            "decontamination": {"enabled": enabled},
        }
    )


def generate(enabled: bool):
    """One generation round whose replies are a Vicuna-80 question, a near-duplicate and new ones."""
    replies = [
        QUESTION,
        "Count the vowels in banana please",
        "Count the vowels in banana please now",
        "Sort x",
    ]

    async def ask(requests):
        return [Completion(replies[i % len(replies)], "stop", 1, 1) for i in range(len(requests))]

    parents = [Instruction(id=f"p{i}", instruction=f"Parent task number {i}") for i in range(4)]
    split = Split(hard=parents[:2], easy=parents[2:], unscorable=[])
    return asyncio.run(new_instructions(ask, config(enabled), 1, parents, split))


def test_generation_rejects_contaminated_instructions_and_counts_them_apart_from_near_duplicates() -> None:
    on = generate(enabled=True)
    assert QUESTION not in [i.instruction for i in on.kept]
    assert on.stats()["decontamination_rejections"] == 1
    off = generate(enabled=False)  # the original scripts: no check
    assert QUESTION in [i.instruction for i in off.kept]
    assert off.stats()["decontamination_rejections"] == 0
    assert on.novelty_rejections == off.novelty_rejections  # the near-duplicate, in both
