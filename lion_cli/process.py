"""Process control of `lion`: the embedded Prefect server and its reaper, Ctrl-C, the log filters that
keep expected stops to one line, exit codes, and running a flow to one of them.

Imported before Prefect: it sets the environment Prefect reads at import (no telemetry, a start-up
timeout a loaded machine can meet).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

from lion_cli.output import console, say_error

# The embedded Prefect server would try to send usage telemetry; this tool must run offline quietly.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect waits 20 s for its embedded server, which a loaded machine can miss (seen at load ~14); a
# user's own setting wins (Prefect is imported later, inside the commands). docs/prefect.md: "Start-up".
EMBEDDED_SERVER_STARTUP_S = 180
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(EMBEDDED_SERVER_STARTUP_S))

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUDGET = 3
EXIT_BUSY = 4  # another process is running the same run directory
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)

# Run beside Prefect's temporary server: waits until the `lion` process that started it ends, however it
# ends (its stdin pipe closes), then stops the server, so it never outlives its run. A pidfd names the
# server process itself, so a recycled pid is never signalled.
SERVER_REAPER = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
pid = int(sys.argv[1])
try:
    target = os.pidfd_open(pid)
    stop = lambda: signal.pidfd_send_signal(target, signal.SIGTERM)
except ProcessLookupError:
    sys.exit(0)
except AttributeError:  # no pidfd (not Linux): the pid itself
    stop = lambda: os.kill(pid, signal.SIGTERM)
sys.stdin.buffer.read()
try:
    stop()
except ProcessLookupError:
    pass
"""
# The reapers of this process: their pipes close when it exits (after Prefect stopped its server).
_REAPERS: list[subprocess.Popen] = []


class QuietBudgetStop(logging.Filter):
    """Drops Prefect's log records of a budget stop (tracebacks, failed states): the CLI says it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        from lion_core.api.budget import BudgetExceededError

        error = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        return not (
            isinstance(error, BudgetExceededError)
            or "BudgetExceededError" in message
            or "budget: max_" in message
        )


@contextmanager
def own_session() -> Iterator[None]:
    """Processes started meanwhile get a session of their own, out of the terminal's reach: Ctrl-C (a
    SIGINT to the terminal's foreground process group) does not kill them under the run that still
    talks to them; their output goes nowhere (the temporary server's shutdown, interrupting its event
    flush, would print tracebacks). Prefect starts its server with a plain subprocess.Popen, hence the
    substitution."""
    real = subprocess.Popen

    class OwnSession(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("start_new_session", True)
            kwargs.setdefault("stdout", subprocess.DEVNULL)
            kwargs.setdefault("stderr", subprocess.DEVNULL)
            super().__init__(*args, **kwargs)

    subprocess.Popen = OwnSession  # type: ignore[misc]
    try:
        yield
    finally:
        subprocess.Popen = real  # type: ignore[misc]


class QuietInterrupt(logging.Filter):
    """After Ctrl-C, drops Prefect's warnings and errors (crashed task and flow runs): the CLI says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        from lion_core.interrupt import STOP

        return not (STOP.is_set() and record.levelno >= logging.WARNING)


def tie_embedded_server() -> None:
    """Start Prefect's temporary server now (the first flow run would) and SERVER_REAPER beside it
    (nothing to do when PREFECT_API_URL names a server of the user's). The server runs in a session of
    its own, so that Ctrl-C stops the run cleanly instead of killing the server under it first; the
    reaper stops it when `lion` ends."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    with own_session():
        server.start()
    assert server.server_process is not None
    if not _REAPERS:
        reaper = [sys.executable, "-c", SERVER_REAPER, str(server.server_process.pid)]
        _REAPERS.append(subprocess.Popen(reaper, stdin=subprocess.PIPE))


class CtrlC:
    """What Ctrl-C does during `lion run`/`lion demo`: set the stop flag (lion_core.interrupt.STOP, which
    the fine-tune and the student's answers check between steps) and cancel the flow's task, as
    asyncio.run would; a second Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None
        self.presses = 0

    def __call__(self, signum: int, frame: object) -> None:
        from lion_core.interrupt import STOP

        STOP.set()
        self.presses += 1
        if self.presses == 1 and self.loop is not None and self.task is not None and not self.task.done():
            self.loop.call_soon_threadsafe(self.task.cancel)
            return
        raise KeyboardInterrupt

    async def run(self, flow_call) -> Any:
        """Await `flow_call` as the task that Ctrl-C cancels."""
        self.loop, self.task = asyncio.get_running_loop(), asyncio.current_task()
        try:
            return await flow_call
        finally:
            self.loop = self.task = None


_CTRL_C = CtrlC()


@contextmanager
def interruptible(resume: str) -> Iterator[None]:
    """Ctrl-C in this block stops the run within seconds (see CtrlC) and exits 130 with one line saying
    how to resume; every file is written atomically and a stopped fine-tune saves nothing, so nothing
    is left half-written."""
    from lion_core.interrupt import STOP

    previous = signal.signal(signal.SIGINT, _CTRL_C)
    try:
        yield
    except BaseException as err:
        if not STOP.is_set() or isinstance(err, typer.Exit | SystemExit):
            raise
        console.print(
            f"interrupted: stopped on Ctrl-C, nothing half-written; resume with: {resume}",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGINT, previous)


def run_flow(flow_call, budget_note: Callable[[Exception], str] | None = None) -> Any:
    """Run a flow coroutine on the embedded Prefect (or the server PREFECT_API_URL names); clean exits:
    one line and an exit code for bad input, a budget stop (its line ends with `budget_note(error)`)
    and an endpoint that kept failing (Ctrl-C: see `interruptible`)."""
    from lion_core.api.budget import BudgetExceededError
    from lion_core.chat import LLMError
    from lion_core.config import ConfigError
    from lion_core.records import RecordError

    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(QuietBudgetStop())
        logging.getLogger(name).addFilter(QuietInterrupt())
    from lion_core.interrupt import STOP, Interrupted

    tie_embedded_server()
    try:
        try:
            return asyncio.run(_CTRL_C.run(flow_call))
        except Exception as err:  # whatever a stopped flow raises on its way out is the stop
            if STOP.is_set():
                raise Interrupted(str(err)) from None
            raise
    except (ConfigError, RecordError) as err:
        say_error("error", err)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except BudgetExceededError as err:
        say_error("stopped before exceeding the budget", f"{err}{budget_note(err) if budget_note else ''}")
        raise typer.Exit(EXIT_BUDGET) from None
    except LLMError as err:
        say_error("an endpoint kept failing", err)
        raise typer.Exit(EXIT_FAILED) from None
