"""The offline world from a test's side: its tasks as instructions and as teacher conversations, a
client that pays it."""

from __future__ import annotations

from pathlib import Path
from random import Random

from pydantic import SecretStr

from lion_core import prompts
from lion_core.api.cache import ResponseCache
from lion_core.api.client import OpenAIChatClient
from lion_core.api.ledger import Ledger
from lion_core.config import BudgetConfig, EndpointConfig
from lion_core.records import Instruction
from lion_core.world.families import Task, sample_tasks
from lion_core.world.server import WorldServer

FAKE_KEY = "sk-test-NEVER-WRITE-THIS-0123456789abcdef"  # the tests look for it on disk and in logs


def world_instructions(n: int, prefix: str = "s", seed: int | None = None) -> list[Instruction]:
    """`n` distinct world tasks as instructions with the ids PREFIX0, PREFIX1, … (drawn with `seed`,
    by default len(prefix) + n)."""
    tasks = sample_tasks(n, Random(len(prefix) + n if seed is None else seed))
    return [Instruction(id=f"{prefix}{i}", instruction=t.instruction) for i, t in enumerate(tasks)]


def teacher_conversations(n: int, seed: int = 0) -> tuple[list[Task], list[list[dict[str, str]]]]:
    """`n` distinct world tasks and the teacher's conversation about each."""
    tasks = sample_tasks(n, Random(seed))
    return tasks, [prompts.teacher_messages(t.instruction) for t in tasks]


def world_client(server: WorldServer, run_dir: Path, **endpoint: object) -> OpenAIChatClient:
    """The teacher's client of `server` (answers of up to 32 tokens, 32 at once, no budget, FAKE_KEY),
    with its cache and ledger in `run_dir`; `endpoint` overrides the endpoint's settings."""
    settings = {"base_url": server.url, "model": "world", "max_tokens": 32, "concurrency": 32, **endpoint}
    return OpenAIChatClient(
        "teacher",
        EndpointConfig(**settings),
        cache=ResponseCache(run_dir / "cache.sqlite"),
        ledger=Ledger(run_dir / "ledger.json"),
        budget=BudgetConfig(),
        api_key=SecretStr(FAKE_KEY),
    )


def recorded_bodies(server: WorldServer) -> list[dict]:
    """Every chat completion body the world answers from now on, as it arrived (the HTTP request's JSON,
    or a batch line): what a client really sent, decoding parameters included."""
    bodies: list[dict] = []
    completion = server._completion

    def record(body, messages, role, content):
        bodies.append(dict(body))
        return completion(body, messages, role, content)

    server._completion = record
    return bodies
