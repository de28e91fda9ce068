"""lion_cli/process.py as the machine meets it (issue 22, items 3 and 4): the embedded Prefect server,
its reaper and their temporary database never outlive `lion`, however it ends — a SIGKILL to its whole
process group (a job scheduler, the test suite's own os.killpg), a closed terminal's SIGHUP, a SIGKILL
of `lion` alone. The spawner (tests/support/spawn.py) fails a test that leaves any process of the run
behind; these tests add what their case needs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.spawn import lion_process, processes

# `lion` as far as its embedded server: the server and its reaper started, then it waits to be killed.
SERVED = """
import os, time
from lion_cli.process import tie_embedded_server
tie_embedded_server()
print(os.environ["PREFECT_SERVER_DATABASE_CONNECTION_URL"].split("///", 1)[1], flush=True)
time.sleep(600)
"""
GONE_S = 30.0  # how long the server may take to stop once `lion` is gone (SIGTERM, then SIGKILL)


def wait_gone(pids: set[int], limit_s: float = GONE_S) -> set[int]:
    deadline = time.monotonic() + limit_s
    while (left := pids & {p.pid for p in processes()}) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.parametrize(
    ("how", "signum"),
    [
        ("group", signal.SIGKILL),
        ("group", signal.SIGHUP),
        ("alone", signal.SIGKILL),
        ("alone", signal.SIGTERM),
    ],
)
def test_nothing_of_lion_outlives_it_however_it_is_killed(how: str, signum: int) -> None:
    with lion_process(python=SERVED, output=True) as process:
        database = Path(process.stdout.readline().strip())
        assert database.parent.is_dir()
        ours = {p.pid for p in processes() if p.ppid == process.pid}  # the server and its reaper
        assert len(ours) == 2, ours
        if how == "group":
            os.killpg(process.pid, signum)
        else:
            os.kill(process.pid, signum)
        process.wait()
        assert not wait_gone(ours), "the server or its reaper outlived lion"
        assert not database.parent.exists()  # the server's temporary database went with it
