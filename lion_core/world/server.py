"""The offline world's OpenAI-compatible HTTP server (FastAPI + uvicorn on 127.0.0.1).

Run as:  lion world serve --port 8765 [--latency-ms 20 --fault-429 0.1 --fault-5xx 0.2 ...]

Endpoints: `/v1/models`, `/v1/chat/completions` (teacher, referee and generator, read from the
prompt), `/v1/files` and `/v1/batches` (the Batch API, lion_core.world.batches), `/world/stats`
(what the server saw: requests per role, tokens, repeated teacher requests, batches)
and `/world/faults` (GET/POST the fault knobs at run time). Every 200 reply carries exact `usage`
counts under the world's tokenizer (`count_tokens`); failed requests carry none.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from random import Random
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from lion_core.world.batches import BatchWorld
from lion_core.world.roles import RoleSettings, classify, reply

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
STARTUP_TIMEOUT_S = 30
MESSAGE_OVERHEAD = 3  # tokens per chat message beyond its text, as chat formats add role markers


def count_tokens(text: str) -> int:
    """The world's token count: words and punctuation marks."""
    return len(TOKEN_RE.findall(text))


def truncate_tokens(text: str, limit: int) -> str:
    """The prefix of text holding its first `limit` tokens."""
    matches = list(TOKEN_RE.finditer(text))
    return text if len(matches) <= limit else text[: matches[limit - 1].end()]


@dataclass
class Faults:
    """Fault knobs; shares are probabilities per request."""

    latency_ms: float = 0.0
    share_429: float = 0.0
    retry_after_ms: int = 50
    share_5xx: float = 0.0
    share_timeout: float = 0.0
    hang_s: float = 5.0
    share_malformed: float = 0.0
    rate_limit_rpm: float | None = None
    roles: list[str] | None = None  # the roles that suffer faults (None: all)
    max_faults: int | None = None  # an outage: faults stop after this many (None: never)
    # Batch API faults (lion_core.world.batches)
    batch_delay_s: float = 0.0  # seconds a batch is in progress before its lines run
    batch_failed_share: float = 0.0  # share of batch lines answered with an error
    batch_expire_share: float | None = None  # a batch expires after answering this share of its lines
    batch_cancel_share: float | None = None  # a batch is cancelled after answering this share
    batch_faulty: int | None = None  # only the first N batches suffer batch faults (None: all)


@dataclass
class Stats:
    """What the server saw. `teacher_keys` counts each distinct teacher request."""

    requests: int = 0
    received: Counter = field(default_factory=Counter)
    answered: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    teacher_keys: Counter = field(default_factory=Counter)
    batches: Counter = field(default_factory=Counter)  # created, completed, expired, ..., lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": dict(self.batches),
            "requests": self.requests,
            "received": dict(self.received),
            "answered": dict(self.answered),
            "faults": dict(self.faults),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "teacher_requests": {
                "distinct": len(self.teacher_keys),
                "repeated": self.repeated_teacher_requests(),
            },
        }

    def repeated_teacher_requests(self) -> int:
        """Teacher requests the server received more than once (0 when nothing was paid twice)."""
        return sum(n - 1 for n in self.teacher_keys.values() if n > 1)


class _Limiter:
    """Server-side rate limit: a token bucket with one second of burst."""

    def __init__(self) -> None:
        self.tokens = 0.0
        self.stamp = time.monotonic()

    def allow(self, rpm: float) -> bool:
        now, rate = time.monotonic(), rpm / 60.0
        self.tokens = min(max(rate, 1.0), self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": "world_fault", "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


class WorldServer:
    """The world's app with its stats and fault knobs; `start()` serves it from a thread."""

    def __init__(
        self, roles: RoleSettings | None = None, faults: Faults | None = None, seed: int = 0
    ) -> None:
        self.roles = roles or RoleSettings()
        self.faults = faults or Faults()
        self.stats = Stats()
        self.seed = seed
        self._fault_rng = Random(seed)
        self._limiter = _Limiter()
        self._key_counts: Counter = Counter()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self.batches = BatchWorld(self.answer, lambda: self.faults, lambda: self.stats.batches, seed)
        self.app = self._build_app()

    @property
    def url(self) -> str:
        """Base URL for OpenAI clients, e.g. http://127.0.0.1:8765/v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Lion offline world", docs_url=None, redoc_url=None)
        app.get("/v1/models")(self._models)
        app.post("/v1/chat/completions")(self._chat)
        app.get("/world/stats")(lambda: self.stats.to_dict())
        app.get("/world/faults")(lambda: asdict(self.faults))
        app.post("/world/faults")(self._set_faults)
        self.batches.mount(app)
        return app

    async def _models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "world", "object": "model", "owned_by": "lion-world"}]}

    async def _set_faults(self, request: Request) -> dict[str, Any]:
        for key, value in (await request.json()).items():
            if not hasattr(self.faults, key):
                return _error(400, f"unknown fault knob {key!r}")
            setattr(self.faults, key, value)
        return asdict(self.faults)

    def _fault(self, role: str) -> JSONResponse | str | None:
        """A fault response for this request, 'timeout', or None."""
        f, draw = self.faults, self._fault_rng.random()
        if f.roles is not None and role not in f.roles:
            return None
        if f.max_faults is not None and sum(self.stats.faults.values()) >= f.max_faults:
            return None
        if f.rate_limit_rpm and not self._limiter.allow(f.rate_limit_rpm):
            self.stats.faults["rate_limit"] += 1
            return _error(429, "rate limit reached", {"retry-after-ms": str(f.retry_after_ms)})
        for name, share in (("429", f.share_429), ("5xx", f.share_5xx), ("timeout", f.share_timeout)):
            if draw < share:
                self.stats.faults[name] += 1
                if name == "429":
                    return _error(429, "too many requests", {"retry-after-ms": str(f.retry_after_ms)})
                return _error(503, "service unavailable") if name == "5xx" else "timeout"
            draw -= share
        return None

    def _request_rng(self, messages: list[dict[str, str]], seed: int | None = None) -> Random:
        """A seed per request: with the request's own `seed` parameter (a sample of an otherwise identical
        request), that seed; else how often the request was seen. Replies reproduce across runs, whatever
        order concurrent requests arrive in; resamples differ."""
        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        if seed is not None:
            return Random(f"{self.seed}:{key}:seed={seed}")
        self._key_counts[key] += 1
        return Random(f"{self.seed}:{key}:{self._key_counts[key]}")

    def _role_settings(self) -> RoleSettings:
        """The malformed fault hits the referee (no scores) and the generator (bad instruction)."""
        share = self.faults.share_malformed
        return replace(
            self.roles, referee_malformed_share=share, malformed_share=max(self.roles.malformed_share, share)
        )

    def _receive(self, messages: list[dict[str, str]]) -> str:
        """Count a request in the stats; returns its role."""
        role = classify(messages)
        self.stats.requests += 1
        self.stats.received[role] += 1
        if role == "teacher":
            self.stats.teacher_keys[
                hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
            ] += 1
        return role

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """A chat completion for one request body, without HTTP faults (a batch line)."""
        messages = body.get("messages") or []
        role = self._receive(messages)
        _, content = reply(messages, self._request_rng(messages, body.get("seed")), self._role_settings())
        return self._completion(body, messages, role, content)

    async def _chat(self, request: Request) -> Any:
        body = await request.json()
        messages = body.get("messages") or []
        role = self._receive(messages)
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000.0)
        fault = self._fault(role)
        if fault == "timeout":
            await asyncio.sleep(self.faults.hang_s)
            return _error(504, "gateway timeout")
        if fault is not None:
            return fault
        _, content = reply(messages, self._request_rng(messages, body.get("seed")), self._role_settings())
        return self._completion(body, messages, role, content)

    def _completion(
        self, body: dict[str, Any], messages: list[dict[str, str]], role: str, content: str
    ) -> dict:
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 1 << 30)
        finish = "stop"
        if count_tokens(content) > max_tokens:
            content, finish = truncate_tokens(content, max_tokens), "length"
        prompt = sum(count_tokens(m.get("content") or "") + MESSAGE_OVERHEAD for m in messages)
        completion = count_tokens(content)
        self.stats.answered[role] += 1
        self.stats.prompt_tokens += prompt
        self.stats.completion_tokens += completion
        return {
            "id": f"world-{self.stats.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "world"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    # ------------------------------------------------------------------ serving from a thread

    def start(self, port: int = 0, host: str = "127.0.0.1") -> WorldServer:
        """Serve from a background thread; port 0 picks a free port (see `.url`); OSError if it is taken."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn will
            probe.bind((host, port))  # fail here, clearly, rather than inside uvicorn's thread
        # uvicorn binds the socket itself: a socket handed in through `sockets=` answers ~40 ms slower
        config = uvicorn.Config(
            self.app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise OSError(f"world server did not start on {host}:{port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            assert self._thread is not None
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> WorldServer:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
