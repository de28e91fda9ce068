"""A role's chat client through the provider's Batch API (`mode: batch`), behind the same ChatClient seam.

Callers still `complete()` / `complete_all()`. A reply in the response cache is served from it; the other
requests arriving within `batch.collect_s` of each other are gathered, journaled in flight at their
worst case (batch prices; the budget guard refuses what could cross the budget), written as a JSONL file
(custom_id = the cache key; split at the provider's requests/bytes limits), uploaded with the SDK's
`files`, and a batch is created with `batches.create`. The batch is recorded in the journal the moment
it exists (lion_core.api.batch_store), before any waiting. It is then polled every `batch.poll_interval_s`
(each status goes to `on_progress`); when it ends, its output and error files are downloaded and every
reply lands in the response cache one by one, settled in the journal with its usage at batch prices.
Requests without a reply (failed lines, an expired, cancelled or failed batch) go into a new batch, at
most `batch.max_resubmits` times. A re-run asking for a request that an open batch covers re-attaches
to that batch instead of submitting it again.

Run as: set `mode: batch` on a role in the config (see docs/batch-mode.md); tests/api/test_batch.py.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from lion_core.api.batch_format import (
    CHAT_URL,
    BatchFormatError,
    BatchRequest,
    chunks,
    decode_results,
    encode_file,
    request_body,
)
from lion_core.api.batch_store import ABANDONED, COLLECTED, LOST, SUBMITTING, BatchStore
from lion_core.api.budget import BudgetExceededError
from lion_core.api.client import OpenAIChatClient
from lion_core.api.journal import Ticket
from lion_core.chat import Completion, LLMError, Messages
from lion_core.records import atomic_write_text
from lion_core.run.rundir import batch_files

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
LIST_PAGE = 100  # batches per page when looking for a batch created just before a kill
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchProgress:
    """Where one batch stands (what a progress artifact shows)."""

    role: str
    batch_id: str
    status: str
    completed: int
    failed: int
    total: int


@dataclass
class Outcome:
    """What a finished batch gave: replies and errors by key, and its final status."""

    replies: dict[str, Completion] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    status: str = ""


@dataclass
class _Pending:
    key: str
    body: dict[str, Any]
    worst: tuple[float, int]
    future: asyncio.Future[int]


class _Lost(Exception):
    """The provider does not know the batch (404)."""


ProgressCallback = Callable[[BatchProgress], Awaitable[None] | None]


class BatchChatClient(OpenAIChatClient):
    """See the module docstring. `on_progress(BatchProgress)` (sync or async) hears every poll."""

    def __init__(self, *args: Any, on_progress: ProgressCallback | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = self.endpoint.batch
        self.store = BatchStore(self.ledger.journal)
        self.files_dir = batch_files(self.cache.path) if self.cache is not None else None
        self.on_progress = on_progress
        self._pending: list[_Pending] = []
        self._timer: asyncio.TimerHandle | None = None
        self._watchers: dict[int, asyncio.Task[Outcome]] = {}

    def __repr__(self) -> str:  # never shows the key
        return f"BatchChatClient({self.role!r}, {self.endpoint.base_url!r}, model={self.model_name!r})"

    def _http_client(self) -> openai.DefaultAsyncHttpxClient:
        """Batch traffic (uploads, polls) is not chat traffic: no chat rate limiter."""
        return openai.DefaultAsyncHttpxClient()

    async def _send(
        self,
        sdk: openai.AsyncOpenAI,
        key: str,
        messages: Messages,
        max_tokens: int | None = None,
        variant: int = 0,
    ) -> Completion:
        """The request's reply from the batch that covers it: an open one (re-attach) or a new one."""
        last = "no batch"
        for _ in range(self.settings.max_resubmits + 1):
            record = self.store.pending_for(key, self.endpoint.base_url)
            row = (
                record.row if record is not None else await self._enqueue(key, messages, max_tokens, variant)
            )
            outcome = await self._watch(sdk, row)
            if key in outcome.replies:
                return outcome.replies[key]
            last = outcome.errors.get(key) or f"no reply (batch {outcome.status})"
        raise LLMError(
            f"{self.role} at {self.endpoint.base_url}: no reply after "
            f"{self.settings.max_resubmits + 1} batches: {last}"
        )

    # ---------------------------------------------------------------- gathering and submitting

    async def _enqueue(self, key: str, messages: Messages, max_tokens: int | None, variant: int = 0) -> int:
        """Wait for the batch this request is put in; returns its record's row."""
        loop = asyncio.get_running_loop()
        body = request_body(self.model_name, messages, self.sent_params(max_tokens, variant))
        pending = _Pending(key, body, self._reservation(messages, max_tokens), loop.create_future())
        self._pending.append(pending)
        if self._timer is not None:
            self._timer.cancel()
        delay = 0.0 if len(self._pending) >= self.settings.max_requests else self.settings.collect_s
        self._timer = loop.call_later(delay, lambda: loop.create_task(self._flush()))
        return await pending.future

    async def _flush(self) -> None:
        """Submit what was gathered; whatever goes wrong reaches the waiting requests (none hangs)."""
        pending, self._pending, self._timer = self._pending, [], None
        try:
            await self._flush_pending(pending)
        except BaseException as err:
            for p in pending:
                if not p.future.done():
                    p.future.set_exception(err)
            if not isinstance(err, Exception):
                raise

    async def _flush_pending(self, pending: list[_Pending]) -> None:
        """Journal the gathered requests, then submit them in files within the provider's limits."""
        opened: dict[str, tuple[_Pending, Ticket]] = {}
        for p in pending:
            try:
                opened[p.key] = (p, self.ledger.open(self.role, p.key, p.worst, self.guard.config))
            except BudgetExceededError as err:
                p.future.set_exception(err)
        try:
            parts = chunks(
                [BatchRequest(p.key, p.body) for p, _ in opened.values()],
                self.settings.max_requests,
                self.settings.max_bytes,
            )
        except BatchFormatError as err:
            self._abandon(None, opened, f"{self.role}: {err}")
            return
        for part in parts:
            await self._submit(part, {r.key: opened[r.key] for r in part})

    async def _submit(self, part: list[BatchRequest], opened: dict[str, tuple[_Pending, Ticket]]) -> None:
        """Record, upload and create one batch; each request's future gets the record's row."""
        sdk = self._bind()
        row = self.store.record(self.role, self.endpoint.base_url, {k: t for k, (_, t) in opened.items()})
        data = encode_file(part)
        self._keep(row, "input", data.decode("utf-8"))
        try:
            upload = await sdk.files.create(file=(f"lion-{self.role}-{row}.jsonl", data), purpose="batch")
            self.store.uploaded(row, upload.id)
            try:
                batch = await sdk.batches.create(
                    input_file_id=upload.id,
                    endpoint=CHAT_URL,
                    completion_window=self.settings.completion_window,
                    metadata={"lion_role": self.role, "lion_record": str(row)},
                )
                batch_id, status = batch.id, batch.status
            except openai.APIError:  # created all the same? (a reply lost after the provider acted)
                found = await self._find_created(sdk, upload.id)
                if found is None:
                    raise
                batch_id, status = found
        except openai.APIError as err:
            self._abandon(row, opened, f"{self.role} at {self.endpoint.base_url}: batch not created: {err}")
            return
        self.store.created(row, batch_id, status)
        for p, _ in opened.values():
            p.future.set_result(row)

    def _abandon(self, row: int | None, opened: dict[str, tuple[_Pending, Ticket]], message: str) -> None:
        """Nothing was sent: close the tickets as failed and fail the requests."""
        tickets = [t for _, t in opened.values()]
        if row is None:
            row = self.store.record(self.role, self.endpoint.base_url, {k: t for k, (_, t) in opened.items()})
        self.store.close(row, ABANDONED, tickets)
        for p, _ in opened.values():
            if not p.future.done():
                p.future.set_exception(LLMError(message))

    async def _find_created(self, sdk: openai.AsyncOpenAI, input_file_id: str) -> tuple[str, str] | None:
        """The provider's batch over this input file, if one was created (id, status)."""
        async for batch in sdk.batches.list(limit=LIST_PAGE):
            if batch.input_file_id == input_file_id:
                return batch.id, batch.status
        return None

    # ---------------------------------------------------------------- waiting and collecting

    async def _watch(self, sdk: openai.AsyncOpenAI, row: int) -> Outcome:
        """The outcome of the batch recorded at `row`: one follower per batch, shared by its requests."""
        loop = asyncio.get_running_loop()
        task = self._watchers.get(row)
        stale = task is None or task.get_loop() is not loop
        if stale or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = loop.create_task(self._follow(sdk, row))
            self._watchers[row] = task
        return await asyncio.shield(task)

    async def _follow(self, sdk: openai.AsyncOpenAI, row: int) -> Outcome:
        """Poll the batch until it ends (re-attaching to one a kill left `submitting`), then collect it."""
        record = self.store.get(row)
        batch_id = record.batch_id
        if record.state == SUBMITTING:
            found = await self._find_created(sdk, record.input_file_id) if record.input_file_id else None
            if found is None:  # never created: nothing was sent
                self.store.close(row, ABANDONED, list(self.store.tickets(row).values()))
                return Outcome(status="never created")
            batch_id = found[0]
            self.store.created(row, *found)
        if record.state == COLLECTED or batch_id is None:
            return Outcome(status=record.state)
        while True:
            try:
                batch = await self._call(sdk.batches.retrieve(batch_id))
            except _Lost:
                self.store.close(row, LOST, [])
                return Outcome(status=LOST)
            self.store.status(row, batch.status)
            await self._report(batch)
            if batch.status in TERMINAL:
                return await self._collect(sdk, row, batch)
            await asyncio.sleep(self.settings.poll_interval_s)

    async def _call(self, request: Awaitable[Any]) -> Any:
        """One SDK call of batch traffic; an APIError after the SDK's retries is an LLMError."""
        try:
            return await request
        except openai.NotFoundError:
            raise _Lost from None
        except openai.APIError as err:
            raise LLMError(f"{self.role} at {self.endpoint.base_url}: {type(err).__name__}: {err}") from None

    async def _report(self, batch: Any) -> None:
        """Tell `on_progress` where the batch stands; a failing callback never stops the batch."""
        if self.on_progress is None:
            return
        counts = batch.request_counts
        progress = BatchProgress(
            self.role,
            batch.id,
            batch.status,
            counts.completed if counts else 0,
            counts.failed if counts else 0,
            counts.total if counts else 0,
        )
        try:
            result = self.on_progress(progress)
            if inspect.isawaitable(result):
                await result
        except Exception as err:  # a progress display must not stop the batch
            log.warning("batch progress callback failed: %s", err)

    async def _collect(self, sdk: openai.AsyncOpenAI, row: int, batch: Any) -> Outcome:
        """Download the output and error files; each reply is stored and settled on its own; the
        tickets of requests without a reply are closed as failed; the batch is recorded collected."""
        tickets = self.store.tickets(row)
        outcome = Outcome(status=batch.status)
        for kind, file_id in (("output", batch.output_file_id), ("errors", batch.error_file_id)):
            if not file_id:
                continue
            text = (await self._call(sdk.files.content(file_id))).text
            self._keep(row, kind, text)
            for line in decode_results(text):
                ticket = tickets.get(line.key)
                if ticket is None or line.key in outcome.replies:
                    continue
                if line.completion is not None:
                    self._record(line.key, line.completion, ticket)
                    outcome.replies[line.key] = line.completion
                else:
                    outcome.errors[line.key] = line.error or "error"
        unanswered = [t for key, t in tickets.items() if key not in outcome.replies]
        self.store.close(row, COLLECTED, unanswered)
        return outcome

    def _keep(self, row: int, kind: str, text: str) -> None:
        """A copy of a batch file in RUN/batches/ (prompts and replies only: no key is in them)."""
        if self.files_dir is not None:
            atomic_write_text(Path(self.files_dir) / f"{self.role}-{row}-{kind}.jsonl", text)
