"""lion_core/method/generation.py: the original's post-filters, the hard/easy split of requests, parents
used before repeating, and generation against the world (filtered, lineage kept)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from random import Random

import pytest

from lion_core.api.cache import ResponseCache
from lion_core.api.ledger import Ledger
from lion_core.chat import Completion
from lion_core.config import LionConfig, LoopConfig
from lion_core.method.direct import build_roles
from lion_core.method.generation import asker, generate, plan, postfilter, split_counts
from lion_core.method.novelty import NoveltyIndex, max_rouge_l
from lion_core.method.pools import sample
from lion_core.world.families import identify
from lion_core.world.server import WorldServer
from tests.support.world import world_instructions


@pytest.mark.parametrize(
    ("content", "finish", "reason"),
    [
        ("Reverse the word banana for me", "stop", None),
        ("Reverse the word banana for me", "length", "cut by the length limit"),
        ("   ", "stop", "empty"),
        ("Reverse banana now", "stop", "3 words or fewer"),
        ("...and reverse banana please", "stop", "starts with punctuation"),
        ("¿Puedes invertir la palabra?", "stop", "starts with a non-ASCII character"),
        ("#Created Instruction#: reverse banana please", "stop", "contains 'instruction'"),
        ("Here is the created instruction: reverse banana", "stop", "contains 'instruction'"),
        ("Write an INSTRUCTION manual for a toaster", "stop", "contains 'instruction'"),
    ],
)
def test_postfilter_applies_the_original_rules(content: str, finish: str, reason: str | None) -> None:
    assert postfilter(Completion(content, finish, 1, 1), min_words=3) == reason


def test_split_counts_follow_the_ratio_and_fill_a_missing_side() -> None:
    assert split_counts(10, 1.0, 5, 5)[:2] == (5, 5)
    assert split_counts(9, 2.0, 5, 5)[:2] == (6, 3)
    assert [split_counts(n, 1.0, 5, 5)[:2] for n in (1, 3, 5)] == [(1, 0), (2, 1), (3, 2)]  # halves round up
    hard, easy, notes = split_counts(10, 1.0, 0, 4)
    assert (hard, easy) == (0, 10) and "no hard instructions" in notes[0]
    hard, easy, notes = split_counts(10, 1.0, 4, 0)
    assert (hard, easy) == (10, 0) and "no easy instructions" in notes[0]


def test_plan_uses_every_parent_before_repeating_and_makes_distinct_variants() -> None:
    hard, easy = world_instructions(3, "h"), world_instructions(4, "e")
    requests = plan(hard, easy, 7, 4, Random(0), "1:0", parent_sampling="cover")
    hard_parents = [r.parent.id for r in requests if r.mode == "hard"]
    assert sorted(hard_parents[:3]) == sorted(i.id for i in hard)
    assert len(hard_parents) == 7 and len([r for r in requests if r.mode == "easy"]) == 4
    assert len({r.variant for r in requests}) == len(requests)
    assert sample([], 3, Random(0)) == []


def test_generation_against_the_world_filters_and_keeps_lineage(world: WorldServer, tmp_path: Path) -> None:
    config = LionConfig(
        teacher={"base_url": world.url},
        referee={"base_url": world.url},
        generator={"base_url": world.url, "temperature": 1.0},
    )
    roles = build_roles(config, Ledger(), ResponseCache(tmp_path / "c.sqlite"))
    pool = world_instructions(60)
    index = NoveltyIndex(0.7, texts=[i.text for i in pool])
    result = asyncio.run(
        generate(
            asker(roles.generator),
            pool[:30],
            pool[30:],
            index,
            # as the original: until n are kept (no round limit; bounded by the default patience)
            LoopConfig(new_per_iteration=80, min_words=1, seed=0),
            iteration=1,
        )
    )
    assert len(result.kept) == 80
    assert sum(i.origin == "hard" for i in result.kept) == 40
    assert result.novelty_rejections > 0 and sum(result.postfilter_rejections.values()) > 0
    parents = {i.id: i for i in pool}
    # "Here it is." is a malformed world reply of 3 words: min_words=1 (short world commands) lets it pass
    assert {n.instruction for n in result.kept if identify(n.instruction) is None} <= {"Here it is."}
    for new in result.kept:
        if identify(new.instruction) is not None:
            assert identify(new.instruction)[0].name == identify(parents[new.parent_id].instruction)[0].name
        assert (new.origin == "hard") == (new.parent_id in {i.id for i in pool[:30]})
    texts = [i.text for i in result.kept]
    assert max(max_rouge_l(texts, [i.text for i in pool])) < 0.7
    assert all(score < 0.7 for k, t in enumerate(texts) for score in max_rouge_l([t], texts[:k] or [""]))
