"""A resumed run keeps what the run that did the work recorded: an iteration replayed from the caches
keeps its summary's `seconds` (issue 14, item 9)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from lion_core.config import LionConfig
from lion_core.discrimination import make_judgement
from lion_core.llm import Completion
from lion_core.loop import Effects, run_iteration, run_step
from lion_core.pools import initial_pools, write_pools
from lion_core.records import Instruction, Response
from lion_core.rundir import RunDir
from lion_core.student.train import TrainResult


def fake_effects() -> Effects:
    """A teacher, student, referee and generator that answer at once (as replies from the cache do)."""
    topics = iter(f"Compose {n} verses about the {t}" for n in range(100) for t in ("rain", "snow"))

    async def teacher(items: list[Instruction]) -> list[Response]:
        return [Response(id=i.id, instruction=i.instruction, output="T", model="t") for i in items]

    def finetune(job):
        Path(job.out).mkdir(parents=True, exist_ok=True)
        return TrainResult(checkpoint=str(job.out), steps=0, examples=0, tokens=0, seconds=0.0)

    def student(checkpoint: Path, items: list[Instruction]) -> list[Response]:
        return [Response(id=i.id, instruction=i.instruction, output="S", model="s") for i in items]

    async def judge(items):
        return [make_judgement(item_id, (9, 9), (2, 2), tau=1.0) for item_id, *_ in items]

    async def generator(requests):
        return [Completion(next(topics), "stop", 1, 1) for _ in requests]

    return Effects(teacher, finetune, student, judge, generator, run_step)


def test_a_replayed_iteration_keeps_the_seconds_of_the_run_that_did_the_work(tmp_path: Path) -> None:
    config = LionConfig(student={"model_path": tmp_path}, loop={"new_per_iteration": 2, "min_words": 1})
    run = RunDir(tmp_path / "run")
    seeds = ["cats", "maps", "tea", "jazz"]
    write_pools(
        run.iteration(1),
        initial_pools(
            [Instruction(id=f"s{i}", instruction=f"Seed task {i} on {t}") for i, t in enumerate(seeds)]
        ),
    )
    first = asyncio.run(run_iteration(fake_effects(), config, run, 1)).summary
    assert first["seconds"] >= 0
    recorded = {**first, "seconds": 4321.5}  # what the first run, which paid and trained, took
    run.iteration(1).summary.write_text(json.dumps(recorded))

    again = asyncio.run(run_iteration(fake_effects(), config, run, 1)).summary
    assert again["seconds"] == 4321.5
    assert json.loads(run.iteration(1).summary.read_text())["seconds"] == 4321.5
