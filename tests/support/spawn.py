"""`lion` in a process group of its own, as a terminal starts it, and nothing of it left behind; and
free ports for what the tests start.

`lion_process(*args)` starts `python -m lion_cli *args` (this checkout's `lion`) with
start_new_session=True and yields its Popen: a test may wait for it, read it, signal it or its group.
When the block ends, passed or failed, what still runs of the group is SIGKILLed, and every process the
run started — its Prefect server, the server's reaper, a fine-tune's `accelerate launch` — must be gone
within SERVER_STOP_S: one left behind is stopped and fails the test with ServerLeftBehind; a block that
failed already keeps its own failure, with a note naming what was left. `run_lion(*args, timeout=...)` is
one run to its end, its output captured.

Prefect's embedded server and its reaper run in sessions of their own (lion_cli/process.py), out of the
group's reach, and would outlive a killed `lion` as orphans of PID 1: orphans of other test sessions on
the same machine look the same, so a process of this run is told apart by a marker in its environment,
which it inherits from the `lion` that started it. `left_by(variable, value)` finds every process
carrying a marker (tests/conftest.py uses it for the whole test session).
"""

from __future__ import annotations

import ast
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.support.paths import REPO

SERVER_MARKS = ("prefect.server.api.server", "uvicorn")  # in a Prefect server's command line
MARKER = "LION_TEST_SPAWN"  # environment variable naming the lion_process a process descends from
SERVER_STOP_S = 30.0  # how long a finished run's server may take to stop (its reaper SIGTERMs it)
POLL_S = 0.2


class ServerLeftBehind(AssertionError):
    """A Prefect server, or another process started by a `lion` of the test, still ran after the test."""


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    pgid: int
    stat: str
    args: str


def processes() -> list[Process]:
    """Every process of the machine that has not exited (`ps -eo pid=,ppid=,pgid=,stat=,args=`)."""
    listing = subprocess.run(  # -ww: whole command lines, whatever COLUMNS says (pytest sets it)
        ["ps", "-ww", "-eo", "pid=,ppid=,pgid=,stat=,args="], capture_output=True, text=True, check=True
    ).stdout
    found = []
    for line in listing.splitlines():
        fields = line.split(None, 4)
        if len(fields) >= 4 and not fields[3].startswith("Z"):
            pid, ppid, pgid = (int(f) for f in fields[:3])
            found.append(Process(pid, ppid, pgid, fields[3], "".join(fields[4:])))
    return found


def descends_from(pid: int, marker: str, variable: str = MARKER) -> bool:
    """Whether the process carries `variable`=`marker` in its environment (false where it cannot be
    read)."""
    try:
        environ = (Path("/proc") / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return f"{variable}={marker}".encode() in environ.split(b"\0")


def left_by(variable: str, marker: str, but: int | None = None) -> list[Process]:
    """Every running process (but the one `but`) whose environment carries `variable`=`marker`."""
    return [p for p in processes() if p.pid != but and descends_from(p.pid, marker, variable)]


def group_members(group: int) -> list[Process]:
    return [p for p in processes() if p.pgid == group]


def servers_of(group: int, marker: str) -> list[Process]:
    """The Prefect servers in the process group, and every process outside it (its own session, an
    orphan of PID 1) started by a process of it: a server, its reaper, a fine-tune's launcher."""
    return [
        p
        for p in processes()
        if (p.pgid == group and any(mark in p.args for mark in SERVER_MARKS)) or descends_from(p.pid, marker)
    ]


def stop(pids: list[int]) -> None:
    """SIGTERM, and SIGKILL what is still there after 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and {p.pid for p in processes()} & set(pids):
            time.sleep(POLL_S)


class lion_process:  # lower case: used as a function, `with lion_process("run", path) as process:`
    """`python -m lion_cli *args` in a process group of its own; see the module's docstring.

    output: stdout and stderr piped (text) instead of discarded.
    env: the whole environment (default: this one, Prefect logging at WARNING); the marker is added.
    python: run this code (`python -c`) instead of `-m lion_cli` (a probe that runs lion_cli itself).
    """

    def __init__(
        self,
        *args: str,
        output: bool = False,
        env: dict[str, str] | None = None,
        python: str | None = None,
        server_stop_s: float = SERVER_STOP_S,
    ) -> None:
        code = ("-c", python) if python is not None else ("-m", "lion_cli", *args)
        self.command = [sys.executable, *code]
        self.name = f"python -c {python.strip()!r}" if python is not None else " ".join(["lion", *args])
        self.output = output
        self.env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"} if env is None else env
        self.server_stop_s = server_stop_s
        self.marker = uuid.uuid4().hex

    def __enter__(self) -> subprocess.Popen[str]:
        stream = subprocess.PIPE if self.output else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO,
            env={**self.env, MARKER: self.marker},
            start_new_session=True,
            stdout=stream,
            stderr=stream,
            text=True,
        )
        return self.process

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        left = self.end()
        if left:
            message = f"Prefect server(s) or other processes left behind by `{self.name}`: " + "; ".join(left)
            if error is None:
                raise ServerLeftBehind(message)
            if hasattr(error, "add_note"):  # Python 3.11
                error.add_note(message)
            else:
                print(message, file=sys.stderr)

    def end(self) -> list[str]:
        """Kills what is left of the group, waits for the run's processes to end; the ones that did not
        (stopped now), as 'PID ARGS'."""
        group = self.process.pid
        if self.process.poll() is None:  # still running after the test
            os.killpg(group, signal.SIGKILL)
        self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None and not stream.closed:
                stream.close()
        deadline = time.monotonic() + self.server_stop_s
        while (group_members(group) or servers_of(group, self.marker)) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        left = list({p.pid: p for p in [*servers_of(group, self.marker), *group_members(group)]}.values())
        stop([p.pid for p in left])
        return [f"{p.pid} (parent {p.ppid}, group {p.pgid}) {p.args}" for p in left]


def run_lion(
    *args: str, timeout: float, env: dict[str, str] | None = None, python: str | None = None
) -> subprocess.CompletedProcess[str]:
    """One `lion *args` run to its end in a lion_process, its output captured (TimeoutExpired after
    `timeout` seconds, the group killed)."""
    with lion_process(*args, output=True, env=env, python=python) as process:
        out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def loaded_by_lion(argv: list[str], modules: tuple[str, ...], prelude: str = "") -> tuple[str, list[str]]:
    """`lion *argv` run in a fresh interpreter, as the `lion` script runs it, after the code `prelude`:
    its output, and which of `modules` it loaded."""
    probe = (
        "import runpy, sys\n"
        f"{prelude}"
        f"sys.argv = ['lion', *{argv!r}]\n"
        "try:\n    runpy.run_module('lion_cli', run_name='__main__')\n"
        "except SystemExit as done:\n    assert done.code in (0, None), done.code\n"
        f"print(sorted(m for m in {modules!r} if m in sys.modules))\n"
    )
    done = run_lion(python=probe, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, ast.literal_eval(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens now (a connection to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
