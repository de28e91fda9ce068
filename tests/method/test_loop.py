"""lion_core/method/loop.py: when the loop stops, what generation may keep, and one whole iteration as
plain Python against the world."""

from __future__ import annotations

import asyncio
import json
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
from lion_core.records import Instruction
from lion_core.run.rundir import ITERATION_FILES, RunDir
from lion_core.world.server import WorldServer
from tests.support.configs import world_config
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
