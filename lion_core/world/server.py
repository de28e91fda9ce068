"""The offline world's OpenAI-compatible HTTP server (FastAPI + uvicorn on 127.0.0.1).

Run as:  lion world serve --port 8765 [--latency-ms 20 --fault-429 0.1 --fault-5xx 0.2 ...]

Endpoints: `/v1/models`, `/v1/chat/completions` (teacher, referee and generator, read from the
prompt), `/v1/files` and `/v1/batches` (the Batch API, lion_core.world.batches), `/world/stats`
(what the server saw: requests per role, tokens, repeated teacher requests, batches)
and `/world/faults` (GET/POST the fault knobs at run time). Every 200 reply carries exact `usage`
counts under the world's tokenizer (`count_tokens`); failed requests carry none. With `rate_limit_rpm` /
`rate_limit_tpm` set, every reply carries OpenAI's `x-ratelimit-*` headers, and a request over a limit is
answered 429 with `retry-after-ms` (tokens counted as `usage` counts them, charged when a reply is written).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
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
RATE_LIMIT = "rate_limit"  # the stats' name of a 429 for a rate limit (not an injected fault)
MESSAGE_OVERHEAD = 3  # tokens per chat message beyond its text, as chat formats add role markers
RATE_LIMIT_BURST_S = 1.0  # a rate limit's bucket holds this many seconds of its rate (its burst)
FILLER_WORD = "filler"  # what pads a reply to `Faults.reply_min_tokens`


def count_tokens(text: str) -> int:
    """The world's token count: words and punctuation marks."""
    return len(TOKEN_RE.findall(text))


def prompt_tokens(messages: list[dict[str, str]]) -> int:
    """The prompt tokens a reply's `usage` reports for `messages`."""
    return sum(count_tokens(m.get("content") or "") + MESSAGE_OVERHEAD for m in messages)


def reset_header(seconds: float) -> str:
    """A duration as OpenAI writes its reset headers: "120ms", "1.5s", "6m0s"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:g}s" if minutes else f"{rest:g}s"


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
    rate_limit_rpm: float | None = None  # requests per minute (429 with retry-after-ms when over)
    rate_limit_tpm: float | None = None  # tokens per minute, counted as the replies' usage counts them
    reply_min_tokens: int | None = None  # replies are padded with filler words to this many tokens
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


class _Bucket:
    """A per-minute rate limit as a bucket holding RATE_LIMIT_BURST_S of its rate; it starts full and may
    go into debt (a reply costs what it used, known only once it is written)."""

    def __init__(self) -> None:
        self.level: float | None = None
        self.stamp = time.monotonic()

    @staticmethod
    def capacity(per_minute: float) -> float:
        return max(per_minute / 60.0 * RATE_LIMIT_BURST_S, 1.0)

    def refill(self, per_minute: float) -> float:
        now, cap = time.monotonic(), self.capacity(per_minute)
        level = cap if self.level is None else self.level + (now - self.stamp) * per_minute / 60.0
        self.level, self.stamp = min(cap, level), now
        return self.level

    def wait_s(self, amount: float, per_minute: float) -> float:
        """Seconds until `amount` (at most a full bucket) is in the bucket."""
        need = min(amount, self.capacity(per_minute))
        return max(0.0, need - self.refill(per_minute)) * 60.0 / per_minute

    def take(self, amount: float, per_minute: float) -> None:
        self.level = self.refill(per_minute) - amount

    def headers(self, kind: str, per_minute: float) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers of this limit (`kind`: requests or tokens)."""
        level = self.refill(per_minute)
        reset = (self.capacity(per_minute) - level) * 60.0 / per_minute
        return {
            f"x-ratelimit-limit-{kind}": f"{per_minute:g}",
            f"x-ratelimit-remaining-{kind}": str(max(0, math.floor(level))),
            f"x-ratelimit-reset-{kind}": reset_header(reset),
        }


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
        self._requests = _Bucket()
        self._tokens = _Bucket()
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

    def _rate_headers(self) -> dict[str, str]:
        """The x-ratelimit-* headers of the limits that are set (none when none is)."""
        f, headers = self.faults, {}
        if f.rate_limit_rpm:
            headers |= self._requests.headers("requests", f.rate_limit_rpm)
        if f.rate_limit_tpm:
            headers |= self._tokens.headers("tokens", f.rate_limit_tpm)
        return headers

    def _rate_limited(self, prompt: int) -> JSONResponse | None:
        """A 429 when a request (or its `prompt` tokens) is not in the buckets; else takes the request."""
        f = self.faults
        wait = self._requests.wait_s(1, f.rate_limit_rpm) if f.rate_limit_rpm else 0.0
        wait = max(wait, self._tokens.wait_s(prompt, f.rate_limit_tpm) if f.rate_limit_tpm else 0.0)
        if wait > 0:
            self.stats.faults[RATE_LIMIT] += 1
            after = {"retry-after-ms": str(math.ceil(wait * 1000))}
            return _error(429, "rate limit reached", self._rate_headers() | after)
        if f.rate_limit_rpm:
            self._requests.take(1, f.rate_limit_rpm)
        return None

    def _fault(self, role: str) -> JSONResponse | str | None:
        """An injected fault response for this request, 'timeout', or None."""
        f, draw = self.faults, self._fault_rng.random()
        if f.roles is not None and role not in f.roles:
            return None
        injected = sum(n for name, n in self.stats.faults.items() if name != RATE_LIMIT)
        if f.max_faults is not None and injected >= f.max_faults:
            return None
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
        # The rate limits hold for every role and never run out (they are limits, not injected faults).
        fault = self._rate_limited(prompt_tokens(messages))
        fault = self._fault(role) if fault is None else fault
        if fault == "timeout":
            await asyncio.sleep(self.faults.hang_s)
            return _error(504, "gateway timeout")
        if fault is not None:
            return fault
        _, content = reply(messages, self._request_rng(messages, body.get("seed")), self._role_settings())
        completion = self._completion(body, messages, role, content)
        if self.faults.rate_limit_tpm:
            self._tokens.take(completion["usage"]["total_tokens"], self.faults.rate_limit_tpm)
        return JSONResponse(completion, headers=self._rate_headers())

    def _completion(
        self, body: dict[str, Any], messages: list[dict[str, str]], role: str, content: str
    ) -> dict:
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 1 << 30)
        finish, pad = "stop", (self.faults.reply_min_tokens or 0) - count_tokens(content)
        content = content + f" {FILLER_WORD}" * pad if pad > 0 else content
        if count_tokens(content) > max_tokens:
            content, finish = truncate_tokens(content, max_tokens), "length"
        prompt = prompt_tokens(messages)
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
