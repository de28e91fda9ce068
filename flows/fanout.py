"""Fan-out of API calls as Prefect tasks: one task per batch, run concurrently, retried alone; the
progress artifacts of Batch API batches; and where the flows keep their task results."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from prefect import Flow, Task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

from lion_core.api.batch import BatchProgress
from lion_core.api.ledger import Ledger
from lion_core.chat import ChatClient
from lion_core.config import LionConfig, LoopConfig
from lion_core.run.rundir import RunDir
from tasks.api import endpoint_id, with_retries
from tasks.artifacts import Progress

T = TypeVar("T")
R = TypeVar("R")
LEDGER_REFRESH_S = 10.0  # the longest RUN/ledger.json lags the journal during a fan-out
BUFFERS = 2  # batches in flight per batch that fills the role's concurrency: the next one is ready


def batches_in_flight(client: ChatClient, loop: LoopConfig) -> int:
    """How many batch tasks of a role's fan-out run at once (config `loop.batches_in_flight`)."""
    endpoint = getattr(client, "endpoint", None)
    if loop.batches_in_flight is not None or endpoint is None:
        return loop.batches_in_flight or BUFFERS
    if endpoint.mode == "batch":  # requests gathered into one provider batch: let a batch's worth in
        return math.ceil(endpoint.batch.max_requests / loop.batch_size)
    return BUFFERS * math.ceil(endpoint.concurrency / loop.batch_size)


async def fan_out(
    call: Callable[[int, list[T]], Awaitable[list[R]]],
    items: Sequence[T],
    size: int,
    description: str,
    ledger: Ledger,
    in_flight: int,
) -> list[R]:
    """Run `call(first_index, batch)` for every batch, at most `in_flight` at once; results in input
    order. A batch waiting for its turn is not yet a task (nothing started, nothing held but its
    slice), so the first request leaves at once and memory does not grow with the pool.

    RUN/ledger.json, a view of the money journal, is refreshed as batches finish, at most every
    LEDGER_REFRESH_S (rebuilding it sums the whole journal: ~1 s at 375K requests), and at the end; a
    kill loses nothing either way, since every reply's usage is journaled with it.
    """
    progress = await Progress(f"{description} ({len(items)})", len(items)).start()
    turns = asyncio.Semaphore(in_flight)
    saved = time.monotonic()

    async def one(first: int) -> list[R]:
        nonlocal saved
        async with turns:
            batch = list(items[first : first + size])
            result = await call(first, batch)
        if time.monotonic() - saved >= LEDGER_REFRESH_S:
            ledger.save()
            saved = time.monotonic()
        await progress.advance(len(batch))
        return result

    results = await asyncio.gather(*(one(first) for first in range(0, len(items), size)))
    ledger.save()
    return [r for batch in results for r in batch]


def batch_progress(run_name: str) -> Callable[[BatchProgress], Awaitable[None]]:
    """A Batch API client's progress callback as Prefect progress artifacts: one per provider batch,
    at requests completed (or failed) / total, updated at every poll."""
    artifacts: dict[str, object] = {}

    async def report(progress: BatchProgress) -> None:
        share = 100.0 * (progress.completed + progress.failed) / max(1, progress.total)
        if progress.batch_id not in artifacts:
            artifacts[progress.batch_id] = await acreate_progress_artifact(
                share,
                description=f"{run_name}: {progress.role} batch {progress.batch_id} "
                f"({progress.total} requests)",
            )
        else:
            await aupdate_progress_artifact(artifacts[progress.batch_id], share)

    return report


def batch_task(config: LionConfig, api: Task) -> Task:
    """An API batch task with the run's retry policy."""
    return with_retries(api, config.loop.task_retries, config.loop.task_retry_delay_s)


async def api_fan_out(
    config: LionConfig,
    api: Task,
    client: ChatClient,
    items: Sequence[T],
    description: str,
    ledger: Ledger,
    run_name: str | None = None,
    **options: Any,
) -> list[Any]:
    """Every batch of `items` through the API task `api` — `api(client, endpoint, batch, first=…,
    **options)` — with the run's retry policy, at most `batches_in_flight` at once, results in input
    order (see `fan_out`); `run_name` names the task runs (a template of `first`)."""
    task = batch_task(config, api)
    if run_name is not None:
        task = task.with_options(task_run_name=run_name)
    endpoint = endpoint_id(client)

    async def call(first: int, batch: list[T]) -> list[Any]:
        return await task(client, endpoint, batch, first=first, **options)

    in_flight = batches_in_flight(client, config.loop)
    return await fan_out(call, items, config.loop.batch_size, description, ledger, in_flight)


def in_run_dir(config: LionConfig, subflow: Flow) -> Flow:
    """The flow with its task results persisted under RUN/.prefect-results (a run's only state)."""
    return subflow.with_options(result_storage=RunDir(config.run_dir).results.resolve())
