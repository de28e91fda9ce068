"""What benchmarks/reliability.py's and benchmarks/machine.py's probes share: the demo shrunk to seconds,
waiting on a run, the response journal's rows, what a kill re-bought, the ledger against the server."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.demo import demo_config
from lion_core.api.ledger import run_ledger
from lion_core.config import LionConfig
from lion_core.run.rundir import RunDir, response_cache
from lion_core.world.server import WorldServer

ROLES = ("teacher", "referee", "generator")
CONCURRENCY = 4  # per role: the bound on what one kill can re-buy
LATENCY_MS = 60  # keeps every stage long enough to be interrupted
WAIT_S = 600  # the longest a probe waits for a run (a stuck probe fails instead of hanging)
ORPHAN_WAIT_S = 30  # how long a killed run's embedded Prefect server may take to stop
POLL_S = 0.005
NEVER_RECORDED = ("in_flight", "unrecorded")  # journal states of a request whose reply was never recorded


def probe_config(run_dir: Path, port: int, iterations: int = 2, **changes: Any) -> LionConfig:
    """The demo shrunk to seconds (60 seeds, 24 new per iteration, 20 steps), CONCURRENCY per role."""
    data = demo_config(run_dir, iterations, 0, port).model_dump()
    data["world"].update(seed_size=60, heldout_size=36)
    data["student"].update(max_steps=20, epochs=1)
    data["loop"].update(new_per_iteration=24, batch_size=16, task_retry_delay_s=0.2)
    for role in ROLES:
        data[role].update(concurrency=CONCURRENCY)
    for section, values in changes.items():
        data[section] = {**(data.get(section) or {}), **values}
    return LionConfig.model_validate(data)


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(
    condition: Callable[[], bool], process: subprocess.Popen | None = None, limit_s: float = WAIT_S
) -> bool:
    """Poll `condition` (False if `process` ends first or `limit_s` passes)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def journal_rows(config: LionConfig) -> list[tuple[str, str, str]]:
    """(role, key, state) of every journaled request of the run."""
    path = response_cache(config)
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return db.execute("SELECT role, key, state FROM requests ORDER BY id").fetchall()


def rebought(rows: list[tuple[str, str, str]]) -> Counter:
    """Per role: requests sent again because an earlier copy's reply was never recorded (in flight at a
    kill); a copy that never left the client's queue counts too, so this is an upper bound."""
    counts: Counter = Counter()
    unsettled: Counter = Counter()
    for role, key, state in rows:
        if unsettled[(role, key)]:
            counts[role] += 1
            unsettled[(role, key)] -= 1
        unsettled[(role, key)] += state in NEVER_RECORDED
    return counts


def ledger_against_server(config: LionConfig, server: WorldServer) -> dict[str, Any]:
    total = run_ledger(RunDir(config.run_dir).ledger, response_cache(config)).to_dict()["total"]
    served = server.stats.prompt_tokens + server.stats.completion_tokens
    return {
        "served_tokens": served,
        "ledger_tokens": total["tokens"],
        "ledger_worst_case_tokens": total["worst_case_tokens"],
        "nothing_lost": total["tokens"] <= served <= total["worst_case_tokens"],
    }
