"""Discrimination, generation and pools, and one whole iteration as plain Python against the world."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from random import Random

import pytest

from lion_core.api.cache import ResponseCache
from lion_core.api.ledger import Ledger
from lion_core.chat import Completion
from lion_core.config import LionConfig, LoopConfig, StudentConfig
from lion_core.method import teacher
from lion_core.method.direct import build_roles, direct_effects
from lion_core.method.discrimination import Split, make_judgement, order_disagreement, split
from lion_core.method.generation import (
    GenerationRequest,
    GenerationResult,
    asker,
    generate,
    plan,
    postfilter,
    split_counts,
)
from lion_core.method.loop import (
    new_instructions,
    run_iteration,
    stop_after_discrimination,
    stop_after_generation,
)
from lion_core.method.novelty import NoveltyIndex, max_rouge_l
from lion_core.method.pools import Pools, initial_pools, next_pools, read_pools, sample, write_pools
from lion_core.method.selection import selection
from lion_core.method.teacher import cut_answers_note
from lion_core.records import Instruction
from lion_core.run.rundir import ITERATION_FILES, RunDir
from lion_core.world.families import identify, sample_tasks
from lion_core.world.server import WorldServer


def items(n: int, prefix: str = "s") -> list[Instruction]:
    return [
        Instruction(id=f"{prefix}{i}", instruction=t.instruction)
        for i, t in enumerate(sample_tasks(n, Random(len(prefix) + n)))
    ]


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
    hard, easy = items(3, "h"), items(4, "e")
    requests = plan(hard, easy, 7, 4, Random(0), "1:0", parent_sampling="cover")
    hard_parents = [r.parent.id for r in requests if r.mode == "hard"]
    assert sorted(hard_parents[:3]) == sorted(i.id for i in hard)
    assert len(hard_parents) == 7 and len([r for r in requests if r.mode == "easy"]) == 4
    assert len({r.variant for r in requests}) == len(requests)
    assert sample([], 3, Random(0)) == []


def test_discrimination_labels_and_statistics() -> None:
    pool = items(4)
    judgements = [
        make_judgement(pool[0].id, (9, 9), (1, 1), tau=1.0),  # gap 8: hard
        make_judgement(pool[1].id, (9, 8), (8, 8), tau=1.0),  # gap 0.5: easy
        make_judgement(pool[2].id, (9, 9), (8, 8), tau=1.0),  # gap exactly tau: hard
        make_judgement(pool[3].id, (9, None), (1, None), tau=1.0, reason="order 2: no scores"),
    ]
    result = split(pool, judgements)
    assert [i.id for i in result.hard] == [pool[0].id, pool[2].id]
    assert [i.id for i in result.easy] == [pool[1].id]
    assert [i.id for i in result.unscorable] == [pool[3].id]
    assert result.stats["unscorable"] == 1 and result.stats["mean_gap"] == pytest.approx((8 + 0.5 + 1) / 3)
    assert result.hard_share == pytest.approx(2 / 3)
    flipped = make_judgement("x", (9, 4), (5, 6), tau=1.0)  # order 1 teacher wins, order 2 student wins
    assert order_disagreement([flipped, judgements[0]]) == 0.5


@pytest.mark.parametrize(
    ("teacher", "student", "tau"),
    [((8.2, 8.2), (7.2, 7.2), 1.0), ((0.3, 0.3), (0.2, 0.2), 0.1), ((7.1, 8.7), (6.1, 7.7), 1.0)],
)
def test_a_gap_of_exactly_tau_in_decimal_scores_is_hard(
    teacher: tuple[float, float], student: tuple[float, float], tau: float
) -> None:
    assert sum(teacher) / 2 - sum(student) / 2 < tau  # in floats the gap falls short of tau
    judgement = make_judgement("x", teacher, student, tau=tau)
    assert judgement.label == "hard" and judgement.gap == tau


def test_the_loop_stops_without_verdicts_at_equilibrium_and_without_new_instructions() -> None:
    config = LionConfig(loop={"equilibrium_hard_share": 0.1})
    pool = items(20)
    stop = stop_after_discrimination(config, Split(hard=[], easy=[], unscorable=pool))
    assert stop is not None and stop.startswith("no scorable judgements: all 20")
    stop = stop_after_discrimination(config, Split(hard=pool[:1], easy=pool[1:], unscorable=[]))
    assert stop == "equilibrium: hard share 5.0% < 10.0%"
    assert stop_after_discrimination(config, Split(hard=pool[:2], easy=pool[2:], unscorable=[])) is None
    assert stop_after_generation(GenerationResult(kept=[], requested=8)) == (
        "no new instruction kept: 8 requested, none passed the filters"
    )
    assert stop_after_generation(GenerationResult(kept=pool[:1])) is None
    assert stop_after_generation(None) is None


def test_pools_replace_the_train_pool_and_grow_the_cache_pool() -> None:
    pools = initial_pools(items(5))
    new = items(3, "new")
    after = next_pools(pools, new)
    assert after.train_pool == new
    assert after.cache_pool == pools.cache_pool + new
    with pytest.raises(ValueError, match="already in the Cache Pool"):
        next_pools(after, new[:1])


def test_a_copy_of_a_cache_pool_instruction_with_an_input_is_not_novel() -> None:
    summarize = Instruction(
        id="s0",
        instruction="Summarize the following paragraph in one sentence.",
        input="The committee met on Tuesday. It discussed the budget, the new building and the hiring plan "
        "for next year, and agreed to meet again in March after the auditors have reported.",
    )
    asked: list[list[dict[str, str]]] = []

    async def echo(requests: list[GenerationRequest]) -> list[Completion]:
        asked.extend(r.messages() for r in requests)
        return [Completion(summarize.instruction, "stop", 1, 1) for _ in requests]

    config = LionConfig(loop={"new_per_iteration": 2, "generation_rounds": 1})
    judged = Split(hard=[summarize], easy=[summarize], unscorable=[])
    result = asyncio.run(new_instructions(echo, config, 1, [summarize], judged))
    assert result.kept == [] and result.novelty_rejections == 2
    assert all(summarize.input not in m["content"] for messages in asked for m in messages)


def test_teacher_answers_cut_by_the_length_limit_are_counted(world: WorldServer, tmp_path: Path) -> None:
    config = LionConfig(teacher={"base_url": world.url, "max_tokens": 2})
    roles = build_roles(config, Ledger(), ResponseCache(tmp_path / "c.sqlite"))
    pool = [Instruction(id="a", instruction="Tell me a story"), Instruction(id="b", instruction="3 plus 1?")]
    answers = asyncio.run(teacher.answer_all(roles.teacher, pool))
    assert [a.finish_reason for a in answers] == ["length", "stop"]
    assert cut_answers_note(answers, 2) == ["1 of 2 teacher answers were cut at teacher.max_tokens=2"]
    assert cut_answers_note(answers[1:], 2) == []


def test_generation_against_the_world_filters_and_keeps_lineage(world: WorldServer, tmp_path: Path) -> None:
    config = LionConfig(
        teacher={"base_url": world.url},
        referee={"base_url": world.url},
        generator={"base_url": world.url, "temperature": 1.0},
    )
    roles = build_roles(config, Ledger(), ResponseCache(tmp_path / "c.sqlite"))
    pool = items(60)
    index = NoveltyIndex(0.7, texts=[i.text for i in pool])
    result = asyncio.run(
        generate(
            asker(roles.generator),
            pool[:30],
            pool[30:],
            index,
            n=80,
            ratio=1.0,
            min_words=1,
            rounds=None,  # as the original: until n are kept (bounded by the default patience)
            iteration=1,
            seed=0,
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


def test_one_iteration_as_plain_python_keeps_the_pool_invariants(
    world: WorldServer, tiny_student_path: Path, tmp_path: Path
) -> None:
    endpoint = {"base_url": world.url, "concurrency": 16}
    config = LionConfig(
        run_dir=tmp_path,
        teacher=endpoint,
        referee=endpoint,
        generator={**endpoint, "temperature": 1.0},
        student=StudentConfig(
            model_path=tiny_student_path,
            finetune="full",
            prompt_template="compact",
            learning_rate=3e-3,
            max_steps=40,
            train_batch_size=16,
            gradient_accumulation_steps=1,
            max_length=64,
            max_new_tokens=12,
        ),
        loop=LoopConfig(new_per_iteration=30, min_words=1, seed=0),
    )
    ledger = Ledger(tmp_path / "ledger.json", scope="iter_1")
    roles = build_roles(config, ledger, ResponseCache(tmp_path / "c.sqlite"))
    run = RunDir(tmp_path)
    pools = initial_pools(items(60))
    write_pools(run.iteration(1), pools)
    outcome = asyncio.run(run_iteration(direct_effects(config, roles), config, run, 1))
    judged = outcome.discrimination
    assert len(judged.judgements) == len(pools.cache_pool) == len(judged.teacher) == len(judged.student)
    for j in judged.judgements:
        assert j.label == "unscorable" or (j.label == "hard") == (j.gap >= config.loop.tau)
    assert outcome.next_pools == Pools(outcome.generation.kept, pools.cache_pool + outcome.generation.kept)
    assert 0 < len(outcome.generation.kept) <= 30
    assert all(i.iteration == 1 and i.origin in ("hard", "easy") for i in outcome.generation.kept)
    assert (run.iteration(1).student / "config.json").exists()
    assert read_pools(run.iteration(2)) == outcome.next_pools
    for name in ITERATION_FILES:  # the plain loop writes the run directory the flow writes
        assert run.iteration(1).file(name).exists(), name
    summary = json.loads(run.iteration(1).summary.read_text())
    assert (
        summary["generated"] == len(outcome.generation.kept) and summary["usage"]["referee"]["requests"] > 0
    )
    referee = roles.referee.ledger.roles["referee"]
    # two orders per item, except identical answers (referee.skip_identical): no request at all
    assert referee.requests + referee.cache_hits >= 2 * (len(pools.cache_pool) - summary["identical"])
    assert summary["identical"] == sum(j.gap == 0 and j.teacher_score is None for j in judged.judgements)
    assert world.stats.received["referee"] == referee.requests


def test_selection_is_a_named_step_paper_by_default_and_random_keeps_the_referees_count() -> None:
    pool = items(40)
    judgements = [
        make_judgement(item.id, (9, 9), (1, 1) if n % 4 == 0 else (9, 9), tau=1.0)
        for n, item in enumerate(pool)
    ]
    judgements[1] = make_judgement(pool[1].id, (9, None), (1, None), tau=1.0, reason="order 2: no scores")
    assert LionConfig().loop.selection == "paper"
    paper = selection("paper", 0)(pool, judgements)
    assert [i.id for i in paper.hard] == [i.id for n, i in enumerate(pool) if n % 4 == 0]
    drawn = selection("random", 0)(pool, judgements)
    assert len(drawn.hard) == len(paper.hard) and len(drawn.easy) == len(paper.easy)
    assert drawn.unscorable == paper.unscorable == [pool[1]]
    assert {i.id for i in drawn.hard} != {i.id for i in paper.hard}
    assert selection("random", 0)(pool, judgements) == drawn  # seeded: a resumed run draws the same
    with pytest.raises(KeyError, match="unknown selection 'best'"):
        selection("best", 0)
    with pytest.raises(ValueError, match="selection"):
        LionConfig(loop={"selection": "best"})
