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
from lion_core.api.budget import BudgetExceededError
from lion_core.api.ledger import Ledger
from lion_core.chat import ChatClient, LLMError
from lion_core.config import ConfigError, LionConfig, LoopConfig
from lion_core.records import RecordError, write_failure
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

    A batch that fails (out of retries) starts no more batches, but those in flight finish — their
    replies are paid for and cached, and Prefect shows them Completed, not Crashed — and then the stage
    fails naming the failed batches (`stage_failure`); a retry re-runs only those and the ones never
    started. A stop (Ctrl-C, SIGTERM: a cancellation) ends every batch at once.

    RUN/ledger.json, a view of the money journal, is refreshed as batches finish, at most every
    LEDGER_REFRESH_S (rebuilding it sums the whole journal: ~1 s at 375K requests), and at the end; a
    kill loses nothing either way, since every reply's usage is journaled with it.
    """
    progress = await Progress(f"{description} ({len(items)})", len(items)).start()
    turns = asyncio.Semaphore(in_flight)
    saved = time.monotonic()
    failed: dict[int, Exception] = {}

    async def one(first: int) -> list[R]:
        nonlocal saved
        async with turns:
            if failed:
                return []
            batch = list(items[first : first + size])
            try:
                result = await call(first, batch)
            except Exception as err:  # a stop is no Exception: it goes through and cancels the rest
                failed[first] = err
                return []
        if time.monotonic() - saved >= LEDGER_REFRESH_S:
            ledger.save()
            saved = time.monotonic()
        await progress.advance(len(batch))
        return result

    starts = range(0, len(items), size)
    results = await asyncio.gather(*(one(first) for first in starts))
    if failed:
        ledger.save_quietly()
        raise stage_failure(description, failed, len(starts))
    ledger.save()
    return [r for batch in results for r in batch]


def stage_failure(description: str, failed: dict[int, Exception], batches: int) -> Exception:
    """The one error a stage fails with: a budget stop or a failed write as they are (the CLI reports
    them in their own words), an endpoint that kept failing as one LLMError naming the failed batches,
    anything else as the first failure with the batches in a note."""
    errors = [failed[first] for first in sorted(failed)]
    which = "the batch" if len(failed) == 1 else "batches"
    where = f"{len(failed)} of {batches} batches failed ({which} at {', '.join(map(str, sorted(failed)))})"
    for own_words in (BudgetExceededError, RecordError, ConfigError):
        if found := next((e for e in errors if isinstance(e, own_words)), None):
            return found
    if found := next((e for e in errors if write_failure(e)), None):
        return found
    if all(isinstance(e, LLMError) for e in errors):
        return LLMError(f"{description}: {where}; the others finished and are cached: {errors[0]}")
    errors[0].add_note(f"{description}: {where}")
    return errors[0]


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
