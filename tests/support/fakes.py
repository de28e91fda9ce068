"""Fakes put where a model, an API or a fine-tune would be: a chat client that records what it is asked,
the loop's effects answering at once (as replies from the cache do), a log handler that keeps its
lines, a run finished on the fake effects."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from lion_core.chat import Completion
from lion_core.config import LionConfig
from lion_core.method.direct import run_step
from lion_core.method.discrimination import make_judgement
from lion_core.method.effects import Effects, JudgeItem
from lion_core.method.loop import run_iteration, run_loop
from lion_core.method.pools import initial_pools, write_pools
from lion_core.records import Instruction, Judgement, Response, read_jsonl, write_jsonl
from lion_core.run.rundir import RunDir
from lion_core.student.launch import FinetuneJob
from lion_core.student.train import TrainResult

# ----------------------------------------------------------------------------- chat clients


class RecordingClient:
    """A ChatClient that records every request and replies from a function of it."""

    def __init__(
        self, reply: Callable[[list[dict[str, str]]], str] = lambda messages: "An answer.", role: str = "fake"
    ) -> None:
        self.role = role
        self.model_name = "fake"
        self.reply = reply
        self.requests: list[tuple[list[dict[str, str]], int, int | None]] = []

    async def complete(self, messages, *, variant: int = 0, max_tokens: int | None = None) -> Completion:
        self.requests.append((messages, variant, max_tokens))
        return Completion(self.reply(messages), "stop", 1, 1)


# ----------------------------------------------------------------------------- the loop's effects


async def fake_teacher(items: list[Instruction]) -> list[Response]:
    """Answers every instruction "T" at once."""
    return [Response(id=i.id, instruction=i.instruction, input=i.input, output="T", model="t") for i in items]


def fake_finetune(job: FinetuneJob) -> TrainResult:
    """Trains nothing: an empty checkpoint folder and a TrainResult of no steps."""
    Path(job.out).mkdir(parents=True, exist_ok=True)
    return TrainResult(checkpoint=str(job.out), steps=0, examples=0, tokens=0, seconds=0.0)


def fake_student(checkpoint: Path, questions: Path, answers: Path) -> list[Response]:
    """Answers the questions file "S", file to file, as the student's effect does."""
    items = read_jsonl(questions, Instruction)
    out = [Response(id=i.id, instruction=i.instruction, output="S", model="s") for i in items]
    write_jsonl(answers, out)
    return out


async def fake_judge(items: list[JudgeItem]) -> list[Judgement]:
    """The teacher scores 9, the student 2, in both orders: every item hard."""
    return [make_judgement(item_id, (9, 9), (2, 2), tau=1.0) for item_id, *_ in items]


def fake_effects(generated: Iterable[str] | None = None) -> Effects:
    """A teacher, student, referee and generator that answer at once (as replies from the cache do);
    the generator replies with `generated` in turn (default: 200 distinct verse-writing tasks)."""
    if generated is None:
        generated = (f"Compose {n} verses about the {t}" for n in range(100) for t in ("rain", "snow"))
    replies = iter(generated)

    async def generator(requests) -> list[Completion]:
        return [Completion(next(replies), "stop", 1, 1) for _ in requests]

    return Effects(fake_teacher, fake_finetune, fake_student, fake_judge, generator, run_step)


# ----------------------------------------------------------------------------- logs


class LogLines(logging.Handler):
    """A logging handler that keeps the messages of INFO and above."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# ----------------------------------------------------------------------------- a finished run


def finished_run(
    tmp_path: Path, iterations: int = 2, settings: dict | None = None, **loop
) -> tuple[LionConfig, RunDir, list[int]]:
    """A plain run of `iterations` iterations on the fake effects, in TMP_PATH/run (its manifests
    written: a re-run skips it); the list counts teacher calls."""

    config = LionConfig(
        run_dir=tmp_path / "run",
        student={"model_path": tmp_path / "base"},
        loop={"iterations": iterations, "new_per_iteration": 2, "min_words": 1, **loop},
        **(settings or {}),
    )
    (tmp_path / "base").mkdir(exist_ok=True)
    run = RunDir(config.run_dir)
    seeds = ["cats", "maps", "tea", "jazz"]
    pools = [Instruction(id=f"s{i}", instruction=f"Seed task {i} on {t}") for i, t in enumerate(seeds)]
    if not run.iteration(1).file("cache_pool").exists():
        write_pools(run.iteration(1), initial_pools(pools))
    calls: list[int] = []
    fx = fake_effects()

    async def teacher(items):
        calls.append(len(items))
        return await fx.teacher(items)

    effects = replace(fx, teacher=teacher)

    async def iterate(k: int) -> dict:
        return (await run_iteration(effects, config, run, k)).summary

    asyncio.run(run_loop(config, iterate))
    return config, run, calls
