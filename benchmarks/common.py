"""Shared helpers of the benchmarks: where results go and what machine produced them."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"

from lion_core.records import atomic_write_text  # noqa: E402


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()}


def save(name: str, command: str, rows: list[dict[str, Any]], **extra: Any) -> Path:
    """benchmarks/results/<name>.json with the command to reproduce it and the machine."""
    path = RESULTS / f"{name}.json"
    payload = {"command": command, "machine": machine(), "rows": rows, **extra}
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    return path


def markdown(rows: list[dict[str, Any]]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows])


@contextmanager
def world_process(port: int, *options: str) -> Iterator[str]:
    """`lion world serve` in its own process (as a real provider would be); yields its base URL."""
    command = [sys.executable, "-m", "lion_cli", "world", "serve", "--port", str(port), *options]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/v1/models", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"world server did not start on port {port}") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server started a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def world_stats(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/world/stats", timeout=10).json()


def set_faults(url: str, **knobs: Any) -> None:
    httpx.post(f"{url}/world/faults", json=knobs, timeout=10).raise_for_status()
