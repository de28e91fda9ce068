"""Run as: .venv/bin/python benchmarks/fanout_start.py

Bounded fan-out at the paper's scale (issue 15, item 2): one teacher fan-out of the pool size's
instructions in 64-item batch tasks inside a Prefect flow (the embedded server), each case in a process
of its own. The client answers at once, so what is measured is the fan-out itself: seconds from the
fan-out's start to the first request, total seconds, and the process's peak RSS, bounded
(`loop.batches_in_flight` default for concurrency 32: 2 batch tasks) side by side with every batch
task started at once (the fan-out before the bound). Writes benchmarks/results/fanout_start.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, markdown, save

from lion_core.api.ledger import Ledger
from lion_core.chat import Completion
from lion_core.config import EndpointConfig, LoopConfig
from lion_core.records import Instruction

SIZES = (10_000, 52_000)
BATCH = 64
CONCURRENCY = 32
KIB = 1024


class InstantClient:
    """A chat client that answers at once and notes when the first request left."""

    model_name = "instant"

    def __init__(self) -> None:
        self.endpoint = EndpointConfig(concurrency=CONCURRENCY)
        self.first: float | None = None

    async def complete(self, messages, *, variant: int = 0, max_tokens: int | None = None) -> Completion:
        if self.first is None:
            self.first = time.perf_counter()
        return Completion("An answer of a few words.", "stop", 20, 8)


def one_case(n: int, bounded: bool, results: Path) -> dict:
    """One fan-out of n instructions in this process (the caller runs each case in a fresh one)."""
    from prefect import flow

    from flows.fanout import batches_in_flight, fan_out
    from tasks.api import teacher_batch

    client = InstantClient()
    in_flight = batches_in_flight(client, LoopConfig(batch_size=BATCH)) if bounded else -(-n // BATCH)
    tag = f"{n}-{bounded}-{time.time_ns()}"  # new items per case: no cached batch task
    items = [Instruction(id=f"{tag}-{i}", instruction=f"Answer question {i} of {tag}") for i in range(n)]

    async def call(first: int, part: list[Instruction]):
        return await teacher_batch(client, "instant", part, first)

    @flow(result_storage=results)
    async def stage() -> dict:
        started = time.perf_counter()
        answers = await fan_out(call, items, BATCH, "teacher answers", Ledger(), in_flight)
        assert len(answers) == n
        return {"first request s": client.first - started, "total s": time.perf_counter() - started}

    timing = asyncio.run(stage())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB  # KiB on Linux
    return {**timing, "batch tasks in flight": in_flight, "peak RSS MiB": peak}


def run_case(n: int, bounded: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        case = ["--case", str(n), "--bounded", str(int(bounded)), "--results", tmp]
        command = [sys.executable, __file__, *case]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "pool": f"{n:,}",
        "fan-out": "bounded" if bounded else "all at once",
        "batch tasks": -(-n // BATCH),
        "in flight": row["batch tasks in flight"],
        "first request s": round(row["first request s"], 2),
        "total s": round(row["total s"], 1),
        "peak RSS MiB": round(row["peak RSS MiB"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", type=int)
    parser.add_argument("--bounded", type=int, default=1)
    parser.add_argument("--results")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(one_case(args.case, bool(args.bounded), Path(args.results))))
        return
    rows = [run_case(n, bounded) for n in args.sizes for bounded in (True, False)]
    save("fanout_start", ".venv/bin/python benchmarks/fanout_start.py", rows)
    print(markdown(rows))


if __name__ == "__main__":
    main()
