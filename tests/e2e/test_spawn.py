"""tests/support/spawn.py: what the `lion` spawner leaves behind fails the test that left it, and
nothing else does (other sessions' orphaned servers on the same machine included)."""

from __future__ import annotations

import signal
import sys

import pytest

from tests.support.spawn import ServerLeftBehind, lion_process, processes, run_lion

# Starts a stand-in server (its command line names uvicorn) in a session of its own, as lion's embedded
# Prefect server is, tells its pid and exits: the stand-in is an orphan of PID 1, as after a group kill.
ORPHAN = """
import subprocess, sys
sleep = [sys.executable, "-c", "import time; time.sleep(300)", "uvicorn"]
child = subprocess.Popen(sleep, start_new_session=True)
print(child.pid, flush=True)
"""


def running(pid: int) -> bool:
    return pid in {p.pid for p in processes()}


def test_a_run_that_ends_cleanly_leaves_nothing_behind() -> None:
    done = run_lion("world", "sample", "--n", "2", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(done.stdout.splitlines()) == 2


def test_what_still_runs_of_the_group_after_the_block_is_killed() -> None:
    with lion_process(python="import time; time.sleep(300)") as process:
        assert process.poll() is None
    assert process.returncode == -signal.SIGKILL


def test_a_server_left_behind_fails_the_test_and_is_stopped() -> None:
    spawned = lion_process(python=ORPHAN, output=True, server_stop_s=1)
    named = r"left behind by `python -c .*`: \d+ \(parent .*uvicorn$"  # the stand-in, by pid and command
    with pytest.raises(ServerLeftBehind, match=named), spawned as process:
        orphan = int(process.stdout.readline())
        process.wait()
        assert running(orphan)
    assert not running(orphan)


def test_a_block_that_failed_keeps_its_own_failure_and_names_the_server_left_behind() -> None:
    spawned = lion_process(python=ORPHAN, output=True, server_stop_s=1)
    with pytest.raises(RuntimeError, match="the test's own failure") as caught, spawned as process:
        orphan = int(process.stdout.readline())
        raise RuntimeError("the test's own failure")
    assert not running(orphan)
    if sys.version_info >= (3, 11):  # exception notes
        assert any("left behind" in note for note in caught.value.__notes__)
