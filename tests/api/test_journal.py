"""lion_core/api/journal.py: the budget reads running totals (issue 15); triggers keep them equal to the
sum over the journal for every kind of write, and a journal written before the totals existed gets them
once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lion_core.api.budget import BudgetExceededError
from lion_core.api.journal import IN_FLIGHT, SCHEMA, SPENT_BY_RUN_SQL, Journal
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
