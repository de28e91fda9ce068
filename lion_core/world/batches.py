"""The offline world's Files and Batch API: `/v1/files` (upload, retrieve, content) and `/v1/batches`
(create, retrieve, cancel, list), in OpenAI's formats, so batch mode runs and is tested offline.

A batch goes validating → in_progress → finalizing → completed; its lines run through the world's own
chat handler (counted in /world/stats like any request), one by one, after `batch_delay_s`. Knobs (on
the server's Faults, settable at run time through /world/faults): `batch_delay_s`, `batch_failed_share`
(lines answered with an error in the error file), `batch_expire_share` / `batch_cancel_share` (the
batch expires / is cancelled after answering that share of its lines: partial output) and
`batch_faulty` (only the first N batches suffer these faults). `POST /v1/batches/{id}/cancel` cancels
from the client's side.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from random import Random
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from lion_core.api.batch_format import BatchFormatError, decode_requests, result_line

DEFAULT_LIST_LIMIT = 20
DELAY_STEP_S = 0.05  # how often a delayed batch re-reads batch_delay_s
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=status)


def multipart_file(content_type: str, body: bytes) -> tuple[str, bytes, str]:
    """(filename, content, purpose) of a multipart/form-data upload (the SDK's files.create)."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body
    )
    filename, data, purpose = "upload.jsonl", b"", ""
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if name == "file":
            filename, data = part.get_filename() or filename, payload
        elif name == "purpose":
            purpose = payload.decode("utf-8").strip()
    return filename, data, purpose


class BatchWorld:
    """Files and batches of one world server. `answer(body)` is the world's chat handler; `knobs()` the
    server's fault knobs; `counters()` the server's batch stats; `seed` makes failed lines reproducible."""

    def __init__(
        self,
        answer: Callable[[dict[str, Any]], dict[str, Any]],
        knobs: Callable[[], Any],
        counters: Callable[[], Counter],
        seed: int,
    ) -> None:
        self.answer = answer
        self.knobs = knobs
        self.counters = counters
        self.rng = Random(f"{seed}:batches")
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}

    @property
    def stats(self) -> Counter:
        """The server's batch counters (created, per final status, lines)."""
        return self.counters()

    def mount(self, app: FastAPI) -> None:
        app.post("/v1/files")(self._upload)
        app.get("/v1/files/{file_id}")(self._file)
        app.get("/v1/files/{file_id}/content")(self._content)
        app.post("/v1/batches")(self._create)
        app.get("/v1/batches")(self._list)
        app.get("/v1/batches/{batch_id}")(self._retrieve)
        app.post("/v1/batches/{batch_id}/cancel")(self._cancel)

    # ------------------------------------------------------------------ files

    def _store(self, filename: str, data: bytes, purpose: str) -> dict[str, Any]:
        file_id = f"file-world-{len(self.files) + 1}"
        self.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        self.contents[file_id] = data
        return self.files[file_id]

    async def _upload(self, request: Request) -> Any:
        filename, data, purpose = multipart_file(
            request.headers.get("content-type", ""), await request.body()
        )
        if purpose != "batch":
            return _error(400, f"purpose must be 'batch', got {purpose!r}")
        return self._store(filename, data, purpose)

    async def _file(self, file_id: str) -> Any:
        return self.files.get(file_id) or _error(404, f"no file {file_id}")

    async def _content(self, file_id: str) -> Any:
        if file_id not in self.contents:
            return _error(404, f"no file {file_id}")
        return Response(self.contents[file_id], media_type="application/octet-stream")

    # ------------------------------------------------------------------ batches

    async def _create(self, request: Request) -> Any:
        body = await request.json()
        file_id = body.get("input_file_id")
        if file_id not in self.contents:
            return _error(400, f"no input file {file_id}")
        batch_id = f"batch_world_{len(self.batches) + 1}"
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body.get("endpoint", "/v1/chat/completions"),
            "input_file_id": file_id,
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "created_at": int(time.time()),
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
            "metadata": body.get("metadata"),
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
        }
        self.stats["created"] += 1
        asyncio.get_running_loop().create_task(self._run(batch_id, self.stats["created"]))
        return self.batches[batch_id]

    async def _retrieve(self, batch_id: str) -> Any:
        return self.batches.get(batch_id) or _error(404, f"no batch {batch_id}")

    async def _cancel(self, batch_id: str) -> Any:
        batch = self.batches.get(batch_id)
        if batch is None:
            return _error(404, f"no batch {batch_id}")
        if batch["status"] not in TERMINAL:
            batch["status"] = "cancelling"
            batch["cancelling_at"] = int(time.time())
        return batch

    async def _list(self, limit: int = DEFAULT_LIST_LIMIT, after: str | None = None) -> dict[str, Any]:
        newest_first = list(reversed(self.batches.values()))
        if after is not None:
            ids = [b["id"] for b in newest_first]
            newest_first = newest_first[ids.index(after) + 1 :] if after in ids else []
        page = newest_first[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(newest_first) > len(page),
        }

    # ------------------------------------------------------------------ running a batch

    def _stop_after(self, total: int, faulty: bool) -> tuple[int, str]:
        """How many lines run before the batch stops, and the status it ends in."""
        knobs = self.knobs()
        for share, status in ((knobs.batch_expire_share, "expired"), (knobs.batch_cancel_share, "cancelled")):
            if faulty and share is not None:
                return math.floor(share * total), status
        return total, "completed"

    async def _run(self, batch_id: str, number: int) -> None:
        batch = self.batches[batch_id]
        try:
            lines = decode_requests(self.contents[batch["input_file_id"]])
        except BatchFormatError as err:
            batch.update(
                status="failed", failed_at=int(time.time()), errors={"data": [{"message": str(err)}]}
            )
            self.stats["failed"] += 1
            return
        knobs = self.knobs()
        faulty = knobs.batch_faulty is None or number <= knobs.batch_faulty
        batch["request_counts"]["total"] = len(lines)
        batch.update(status="in_progress", in_progress_at=int(time.time()))
        await self._delay(batch)
        limit, end = self._stop_after(len(lines), faulty)
        output, errors, ran = await self._execute(batch, lines[:limit], faulty)
        if batch["status"] == "cancelling":
            end = "cancelled"
        code = {"expired": "batch_expired", "cancelled": "batch_cancelled"}.get(end)
        if code is not None:  # the lines that never ran, as the provider reports them
            errors += "".join(
                result_line(
                    key, number, None, {"code": code, "message": f"batch {end} before this request ran"}
                )
                for number, (key, _) in enumerate(lines[ran:], start=ran + 1)
            )
        batch["status"] = "finalizing"
        for kind, text in (("output_file_id", output), ("error_file_id", errors)):
            if text:
                batch[kind] = self._store(f"{batch_id}_{kind}.jsonl", text.encode("utf-8"), "batch_output")[
                    "id"
                ]
        batch.update(status=end, **{f"{end}_at": int(time.time())})
        self.stats[end] += 1

    async def _delay(self, batch: dict[str, Any]) -> None:
        """Stay in progress for batch_delay_s (read live: a test may shorten it), unless cancelled."""
        started = time.monotonic()
        while time.monotonic() - started < self.knobs().batch_delay_s and batch["status"] != "cancelling":
            await asyncio.sleep(DELAY_STEP_S)

    async def _execute(
        self, batch: dict[str, Any], lines: list[tuple[str, dict[str, Any]]], faulty: bool
    ) -> tuple[str, str, int]:
        """Run lines through the chat handler until done or cancelled: (output file, error file, lines
        run)."""
        output: list[str] = []
        errors: list[str] = []
        ran = 0
        share = self.knobs().batch_failed_share if faulty else 0.0
        for number, (key, body) in enumerate(lines, start=1):
            if batch["status"] == "cancelling":
                break
            if self.rng.random() < share:
                errors.append(
                    result_line(key, number, None, {"code": "server_error", "message": "world fault"})
                )
                batch["request_counts"]["failed"] += 1
            else:
                output.append(result_line(key, number, self.answer(body), None))
                batch["request_counts"]["completed"] += 1
            self.stats["lines"] += 1
            ran = number
            await asyncio.sleep(0)  # let polls and cancels in between lines
        return "".join(output), "".join(errors), ran
