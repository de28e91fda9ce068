"""Session-wide fixtures. Prefect settings are fixed before anything imports prefect. The helpers the
tests share are in tests/support/ (fakes, configs, spawn, world, paths). The test session leaves no
process behind: every process it starts carries SESSION_MARKER in its environment, and a check at the
end of the session fails if one still runs (issue 22, item 4)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

# inherited by every process the session starts, and theirs (SESSION_MARKER)
os.environ["LION_TEST_SESSION"] = uuid.uuid4().hex
if "PYTEST_XDIST_WORKER" in os.environ or "PREFECT_HOME" not in os.environ:  # one per worker (make test)
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="lion-prefect-home-")
if "PYTEST_XDIST_WORKER" in os.environ:  # the workers share the cores: one torch thread each, and theirs
    os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from lion_core import data as packaged_data
from lion_core.world.server import WorldServer

SESSION_MARKER = "LION_TEST_SESSION"
LEFT_BEHIND_WAIT_S = 30.0  # how long the session's processes may take to end after its last test

pytest.register_assert_rewrite("tests.support")  # the shared helpers' asserts explain their failures too


def stopped_at_exit() -> set[int]:
    """The Prefect servers that flows run in this process started, and the reapers of the ones `lion`
    commands run in process (CliRunner) started: they end when this process does (Prefect stops its
    servers at exit; a reaper's pipe from this process closes), after the session's check; so does the
    multiprocessing resource tracker that torch or datasets may have started in this process."""
    pids = set()
    server = sys.modules.get("prefect.server.api.server")
    if server is not None:
        running = server.SubprocessASGIServer._instances.values()
        pids |= {s.server_process.pid for s in running if s.server_process is not None}
    process = sys.modules.get("lion_cli.process")
    if process is not None:
        pids |= {reaper.pid for reaper in process._REAPERS}
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    if tracker is not None and tracker._resource_tracker._pid is not None:
        pids.add(tracker._resource_tracker._pid)  # Python's own helper: it ends when this process does
    return pids


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    """After the last test: no process the session started still runs (stopped now, and the session
    fails, naming them)."""
    yield
    from tests.support.spawn import left_by, stop

    marker, ours = os.environ[SESSION_MARKER], stopped_at_exit()

    def left_behind() -> list:
        return [p for p in left_by(SESSION_MARKER, marker, but=os.getpid()) if p.pid not in ours]

    deadline = time.monotonic() + LEFT_BEHIND_WAIT_S
    while (left := left_behind()) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        stop([p.pid for p in left])
        named = "; ".join(f"{p.pid} (parent {p.ppid}) {p.args}" for p in left)
        pytest.fail(f"the test session left processes behind: {named}", pytrace=False)


@pytest.fixture
def public_data() -> Path:
    """The folder of the public instruction sets shipped in the package (lion_core/data): always there."""
    return packaged_data.path("vicuna_bench_questions.jsonl").parent


@pytest.fixture
def world():
    """A fresh offline world server on a free port."""
    with WorldServer(seed=0) as server:
        yield server


@pytest.fixture(scope="session")
def tiny_student_path(tmp_path_factory) -> Path:
    """A freshly built tiny student (shared by the session; tests copy it before training)."""
    from lion_core.world.student import build_tiny_student

    return build_tiny_student(tmp_path_factory.mktemp("tiny") / "student")
