"""Batch records in the money journal (the response cache's SQLite database), written before waiting.

A batch is recorded in three steps, each one committed:
1. `record` (state `submitting`): the requests it covers, by cache key, each with its journal ticket
   (already in flight at its worst case at batch prices);
2. `uploaded`: the provider's input file id (a kill after this point can be matched with the batch
   the provider created from that file: `batches.list`);
3. `created` (state `open`): the provider's batch id — the moment `batches.create` returns, before
   any waiting. A re-run finds the open batch covering a key and re-attaches to it instead of
   submitting the request again.
When the batch ends its replies are stored and settled (lion_core.api.client.ResponseCache.put), the tickets
of lines without a reply are closed as failed, and the batch is `collected`. A batch that was never
created at the provider is `abandoned` (its tickets failed: nothing was sent); one the provider no longer
knows (a restarted local server) is `lost`: its tickets stay in flight, counted at their worst case.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lion_core.api.journal import FAILED, IN_FLIGHT, UNRECORDED, Journal, Ticket

SUBMITTING, OPEN, COLLECTED, ABANDONED = "submitting", "open", "collected", "abandoned"
LOST = "lost"  # the provider no longer knows the batch: its requests stay unsettled at their worst case

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    role TEXT NOT NULL,
    base_url TEXT NOT NULL,
    state TEXT NOT NULL,
    input_file_id TEXT,
    batch_id TEXT,
    created REAL NOT NULL,
    status TEXT
);
CREATE TABLE IF NOT EXISTS batch_requests (
    batch INTEGER NOT NULL,
    key TEXT NOT NULL,
    ticket INTEGER NOT NULL,
    PRIMARY KEY (batch, key)
);
CREATE INDEX IF NOT EXISTS batch_requests_by_key ON batch_requests (key);
"""


@dataclass(frozen=True)
class BatchRecord:
    """One recorded batch."""

    row: int
    role: str
    state: str
    input_file_id: str | None
    batch_id: str | None


class BatchStore:
    """The batch tables of one journal."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        with journal.lock:
            journal.db.executescript(SCHEMA)

    def record(self, role: str, base_url: str, tickets: dict[str, Ticket]) -> int:
        """A new batch covering these keys (key → its journal ticket), state `submitting`."""
        with self.journal.transaction() as db:
            cursor = db.execute(
                "INSERT INTO batches (role, base_url, state, created) VALUES (?, ?, ?, ?)",
                (role, base_url, SUBMITTING, time.time()),
            )
            row = int(cursor.lastrowid)
            db.executemany(
                "INSERT INTO batch_requests (batch, key, ticket) VALUES (?, ?, ?)",
                [(row, key, ticket.row) for key, ticket in tickets.items()],
            )
        return row

    def _set(self, row: int, **values: object) -> None:
        names = ", ".join(f"{name} = ?" for name in values)
        with self.journal.transaction() as db:
            db.execute(f"UPDATE batches SET {names} WHERE id = ?", (*values.values(), row))

    def uploaded(self, row: int, input_file_id: str) -> None:
        self._set(row, input_file_id=input_file_id)

    def created(self, row: int, batch_id: str, status: str) -> None:
        self._set(row, batch_id=batch_id, state=OPEN, status=status)

    def status(self, row: int, status: str) -> None:
        self._set(row, status=status)

    def get(self, row: int) -> BatchRecord:
        with self.journal.lock:
            found = self.journal.db.execute(
                "SELECT id, role, state, input_file_id, batch_id FROM batches WHERE id = ?", (row,)
            ).fetchone()
        return BatchRecord(*found)

    def pending_for(self, key: str, base_url: str) -> BatchRecord | None:
        """The newest batch still in flight (submitting or open) that covers `key`, if any."""
        with self.journal.lock:
            found = self.journal.db.execute(
                "SELECT b.id, b.role, b.state, b.input_file_id, b.batch_id FROM batches b "
                "JOIN batch_requests r ON r.batch = b.id "
                "WHERE r.key = ? AND b.base_url = ? AND b.state IN (?, ?) ORDER BY b.id DESC LIMIT 1",
                (key, base_url, SUBMITTING, OPEN),
            ).fetchone()
        return BatchRecord(*found) if found else None

    def tickets(self, row: int) -> dict[str, Ticket]:
        """key → journal ticket of every request of a batch."""
        with self.journal.lock:
            rows = self.journal.db.execute(
                "SELECT key, ticket FROM batch_requests WHERE batch = ?", (row,)
            ).fetchall()
        return {key: Ticket(ticket, attempts=1) for key, ticket in rows}

    def close(self, row: int, state: str, unanswered: list[Ticket]) -> None:
        """The batch is collected (or abandoned): the tickets without a reply are closed as failed."""
        with self.journal.transaction() as db:
            db.executemany(
                "UPDATE requests SET state = ?, attempts = ? WHERE id = ? AND state IN (?, ?)",
                [(FAILED, ticket.attempts, ticket.row, IN_FLIGHT, UNRECORDED) for ticket in unanswered],
            )
            db.execute("UPDATE batches SET state = ? WHERE id = ?", (state, row))

    def open_tickets(self) -> set[int]:
        """The journal rows of the requests in batches still in flight (submitting or open): a later run
        collects them, so they stay in flight when a run ends."""
        with self.journal.lock:
            rows = self.journal.db.execute(
                "SELECT r.ticket FROM batch_requests r JOIN batches b ON r.batch = b.id "
                "WHERE b.state IN (?, ?)",
                (SUBMITTING, OPEN),
            ).fetchall()
        return {ticket for (ticket,) in rows}

    def counts(self) -> dict[str, int]:
        """Batches per state (for reports and tests)."""
        with self.journal.lock:
            rows = self.journal.db.execute("SELECT state, COUNT(*) FROM batches GROUP BY state").fetchall()
        return dict(rows)
