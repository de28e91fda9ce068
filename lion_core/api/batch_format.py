"""The Batch API's JSONL file format (OpenAI's, which vLLM's `run-batch` reads and writes too).

Input, one request per line:
    {"custom_id": KEY, "method": "POST", "url": "/v1/chat/completions", "body": {model, messages, ...}}
Output and error files, one line per request (any order):
    {"id": ..., "custom_id": KEY, "response": {"status_code": 200, "body": <chat.completion>}, "error": null}
    {"id": ..., "custom_id": KEY, "response": null, "error": {"code": ..., "message": ...}}
A line's custom_id is the request's response-cache key, so a reply lands in the cache under it.
Pure functions: no I/O, no SDK.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lion_core.chat import Completion, Messages

CHAT_URL = "/v1/chat/completions"
HTTP_OK = 200


class BatchFormatError(ValueError):
    """A batch line cannot be written or read."""


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch: its cache key (the custom_id) and the chat request body."""

    key: str
    body: dict[str, Any]


def request_body(model: str, messages: Messages, params: dict[str, object]) -> dict[str, Any]:
    """The chat request as a synchronous call would send it."""
    return {"model": model, "messages": messages, **params}


def encode_line(request: BatchRequest) -> bytes:
    """One input line, newline-terminated (compact JSON, UTF-8)."""
    line = {"custom_id": request.key, "method": "POST", "url": CHAT_URL, "body": request.body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def chunks(requests: Sequence[BatchRequest], max_requests: int, max_bytes: int) -> list[list[BatchRequest]]:
    """The requests split into files within the provider's limits (requests and bytes per file), in
    order. A single request larger than max_bytes cannot be sent as a batch: BatchFormatError."""
    out: list[list[BatchRequest]] = []
    current: list[BatchRequest] = []
    size = 0
    for request in requests:
        n = len(encode_line(request))
        if n > max_bytes:
            raise BatchFormatError(
                f"request {request.key[:12]}… is {n} bytes, over batch.max_bytes {max_bytes}"
            )
        if current and (len(current) >= max_requests or size + n > max_bytes):
            out.append(current)
            current, size = [], 0
        current.append(request)
        size += n
    if current:
        out.append(current)
    return out


def encode_file(requests: Iterable[BatchRequest]) -> bytes:
    """A whole input file."""
    return b"".join(encode_line(r) for r in requests)


def decode_requests(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(custom_id, body) of every line of an input file (for servers that execute batches)."""
    out = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            out.append((str(item["custom_id"]), dict(item["body"])))
        except (ValueError, KeyError, TypeError) as err:
            raise BatchFormatError(f"input line {number}: {type(err).__name__}: {err}") from None
    return out


@dataclass(frozen=True)
class LineResult:
    """The outcome of one batch line: a completion, or the error that replaced it."""

    key: str
    completion: Completion | None
    error: str | None


def _completion(body: dict[str, Any]) -> Completion:
    choice = body["choices"][0]
    usage = body.get("usage") or {}
    return Completion(
        (choice.get("message") or {}).get("content") or "",
        choice.get("finish_reason") or "stop",
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
    )


def decode_result(line: str) -> LineResult:
    """One output or error line. The response may be OpenAI's {"status_code", "body"} envelope or a bare
    chat.completion (vLLM's older run-batch); a non-200 status or an `error` is an error."""
    item = json.loads(line)
    key = str(item["custom_id"])
    response, error = item.get("response"), item.get("error")
    if error:
        return LineResult(key, None, f"{error.get('code', 'error')}: {error.get('message', '')}")
    if not response:
        return LineResult(key, None, "no response")
    status = int(response.get("status_code", HTTP_OK))
    body = response.get("body", response)
    if status != HTTP_OK:
        message = (body.get("error") or {}).get("message", "") if isinstance(body, dict) else ""
        return LineResult(key, None, f"HTTP {status}: {message}")
    try:
        return LineResult(key, _completion(body), None)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        return LineResult(key, None, f"unreadable reply: {type(err).__name__}")


def decode_results(text: str) -> list[LineResult]:
    """Every line of an output or error file (blank lines skipped; an unreadable line is an error)."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                out.append(decode_result(line))
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                raise BatchFormatError(f"result line {number}: {type(err).__name__}: {err}") from None
    return out


def result_line(key: str, number: int, body: dict[str, Any] | None, error: dict[str, str] | None) -> str:
    """One output (body) or error line as the provider writes it (for servers that execute batches)."""
    response = None if body is None else {"status_code": HTTP_OK, "request_id": f"req-{number}", "body": body}
    item = {"id": f"batch_req_{number}", "custom_id": key, "response": response, "error": error}
    return json.dumps(item, ensure_ascii=False) + "\n"
