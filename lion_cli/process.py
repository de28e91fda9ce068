"""Process control of `lion`: the embedded Prefect server and its reaper, stops (Ctrl-C, SIGTERM, SIGHUP),
the console filter that keeps expected stops to one line, exit codes, and running a flow to one of them.

Nothing `lion` starts outlives it, however it ends: the embedded server gets SIGTERM from the kernel when
`lion` ends (PR_SET_PDEATHSIG), and a reaper in a session of its own — out of reach of a signal to
`lion`'s process group — stops it for good and removes its temporary database.

Imported before Prefect: it sets the environment Prefect reads at import (no telemetry, a start-up
timeout a loaded machine can meet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
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
EXIT_BAD_INPUT = 2  # bad input, a damaged run directory included
EXIT_BUDGET = 3
EXIT_BUSY = 4  # another process is running the same run directory
EXIT_STATE_WRITE = 5  # the run's state could not be written: a full disk, a quota, an I/O error
SIGNAL_EXIT_BASE = 128  # a run stopped by signal N exits 128 + N, as a shell reports it
EXIT_HANGUP = SIGNAL_EXIT_BASE + signal.SIGHUP  # 129: its terminal closed
EXIT_INTERRUPTED = SIGNAL_EXIT_BASE + signal.SIGINT  # 130: Ctrl-C
EXIT_TERMINATED = SIGNAL_EXIT_BASE + signal.SIGTERM  # 143: docker stop, Kubernetes, systemd, a worker
STOP_SIGNALS = {
    signal.SIGINT: "Ctrl-C",
    signal.SIGTERM: "SIGTERM",
    signal.SIGHUP: "SIGHUP (its terminal closed)",
}

# Where the embedded server keeps its database (the user's own setting, under either name, wins).
DATABASE_SETTINGS = ("PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_API_DATABASE_CONNECTION_URL")
DATABASE_FILE = "prefect.db"
DATABASE_FOLDER_PREFIX = "lion-prefect-db-"  # its temporary folder, in the system temp directory
# A freshly migrated database, kept in PREFECT_HOME per Prefect version: each embedded server's own
# database starts as a copy of it, so its start-up skips Prefect's migrations (10 s -> 3 s on 2 cores).
DATABASE_TEMPLATE = "lion-server-template-{version}.db"
REAPER_GRACE_S = 10.0  # how long the reaper lets a SIGTERMed server stop before it SIGKILLs it

# Run beside Prefect's temporary server, in a session of its own (a signal to `lion`'s process group
# does not reach it; Ctrl-C, SIGHUP and SIGTERM — systemd sends it to every process of the service —
# are ignored: it ends when its work is done): waits until the `lion` that started it ends, however it
# ends (its stdin pipe closes), then stops the server (SIGTERM, SIGKILL after the grace) and removes the
# server's temporary database. A pidfd names the server process itself, so a recycled pid is never
# signalled.
SERVER_REAPER = """
import os, select, shutil, signal, sys, time
for ignored in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
    signal.signal(ignored, signal.SIG_IGN)
pid, grace, database = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
try:
    target = os.pidfd_open(pid)
except ProcessLookupError:
    target = None
except AttributeError:  # no pidfd (not Linux): the pid itself
    target = -1

def send(signum):
    try:
        signal.pidfd_send_signal(target, signum) if target >= 0 else os.kill(pid, signum)
    except ProcessLookupError:
        pass

def ended(timeout):
    if target >= 0:
        return bool(select.select([target], [], [], timeout)[0])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False

sys.stdin.buffer.read()
if target is not None:
    send(signal.SIGTERM)
    if not ended(grace):
        send(signal.SIGKILL)
        ended(grace)
if database:
    shutil.rmtree(database, ignore_errors=True)
"""
# The reapers of this process: their pipes close when it exits (after Prefect stopped its server).
_REAPERS: list[subprocess.Popen] = []
VERBOSE = threading.Event()  # `lion --verbose`: Prefect's records of expected stops reach the console too
_REPORTED = threading.Event()  # the CLI said how the run ended: Prefect's console lines after it are noise


# ----------------------------------------------------------------------------- the embedded server


@contextmanager
def own_session() -> Iterator[None]:
    """Processes started meanwhile get a session of their own, out of the terminal's reach: Ctrl-C (a
    SIGINT to the terminal's foreground process group) does not kill them under the run that still
    talks to them; they get SIGTERM when `lion` ends, however it ends (lion_core.interrupt.
    die_with_parent); their output goes nowhere (the temporary server's shutdown, interrupting its event
    flush, would print tracebacks). Prefect starts its server with a plain subprocess.Popen, hence the
    substitution."""
    from lion_core.interrupt import die_with_parent

    real = subprocess.Popen
    preexec = die_with_parent()

    class OwnSession(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("start_new_session", True)
            kwargs.setdefault("stdout", subprocess.DEVNULL)
            kwargs.setdefault("stderr", subprocess.DEVNULL)
            kwargs.setdefault("preexec_fn", preexec)
            super().__init__(*args, **kwargs)

    subprocess.Popen = OwnSession  # type: ignore[misc]
    try:
        yield
    finally:
        subprocess.Popen = real  # type: ignore[misc]


def users_database() -> bool:
    """Whether the user chose the Prefect server's database (environment or profile)."""
    from prefect.settings import get_current_settings

    if any(name in os.environ for name in DATABASE_SETTINGS):
        return True
    return "connection_url" in get_current_settings().server.database.model_fields_set


def own_database() -> Path | None:
    """A temporary database of this `lion` process's own for the embedded server (docs/prefect.md,
    "Several runs at once"): concurrent `lion` processes never share one; a copy of the migrated template
    when there is a sound one. None when the user chose one."""
    if users_database():
        return None
    folder = Path(tempfile.mkdtemp(prefix=DATABASE_FOLDER_PREFIX))
    seed_database(folder / DATABASE_FILE)
    os.environ[DATABASE_SETTINGS[0]] = f"sqlite+aiosqlite:///{folder / DATABASE_FILE}"
    return folder


def database_template() -> Path:
    """Where the migrated server database of this Prefect version is kept (PREFECT_HOME)."""
    import prefect
    from prefect.settings import Settings

    return Path(Settings().home) / DATABASE_TEMPLATE.format(version=prefect.__version__)


def seed_database(database: Path) -> None:
    """`database` starts as a copy of the template if a sound one is there (a damaged one is removed, and
    the server migrates an empty database as without one)."""
    template = database_template()
    if not template.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{template}?mode=ro", uri=True)) as db:
            sound = db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            sound = sound and db.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1
    except sqlite3.Error:
        sound = False
    try:
        if sound:
            shutil.copyfile(template, database)
        else:
            template.unlink()
    except OSError:
        database.unlink(missing_ok=True)


def keep_template(database: Path) -> None:
    """A consistent copy of a just-migrated `database` becomes the template (written beside it, then
    renamed: concurrent `lion` processes never see half of one); where it cannot be written, none is kept."""
    template = database_template()
    partial = template.with_name(f"{template.name}.{os.getpid()}.partial")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        with (
            contextlib.closing(sqlite3.connect(database)) as source,
            contextlib.closing(sqlite3.connect(partial)) as copy,
        ):
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one file: nothing of it in a write-ahead log
        os.replace(partial, template)
    except (OSError, sqlite3.Error):
        partial.unlink(missing_ok=True)


def tie_embedded_server() -> None:
    """Start Prefect's temporary server now (the first flow run would), on a database of its own, and
    SERVER_REAPER beside it (nothing to do when PREFECT_API_URL names a server of the user's). The server
    runs in a session of its own, so that Ctrl-C stops the run cleanly instead of killing the server
    under it first; the kernel and the reaper stop it when `lion` ends."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    if server.running:
        return
    database = own_database()
    try:
        with own_session():
            server.start()
    except BaseException:
        server.stop()
        if database is not None:
            shutil.rmtree(database, ignore_errors=True)
        raise
    if database is not None and not database_template().exists():
        keep_template(database / DATABASE_FILE)  # migrated from empty just now
    assert server.server_process is not None
    reaper = [sys.executable, "-c", SERVER_REAPER, str(server.server_process.pid), str(REAPER_GRACE_S)]
    reaper.append(str(database) if database is not None else "")
    _REAPERS.append(
        subprocess.Popen(
            reaper,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    )


# ----------------------------------------------------------------------------- the console


def expected(error: BaseException) -> bool:
    """Whether an error is one the CLI reports in one line itself: a budget stop, bad or damaged input,
    a failed write, an endpoint that kept failing, a stop."""
    from lion_core.api.budget import BudgetExceededError
    from lion_core.chat import LLMError
    from lion_core.config import ConfigError
    from lion_core.interrupt import Interrupted
    from lion_core.records import RecordError, write_failure

    known = (BudgetExceededError, ConfigError, RecordError, LLMError, Interrupted)
    return isinstance(error, known) or write_failure(error) is not None


def expected_marks() -> tuple[str, ...]:
    """Words of Prefect's log lines about an expected error (its failed and crashed states name it)."""
    from lion_core.api.journal import DAMAGED_WORDS
    from lion_core.records import SQLITE_WRITE_ERRORS, WRITE_ERRNOS

    names = (
        "BudgetExceededError",
        "budget: max_",
        "RecordError",
        "DamagedStateError",
        "ConfigError",
        "LLMError",
    )
    return (*names, "StateWriteError", *WRITE_ERRNOS.values(), *SQLITE_WRITE_ERRORS, *DAMAGED_WORDS)


class QuietExpected(logging.Filter):
    """On the console only (the API handler, hence the Prefect UI, keeps them): drops Prefect's records
    of the stops the CLI says in one line itself — tracebacks, failed and crashed states of a budget
    stop, bad or damaged input, a failed write, an endpoint that kept failing (its batches' retries
    too); after a stop, every warning and error; after the CLI said how the run ended, everything.
    `lion --verbose` keeps them all."""

    def __init__(self) -> None:
        super().__init__()
        self.marks = expected_marks()

    def filter(self, record: logging.LogRecord) -> bool:
        from lion_core.interrupt import STOP

        if VERBOSE.is_set():
            return True
        if _REPORTED.is_set() or (STOP.is_set() and record.levelno >= logging.WARNING):
            return False
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and expected(error):
            return False
        message = record.getMessage()
        return not any(mark in message for mark in self.marks)


def quiet_console() -> None:
    """QuietExpected on Prefect's console handlers (those of the root logger), once; a new command
    (a test may run several in one process) starts with its outcome unsaid."""
    from prefect.logging.handlers import PrefectConsoleHandler

    _REPORTED.clear()
    for handler in logging.getLogger().handlers:
        quiet = any(isinstance(f, QuietExpected) for f in handler.filters)
        if isinstance(handler, PrefectConsoleHandler) and not quiet:
            handler.addFilter(QuietExpected())


def say_outcome(prefix: str, message: object) -> None:
    """The one line that says how the run ended (say_error); Prefect's console lines stop here."""
    _REPORTED.set()
    with contextlib.suppress(OSError):  # a terminal that closed (SIGHUP) takes no more output
        say_error(prefix, message)


# ----------------------------------------------------------------------------- stops


class Stopper:
    """What Ctrl-C, SIGTERM and SIGHUP do during `lion run`/`lion demo`/`lion eval`: set the stop flag
    (lion_core.interrupt.STOP, which the fine-tune and the student's answers check between steps) and
    cancel the flow's task, as asyncio.run would; a second signal raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None
        self.signals: list[int] = []

    def __call__(self, signum: int, frame: object) -> None:
        from lion_core.interrupt import STOP

        STOP.set()
        self.signals.append(signum)
        running = self.loop is not None and self.task is not None and not self.task.done()
        if len(self.signals) == 1 and running:
            self.loop.call_soon_threadsafe(self.task.cancel)
            return
        raise KeyboardInterrupt

    async def run(self, flow_call) -> Any:
        """Await `flow_call` as the task that a stop cancels."""
        self.loop, self.task = asyncio.get_running_loop(), asyncio.current_task()
        try:
            return await flow_call
        finally:
            self.loop = self.task = None

    @property
    def signum(self) -> int:
        """The signal that stopped the run (Ctrl-C's when none was recorded)."""
        return self.signals[0] if self.signals else signal.SIGINT


_STOPPER = Stopper()


def own_sigterm() -> None:
    """Prefect's flow engine puts a SIGTERM handler of its own in place while a flow runs (prefect.
    utilities.engine.capture_sigterm), which raises TerminationSignal wherever the main thread is — out
    of the event loop, past the stop flag: exit 1, a traceback, a fine-tune left training. In `lion`
    the handler it puts in place is the Stopper, so SIGTERM stops a run as Ctrl-C does. (A deployment
    run, which no `lion` command runs, keeps Prefect's own handling.)"""
    from prefect.utilities import engine

    engine._prefect_sigterm_handler = _STOPPER  # the name capture_sigterm installs and checks for


@contextmanager
def interruptible(resume: str) -> Iterator[None]:
    """Ctrl-C, SIGTERM or SIGHUP in this block stops the run within seconds (see Stopper) and exits
    128 + the signal (130, 143, 129) with one line saying how to resume; every file is written
    atomically and a stopped fine-tune saves nothing, so nothing is left half-written."""
    from lion_core.interrupt import STOP

    previous = {signum: signal.signal(signum, _STOPPER) for signum in STOP_SIGNALS}
    try:
        yield
    except BaseException as err:
        if not STOP.is_set() or isinstance(err, typer.Exit | SystemExit):
            raise
        signum = _STOPPER.signum
        _REPORTED.set()
        with contextlib.suppress(OSError):
            console.print(
                f"interrupted: stopped on {STOP_SIGNALS.get(signum, signal.Signals(signum).name)}, "
                f"nothing half-written; resume with: {resume}",
                markup=False,
                soft_wrap=True,
            )
        raise typer.Exit(SIGNAL_EXIT_BASE + signum) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# ----------------------------------------------------------------------------- failed writes


@contextmanager
def failing_writes(note: Callable[[OSError], str]) -> Iterator[None]:
    """A failed write of the run's state in this block (a full disk, a quota, an I/O error, a read-only
    file system: lion_core.records.write_failure) ends the command with one line — what happened, which
    file, then `note(error)` (the space the run needs, how to resume) — and EXIT_STATE_WRITE."""
    from lion_core.records import write_failure

    try:
        yield
    except Exception as err:
        failure = write_failure(err)
        if failure is None:
            raise
        where = failure.filename or "the run directory"
        say_outcome("error", f"could not write {where} ({failure.strerror}); {note(failure)}")
        raise typer.Exit(EXIT_STATE_WRITE) from None


# ----------------------------------------------------------------------------- running a flow


def run_flow(flow_call, budget_note: Callable[[Exception], str] | None = None) -> Any:
    """Run a flow coroutine on the embedded Prefect (or the server PREFECT_API_URL names); clean exits:
    one line and an exit code for bad or damaged input, a budget stop (its line ends with
    `budget_note(error)`) and an endpoint that kept failing (stops: see `interruptible`; failed writes:
    `failing_writes`)."""
    from lion_core.api.budget import BudgetExceededError
    from lion_core.chat import LLMError
    from lion_core.config import ConfigError
    from lion_core.records import RecordError

    quiet_console()
    own_sigterm()
    from lion_core.interrupt import STOP, Interrupted

    tie_embedded_server()
    try:
        try:
            return asyncio.run(_STOPPER.run(flow_call))
        except Exception as err:  # whatever a stopped flow raises on its way out is the stop
            if STOP.is_set():
                raise Interrupted(str(err)) from None
            raise
    except (ConfigError, RecordError) as err:
        say_outcome("error", err)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except BudgetExceededError as err:
        say_outcome("stopped before exceeding the budget", f"{err}{budget_note(err) if budget_note else ''}")
        raise typer.Exit(EXIT_BUDGET) from None
    except LLMError as err:
        say_outcome("an endpoint kept failing", err)
        raise typer.Exit(EXIT_FAILED) from None
