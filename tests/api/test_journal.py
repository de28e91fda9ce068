"""lion_core/api/journal.py: the budget reads running totals (issue 15); triggers keep them equal to the
sum over the journal for every kind of write, and a journal written before the totals existed gets them
once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lion_core.api.budget import BudgetExceededError
from lion_core.api.journal import IN_FLIGHT, SCHEMA, SPENT_BY_RUN_SQL, TOTALS_VERSION, UNRECORDED, Journal
from lion_core.config import BudgetConfig

NO_BUDGET = BudgetConfig()


def summed(journal: Journal) -> dict[str, tuple[float, int]]:
    """The spend per run summed over the whole journal (what the totals must equal)."""
    rows = journal.db.execute(SPENT_BY_RUN_SQL).fetchall()
    return {run: (pytest.approx(usd), tokens) for run, usd, tokens in rows}


def test_running_totals_follow_every_kind_of_write(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "responses.sqlite")
    in_flight = journal.open("a", "iter_1", "teacher", "k1", (0.5, 500), NO_BUDGET)
    answered = journal.open("a", "iter_1", "referee", "k2", (0.25, 300), NO_BUDGET)
    with journal.transaction() as db:
        journal.settle(db, answered, (100, 20, 0.01))
    journal.fail(journal.open("a", "iter_2", "teacher", "k3", (0.75, 900), NO_BUDGET))
    other = journal.open("b", "", "teacher", "k4", (1.0, 1000), NO_BUDGET)
    with journal.transaction() as db:  # a batch closed: its unanswered tickets fail (batch_store.close)
        db.execute("UPDATE requests SET state = 'failed' WHERE id = ? AND state = ?", (other.row, IN_FLIGHT))
    journal.carry(
        "c", {"roles": {"teacher": {"requests": 3, "input_tokens": 30, "output_tokens": 6, "cost_usd": 2}}}
    )
    with journal.transaction() as db:
        db.execute("DELETE FROM requests WHERE id = ?", (in_flight.row,))

    assert {run: journal.spent(run) for run in "abc"} == summed(journal)
    assert journal.spent("a") == (pytest.approx(0.01), 120)


def test_the_budget_check_reads_one_row_and_holds_across_journals_of_one_file(tmp_path: Path) -> None:
    first, second = Journal(tmp_path / "r.sqlite"), Journal(tmp_path / "r.sqlite")  # two processes
    first.open("a", "", "teacher", "k1", (0.6, 10), NO_BUDGET)
    statements: list[str] = []
    second.db.set_trace_callback(statements.append)
    with pytest.raises(BudgetExceededError):
        second.open("a", "", "teacher", "k2", (0.6, 10), BudgetConfig(max_usd=1.0))
    # the same cost at any journal size: no statement sums over the requests
    assert not [s for s in statements if "SUM(" in s.upper() and "FROM REQUESTS" in s.upper()]


def test_a_journal_from_before_the_totals_gets_them_once(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)
    old.executemany(
        "INSERT INTO requests (run, scope, role, key, state, max_tokens, max_usd, input_tokens, "
        "output_tokens, cost_usd) VALUES (?, '', 'teacher', ?, ?, ?, ?, ?, ?, ?)",
        [("a", "k1", "answered", 900, 0.9, 100, 50, 0.02), ("a", "k2", IN_FLIGHT, 700, 0.7, 0, 0, 0.0)],
    )
    old.commit()
    old.close()
    journal = Journal(path)
    assert journal.spent("a") == (pytest.approx(0.72), 850)
    assert Journal(path).spent("a") == (pytest.approx(0.72), 850)  # filled once, not twice


# ------------------------------------------------ issue 22: requests cut off, a full disk, a damaged file


def test_requests_cut_off_are_closed_as_unrecorded_and_still_count_at_their_worst_case(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "responses.sqlite")
    cut = journal.open("a", "iter_1", "teacher", "k1", (0.5, 500), NO_BUDGET)
    in_batch = journal.open("a", "iter_1", "teacher", "k2", (0.25, 250), NO_BUDGET)
    journal.open("b", "", "teacher", "k3", (1.0, 1000), NO_BUDGET)  # another run's: not this one's to close
    assert journal.close_unsettled("a", keep={in_batch.row}) == 1
    states = dict(journal.db.execute("SELECT key, state FROM requests").fetchall())
    assert states == {"k1": UNRECORDED, "k2": IN_FLIGHT, "k3": IN_FLIGHT}
    assert journal.spent("a") == (pytest.approx(0.75), 750)  # both still at their worst case
    usage = journal.usage("a")["iter_1"]["teacher"]
    assert (usage.unsettled, usage.unrecorded, usage.unrecorded_max_tokens) == (1, 1, 500)
    with journal.transaction() as db:  # a late reply of a closed request is recorded as usual
        journal.settle(db, cut, (100, 20, 0.01))
    assert journal.spent("a") == (pytest.approx(0.26), 370)
    assert journal.spent("a") == summed(journal)["a"]


def test_a_journal_whose_totals_predate_unrecorded_requests_gets_new_triggers_once(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite"
    journal = Journal(path)
    journal.open("a", "", "teacher", "k1", (0.5, 500), NO_BUDGET)
    journal.db.execute("PRAGMA user_version = 1")  # as the version before `unrecorded` left it
    journal.db.execute("DROP TRIGGER totals_update")
    journal.db.execute(
        "CREATE TRIGGER totals_update AFTER UPDATE ON requests BEGIN UPDATE totals SET usd = 0; END"
    )
    journal.close()
    journal = Journal(path)
    journal.close_unsettled("a")
    assert journal.spent("a") == (pytest.approx(0.5), 500)
    assert journal.db.execute("PRAGMA user_version").fetchone()[0] == TOTALS_VERSION


class FullDisk:
    """A journal's connection on a disk that just filled: every write fails as SQLite reports it."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, *args: object) -> object:
        if sql.split()[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.db, name)


def test_a_reply_that_cannot_be_written_names_the_cache_and_is_counted_as_paid(tmp_path: Path) -> None:
    """The disk fills between a request's send and its reply: the reply is lost, its worst case is not."""
    import errno

    from lion_core.records import StateWriteError

    path = tmp_path / "responses.sqlite"
    journal = Journal(path)
    ticket = journal.open("a", "iter_1", "teacher", "k1", (0.5, 500), NO_BUDGET)
    journal.db = FullDisk(journal.db)
    with pytest.raises(StateWriteError) as raised, journal.transaction() as db:
        journal.settle(db, ticket, (100, 20, 0.01))
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(path)
    journal.db = journal.db.db
    assert journal.spent("a") == (pytest.approx(0.5), 500)  # counted at its worst case, not lost
    assert journal.usage("a")["iter_1"]["teacher"].unsettled == 1


def test_a_cache_that_is_not_a_database_is_named_with_the_way_out(tmp_path: Path) -> None:
    from lion_core.records import DamagedStateError

    path = tmp_path / "responses.sqlite"
    path.write_bytes(b"this is not a database, it is a bad copy" * 100)
    with pytest.raises(
        DamagedStateError, match=r"responses\.sqlite: the response cache .* is damaged"
    ) as raised:
        Journal(path)
    assert f"mv {path} {path}.damaged" in str(raised.value)
