"""lion_cli/process.py in process (issue 22): the console keeps Prefect's records of expected errors out
(the one-line error stands for them), a stop by SIGTERM or SIGHUP is one line and 128 + the signal, a
failed write one line naming the file and exit 5, and the embedded server's database is this process's
own unless the user chose one. What needs a real `lion` and its signals is in tests/e2e/test_process.py."""

from __future__ import annotations

import errno
import logging
import signal

import pytest
import typer

from lion_cli import process
from lion_cli.process import (
    EXIT_STATE_WRITE,
    EXIT_TERMINATED,
    QuietExpected,
    failing_writes,
    interruptible,
)
from lion_core.api.budget import BudgetExceededError
from lion_core.interrupt import STOP
from lion_core.records import DamagedStateError, StateWriteError


@pytest.fixture(autouse=True)
def fresh_stop():
    """The stop flag and the stopper are process-wide: each test starts and ends without a stop."""
    STOP.clear()
    process._STOPPER.signals.clear()
    process._REPORTED.clear()
    yield
    STOP.clear()
    process._STOPPER.signals.clear()
    process._REPORTED.clear()
    process.VERBOSE.clear()


def record(message: str, error: BaseException | None = None, level: int = logging.ERROR) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error is not None else None
    return logging.LogRecord("prefect.task_runs", level, __file__, 1, message, None, exc_info)


@pytest.mark.parametrize(
    "expected",
    [
        record(
            "Task run failed with exception", StateWriteError(errno.ENOSPC, "No space left on device", "f")
        ),
        record(
            "Encountered exception during execution", DamagedStateError("RUN/iter_1/cache_pool.jsonl:3: ...")
        ),
        record("Finished in state Failed('... OperationalError: database or disk is full')"),
        record("Failed to write result: [Errno 28] No space left on device", level=logging.WARNING),
        record("Task run failed", BudgetExceededError("budget: max_tokens 10 would be exceeded")),
    ],
)
def test_the_console_drops_prefects_records_of_expected_errors(expected: logging.LogRecord) -> None:
    assert not QuietExpected().filter(expected)
    process.VERBOSE.set()  # `lion --verbose` keeps them
    assert QuietExpected().filter(expected)


def test_the_console_keeps_everything_else_until_the_cli_said_how_the_run_ended() -> None:
    quiet = QuietExpected()
    assert quiet.filter(record("Task run failed", KeyError("a bug")))
    assert quiet.filter(record("iteration 1: hard share 40.0%", level=logging.INFO))
    process._REPORTED.set()  # the one line is out: Prefect's shutdown chatter after it is noise
    assert not quiet.filter(record("EventsWorker - Still processing items", level=logging.WARNING))


def test_a_sigterm_stops_the_run_in_one_line_and_exits_143(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as done, interruptible("lion run configs/demo.yaml"):
        assert signal.getsignal(signal.SIGTERM) is process._STOPPER
        process._STOPPER(signal.SIGTERM, None)  # no flow running yet: it stops at once
    assert done.value.exit_code == EXIT_TERMINATED == 143
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [
        "interrupted: stopped on SIGTERM, nothing half-written; resume with: lion run configs/demo.yaml"
    ]
    assert signal.getsignal(signal.SIGTERM) is not process._STOPPER  # put back


def test_a_sighup_exits_129() -> None:
    with pytest.raises(typer.Exit) as done, interruptible("lion demo"):
        process._STOPPER(signal.SIGHUP, None)
    assert done.value.exit_code == 129


def test_a_full_disk_is_one_line_naming_the_file_and_exit_5(capsys: pytest.CaptureFixture[str]) -> None:
    note = "RUN holds 3 MB after 1 of 3 iterations: free at least 6 MB and re-run"
    with pytest.raises(typer.Exit) as done, failing_writes(lambda err: note):
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert done.value.exit_code == EXIT_STATE_WRITE == 5
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line == f"error: could not write the run directory (No space left on device); {note}"
    with pytest.raises(typer.Exit), failing_writes(lambda err: note):
        raise StateWriteError(errno.EDQUOT, "Disk quota exceeded", "RUN/iter_2/teacher.jsonl")
    assert "could not write RUN/iter_2/teacher.jsonl (Disk quota exceeded)" in capsys.readouterr().out
    with pytest.raises(KeyError), failing_writes(lambda err: note):  # not a write: as it is
        raise KeyError("a bug")


def test_the_embedded_server_gets_a_database_of_its_own_unless_the_user_chose_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil
    from pathlib import Path

    for name in process.DATABASE_SETTINGS:  # set, then removed: put back as they were after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    folder = process.own_database()
    try:
        assert folder is not None and folder.is_dir()
        url = process.os.environ[process.DATABASE_SETTINGS[0]]
        assert url == f"sqlite+aiosqlite:///{Path(folder) / 'prefect.db'}"
    finally:
        shutil.rmtree(folder)
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://db/prefect")
    assert process.own_database() is None  # the user's own, under Prefect's older name too


def test_an_embedded_server_starts_on_a_copy_of_a_migrated_database_and_a_damaged_copy_is_dropped(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """A database of its own per `lion` (issue 22) made every embedded server run Prefect's migrations
    (about 10 s to start instead of 3 on 2 cores): the first server's freshly migrated database is kept
    in PREFECT_HOME, and later ones start on a copy of it; a damaged copy is removed, never used."""
    import shutil
    import sqlite3

    for name in process.DATABASE_SETTINGS:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    template = process.database_template()
    assert template.parent == tmp_path / "home" and not template.exists()
    migrated = tmp_path / "migrated.db"
    with sqlite3.connect(migrated) as db:  # what a server leaves after its migrations, in miniature
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.execute("INSERT INTO alembic_version VALUES ('head')")
    db.close()
    process.keep_template(migrated)
    folder = process.own_database()
    try:
        with sqlite3.connect(folder / process.DATABASE_FILE) as db:
            assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("head",)]
        db.close()
    finally:
        shutil.rmtree(folder)
    template.write_bytes(b"not a database: a damaged copy " * 100)
    monkeypatch.delenv(process.DATABASE_SETTINGS[0])  # set by the first: the next `lion` process
    folder = process.own_database()
    try:
        assert not (folder / process.DATABASE_FILE).exists()  # a fresh one, migrated by the server
        assert not template.exists()  # the next server keeps a sound one
    finally:
        shutil.rmtree(folder)


def test_prefects_flow_engine_stops_on_sigterm_as_lion_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trial: Prefect's engine put its own SIGTERM handler in place for the flow, which raised
    TerminationSignal out of the event loop — exit 1 and a traceback, the fine-tune left running."""
    from prefect.utilities import engine
    from prefect.utilities.engine import capture_sigterm

    monkeypatch.setattr(engine, "_prefect_sigterm_handler", engine._prefect_sigterm_handler)  # put back after
    process.own_sigterm()
    with capture_sigterm():  # what the flow engine does around every flow run
        assert signal.getsignal(signal.SIGTERM) is process._STOPPER
