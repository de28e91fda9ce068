"""Run as: .venv/bin/python benchmarks/fanout.py

Teacher fan-out against the offline world server (`lion world serve`, in its own process) with a fixed
latency: requests/s of `complete_all` through one OpenAIChatClient, as a share of the ideal
min(rate limit, concurrency / latency), and against a one-at-a-time loop (the original scripts'
pattern, without their sleep(20)).
Every request is distinct (no cache hits). Writes benchmarks/results/fanout.json.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from random import Random

from common import markdown, save, set_faults, world_process, world_stats

from lion_core import prompts
from lion_core.api.cache import ResponseCache
from lion_core.api.client import OpenAIChatClient
from lion_core.api.ledger import Ledger
from lion_core.chat import complete_all
from lion_core.config import EndpointConfig
from lion_core.world.families import sample_tasks

LATENCY_MS = 100
CASES = [  # (name, concurrency, client and server requests/min, requests)
    ("rate-limited", 32, 1200, 400),
    ("concurrency-bound", 8, None, 400),
    ("concurrency-bound", 16, None, 800),
    ("concurrency-bound", 32, None, 1200),
]
SEQUENTIAL_REQUESTS = 40
PORT = 8931


def conversations(n: int, seed: int) -> list[list[dict[str, str]]]:
    return [prompts.teacher_messages(t.instruction) for t in sample_tasks(n, Random(seed), levels=(1, 2, 3))]


def client(url: str, concurrency: int, rpm: float | None, folder: Path) -> OpenAIChatClient:
    endpoint = EndpointConfig(base_url=f"{url}/v1", concurrency=concurrency, requests_per_minute=rpm)
    return OpenAIChatClient("teacher", endpoint, cache=ResponseCache(folder / "c.sqlite"), ledger=Ledger())


async def sequential(c: OpenAIChatClient, convs) -> None:
    for messages in convs:
        await c.complete(messages)


def measure(name: str, concurrency: int, rpm: float | None, n: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, world_process(PORT + seed) as url:
        set_faults(url, latency_ms=LATENCY_MS, rate_limit_rpm=rpm)
        fan = client(url, concurrency, rpm, Path(tmp) / "a")
        started = time.perf_counter()
        asyncio.run(complete_all(fan, conversations(n, seed)))
        fan_rps = n / (time.perf_counter() - started)
        one = client(url, concurrency, rpm, Path(tmp) / "b")
        started = time.perf_counter()
        asyncio.run(sequential(one, conversations(SEQUENTIAL_REQUESTS, seed + 1)))
        seq_rps = SEQUENTIAL_REQUESTS / (time.perf_counter() - started)
        ideal = min(rpm / 60 if rpm else float("inf"), concurrency / (LATENCY_MS / 1000))
        return {
            "case": name,
            "concurrency": concurrency,
            "rate limit /min": rpm or "none",
            "latency ms": LATENCY_MS,
            "ideal req/s": round(ideal, 1),
            "fan-out req/s": round(fan_rps, 1),
            "share of ideal": f"{fan_rps / ideal:.0%}",
            "one-at-a-time req/s": round(seq_rps, 1),
            "speed-up": f"{fan_rps / seq_rps:.1f}x",
            "429s": world_stats(url)["faults"].get("rate_limit", 0),
        }


def main() -> None:
    rows = [measure(name, c, rpm, n, seed) for seed, (name, c, rpm, n) in enumerate(CASES)]
    save("fanout", ".venv/bin/python benchmarks/fanout.py", rows)
    print(markdown(rows))


if __name__ == "__main__":
    main()
