"""Fan-out of API calls as Prefect tasks: one task per batch, run concurrently, retried alone; the
progress artifacts of Batch API batches; and where the flows keep their task results."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from prefect import Flow, Task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

from lion_core.batch import BatchProgress
from lion_core.config import LionConfig
from lion_core.ledger import Ledger
from lion_core.rundir import RunDir
from tasks.api import with_retries
from tasks.artifacts import Progress

T = TypeVar("T")
R = TypeVar("R")


async def fan_out(
    call: Callable[[int, list[T]], Awaitable[list[R]]],
    items: Sequence[T],
    size: int,
    description: str,
    ledger: Ledger,
) -> list[R]:
    """Run `call(first_index, batch)` for every batch concurrently; results in input order.

    RUN/ledger.json, a view of the money journal, is refreshed as each batch finishes (for whoever
    watches it); a kill loses nothing either way, since every reply's usage is journaled with it.
    """
    progress = await Progress(f"{description} ({len(items)})", len(items)).start()

    async def one(first: int) -> list[R]:
        batch = list(items[first : first + size])
        result = await call(first, batch)
        ledger.save()
        await progress.advance(len(batch))
        return result

    results = await asyncio.gather(*(one(first) for first in range(0, len(items), size)))
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


def in_run_dir(config: LionConfig, subflow: Flow) -> Flow:
    """The flow with its task results persisted under RUN/.prefect-results (a run's only state)."""
    return subflow.with_options(result_storage=RunDir(config.run_dir).results.resolve())
