"""lion_core/method/loop.py: when the loop stops, what generation may keep, and one whole iteration as
plain Python against the world."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

from lion_core.api.cache import ResponseCache
from lion_core.api.ledger import Ledger
from lion_core.chat import Completion
from lion_core.config import LionConfig
from lion_core.method.direct import build_roles, direct_effects
from lion_core.method.discrimination import Split
from lion_core.method.generation import GenerationRequest, GenerationResult
from lion_core.method.loop import (
    new_instructions,
    run_iteration,
    stop_after_discrimination,
    stop_after_generation,
)
from lion_core.method.pools import Pools, initial_pools, read_pools, write_pools
from lion_core.records import Instruction, Response, read_jsonl
from lion_core.run.report import table_rows
from lion_core.run.rundir import ITERATION_FILES, RunDir
from lion_core.world.server import WorldServer
from tests.support.configs import world_config
from tests.support.fakes import fake_effects
from tests.support.world import world_instructions


def test_the_loop_stops_without_verdicts_at_equilibrium_and_without_new_instructions() -> None:
    config = LionConfig(loop={"equilibrium_hard_share": 0.1})
    pool = world_instructions(20)
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


def test_one_iteration_as_plain_python_keeps_the_pool_invariants(
    world: WorldServer, tiny_student_path: Path, tmp_path: Path
) -> None:
    config = world_config(world, tiny_student_path, tmp_path, max_steps=40, new_per_iteration=30)
    ledger = Ledger(tmp_path / "ledger.json", scope="iter_1")
    roles = build_roles(config, ledger, ResponseCache(tmp_path / "c.sqlite"))
    run = RunDir(tmp_path)
    pools = initial_pools(world_instructions(60))
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


# Generated instructions far enough apart to pass the novelty filter (two per iteration, then spares).
NEW_TASKS = [
    "Compose a limerick about a lighthouse keeper",
    "List five uses of baking soda at home",
    "Explain why the sky looks blue at noon",
    "Translate good morning into three languages",
    "Name the planets ordered by their size",
    "Describe how bread dough rises overnight",
    "Suggest a name for a friendly robot dog",
    "Summarize the rules of chess for children",
]


def final_round_run(tmp_path: Path, **loop) -> tuple[RunDir, list[str], list[dict]]:
    """A plain run of 2 iterations on the fake effects (new_per_iteration 2), recording which stage ran
    in which round; returns the run, the calls ("teacher:3 items", "finetune", "student", "judge",
    "generator") and the summaries."""
    from lion_core.method.loop import final_imitation, run_loop

    config = LionConfig(
        run_dir=tmp_path / "run",
        student={"model_path": tmp_path / "base"},
        loop={"iterations": 2, "new_per_iteration": 2, "min_words": 1, **loop},
    )
    (tmp_path / "base").mkdir(parents=True, exist_ok=True)
    run = RunDir(config.run_dir)
    seeds = [Instruction(id=f"s{i}", instruction=f"Seed task {i} on {t}") for i, t in enumerate("abcd")]
    if not run.iteration(1).file("cache_pool").exists():
        write_pools(run.iteration(1), initial_pools(seeds))
    calls: list[str] = []
    fx = fake_effects(NEW_TASKS)

    def recorded(name: str, effect):
        def call(*args):
            calls.append(name)
            return effect(*args)

        return call

    async def teacher(items):
        calls.append(f"teacher:{len(items)}")
        return await fx.teacher(items)

    effects = replace(
        fx,
        teacher=teacher,
        finetune=recorded("finetune", fx.finetune),
        student=recorded("student", fx.student),
        judge=recorded("judge", fx.judge),
        generator=recorded("generator", fx.generator),
    )

    async def iterate(k: int) -> dict:
        return (await run_iteration(effects, config, run, k)).summary

    async def final(k: int) -> dict:
        return await final_imitation(effects, config, run, k)

    summaries = asyncio.run(run_loop(config, iterate, final=final))
    return run, calls, summaries


def test_a_final_imitation_round_trains_on_the_last_generated_set_and_nothing_else(tmp_path: Path) -> None:
    assert LionConfig().loop.final_imitation is False  # off by default, as the original's loop
    run, calls, summaries = final_round_run(tmp_path / "off")
    assert [s["iteration"] for s in summaries] == [1, 2] and calls.count("finetune") == 2
    run, calls, summaries = final_round_run(tmp_path / "on", final_imitation=True)
    assert [s["iteration"] for s in summaries] == [1, 2, 3]
    final = summaries[-1]
    assert final["final_imitation"] is True and final["stopped"] is None and final["judged"] == 0
    last_round = calls[calls.index("finetune", calls.index("finetune") + 1) + 1 :]
    last_round = last_round[last_round.index("teacher:2") :]  # round 3 starts with the teacher
    assert last_round == ["teacher:2", "finetune"]  # no student answers, referee or generator
    generated = [i.id for i in read_jsonl(run.iteration(2).file("generated"), Instruction)]
    trained = [json.loads(line)["response"] for line in run.iteration(3).sft.read_text().splitlines()]
    assert len(trained) == len(generated) == 2  # the last generated set, answered and trained on
    pool = read_jsonl(run.iteration(3).file("cache_pool"), Instruction)
    answered = read_jsonl(run.iteration(3).file("teacher"), Response)
    assert [r.id for r in answered] == [i.id for i in pool] and len(pool) == 4 + 2 + 2  # every instruction
    assert (run.iteration(3).student).exists()
    assert [s["iteration"] for s in run.summaries()] == [1, 2, 3]  # the report's rows
    assert table_rows(summaries)[-1]["hard"] == "–"


def test_a_finished_final_round_is_not_replayed_nor_taken_for_an_iteration(tmp_path: Path) -> None:
    final_round_run(tmp_path, final_imitation=True)
    _, calls, summaries = final_round_run(tmp_path, final_imitation=True)
    assert calls == [] and summaries[-1]["final_imitation"] is True  # resumed: nothing runs again
    # a third iteration from the same pools is not the final round: it runs (and judges)
    _, calls, summaries = final_round_run(tmp_path, iterations=3)
    assert calls[:2] == ["teacher:2", "finetune"] and "judge" in calls  # iterations 1 and 2 not replayed
    assert "final_imitation" not in summaries[-1]
