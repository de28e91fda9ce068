"""Run as: .venv/bin/python benchmarks/rate.py

Rate-limit headroom (issue 15): teacher requests against the offline world server (in its own process)
limited in requests/min AND tokens/min, the client configured with the same limits. Teacher-like
proportions: max_tokens 1024 while every reply is 340 tokens (a third). Each case is measured twice in
the same run: with the client's booking (prompt tokens + max_tokens, corrected to the reply's usage,
pausing on the provider's rate-limit headers) and with the booking it replaced (⌈request body bytes /
2⌉ + max_tokens, never corrected; kept here only, as `OldBooking`). A third case does not tell the
client the limits: only the world's x-ratelimit-* headers and 429s (retry-after-ms) pace it. Reported:
the achieved rate as a share of the limit that binds, and the 429s the world answered.
Writes benchmarks/results/rate.json.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from pathlib import Path
from random import Random

import openai
from common import markdown, save, set_faults, world_process, world_stats

from lion_core import prompts
from lion_core.api.cache import ResponseCache
from lion_core.api.client import OpenAIChatClient
from lion_core.api.ledger import Ledger
from lion_core.chat import complete_all
from lion_core.config import EndpointConfig
from lion_core.world.families import sample_tasks

LATENCY_MS = 200
MAX_TOKENS = 1024  # the original teacher's limit
REPLY_TOKENS = 340  # every world reply is padded to this: a third of max_tokens
CONCURRENCY = 32
WARMUP_S = 5  # not measured: the world's bucket starts full (one second of burst)
MEASURE_S = 30
REQUESTS = 2000  # more than any case can send in WARMUP_S + MEASURE_S
CASES = [  # (case, requests/min, tokens/min, the limit that binds, whether the client is told the limits)
    ("tokens bind", 3000, 450_000, "tokens", True),
    ("requests bind", 900, 450_000, "requests", True),
    ("tokens bind, client not told", 3000, 450_000, "tokens", False),  # only the headers and 429s pace it
]
PORT = 8951


class OldBooking(OpenAIChatClient):
    """The booking before issue 15, for comparison only: ⌈body bytes / chars_per_token⌉ + max_tokens,
    never corrected, no response hook (so no pause on the provider's headers)."""

    def _http_client(self) -> openai.DefaultAsyncHttpxClient:
        return openai.DefaultAsyncHttpxClient(event_hooks={"request": [self._old_booking]})

    async def _old_booking(self, request: object) -> None:
        body = getattr(request, "content", b"") or b""
        booked = math.ceil(len(body) / self.chars_per_token) + self.booking(body).max_tokens
        await self.limiter.acquire(booked)


BOOKINGS = {OpenAIChatClient: "prompt + max_tokens, corrected", OldBooking: "bytes/2 + max_tokens (old)"}


def conversations(n: int, seed: int) -> list[list[dict[str, str]]]:
    return [prompts.teacher_messages(t.instruction) for t in sample_tasks(n, Random(seed), levels=(1, 2, 3))]


def client(
    kind: type[OpenAIChatClient], url: str, rpm: float | None, tpm: float | None, folder: Path
) -> OpenAIChatClient:
    endpoint = EndpointConfig(
        base_url=f"{url}/v1",
        max_tokens=MAX_TOKENS,
        concurrency=CONCURRENCY,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
    )
    return kind("teacher", endpoint, cache=ResponseCache(folder / "cache.sqlite"), ledger=Ledger())


def counts(url: str) -> tuple[int, int, int]:
    """(answered requests, tokens used as usage counts them, 429s for the rate limit) so far."""
    stats = world_stats(url)
    tokens = stats["prompt_tokens"] + stats["completion_tokens"]
    return sum(stats["answered"].values()), tokens, stats["faults"].get("rate_limit", 0)


async def drive(c: OpenAIChatClient, url: str, seed: int) -> tuple[int, int, int]:
    """Send requests for WARMUP_S + MEASURE_S; the counts over the last MEASURE_S."""
    sending = asyncio.create_task(complete_all(c, conversations(REQUESTS, seed)))
    await asyncio.sleep(WARMUP_S)
    start = await asyncio.to_thread(counts, url)
    await asyncio.sleep(MEASURE_S)
    end = await asyncio.to_thread(counts, url)
    sending.cancel()
    await asyncio.gather(sending, return_exceptions=True)
    if sending.done() and not sending.cancelled() and sending.exception() is None:
        raise RuntimeError("ran out of requests before the measurement ended: raise REQUESTS")
    return end[0] - start[0], end[1] - start[1], end[2] - start[2]


def measure(
    case: str, rpm: float, tpm: float, binds: str, told: bool, kind: type[OpenAIChatClient], seed: int
) -> dict:
    with tempfile.TemporaryDirectory() as tmp, world_process(PORT + seed) as url:
        set_faults(
            url, latency_ms=LATENCY_MS, rate_limit_rpm=rpm, rate_limit_tpm=tpm, reply_min_tokens=REPLY_TOKENS
        )
        c = client(kind, url, rpm if told else None, tpm if told else None, Path(tmp))
        started = time.perf_counter()
        requests, tokens, rejected = asyncio.run(drive(c, url, seed))
        c.cache.close()
        assert time.perf_counter() - started >= MEASURE_S
    per_min = 60.0 / MEASURE_S
    achieved = requests * per_min if binds == "requests" else tokens * per_min
    limit = rpm if binds == "requests" else tpm
    return {
        "case": case,
        "booking": BOOKINGS[kind],
        "limit req/min": f"{rpm:,.0f}",
        "limit tokens/min": f"{tpm:,.0f}",
        "achieved req/min": f"{requests * per_min:,.0f}",
        "achieved tokens/min": f"{tokens * per_min:,.0f}",
        "share of binding limit": f"{achieved / limit:.0%}",
        "429s": rejected,
    }


def main() -> None:
    rows = []
    for case, rpm, tpm, binds, told in CASES:
        for kind in (OpenAIChatClient, OldBooking):
            rows.append(measure(case, rpm, tpm, binds, told, kind, seed=len(rows)))
            print(markdown(rows[-1:]), flush=True)
    save(
        "rate",
        ".venv/bin/python benchmarks/rate.py",
        rows,
        settings={
            "latency_ms": LATENCY_MS,
            "max_tokens": MAX_TOKENS,
            "reply_tokens": REPLY_TOKENS,
            "concurrency": CONCURRENCY,
            "measured_s": MEASURE_S,
            "warmup_s": WARMUP_S,
        },
    )
    print(markdown(rows))


if __name__ == "__main__":
    main()
