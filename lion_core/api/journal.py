"""The money journal: every paid request is a row of a table in the response cache's SQLite database,
written *before* the request is sent (state `in_flight`, with its worst-case tokens and USD) and settled
in the same transaction that stores its reply (`answered`, with the provider's usage) or closed when it
fails after all retries (`failed`). A process killed at any point leaves only rows that are either
settled or still `in_flight`; the latter are counted at their worst case, forever, so no crash loses
spend. When the run that sent them has ended (a stop, a crash, a kill), its requests still in flight
are closed as `unrecorded` (`close_unsettled`): their reply was never recorded, and they go on counting
at their worst case. Running totals per run are kept by SQLite triggers in every write, so that the
budget check (lion_core.api.budget) reads one row. The ledger (lion_core.api.ledger) is a view of this
journal. SQLite's errors leave here as the run's: a failed write (a full disk) is a StateWriteError
and a file that is not a database a DamagedStateError, each naming the file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

from lion_core.api.budget import check_budget
from lion_core.config import BudgetConfig
from lion_core.records import DamagedStateError, StateWriteError, write_failure

# Seconds a connection waits for another process's write transaction before failing.
SQLITE_BUSY_TIMEOUT_S = 30
IN_FLIGHT, ANSWERED, FAILED = "in_flight", "answered", "failed"
UNRECORDED = "unrecorded"  # in flight when the run that sent it ended: the reply was never recorded
# The running totals' triggers as written by this version (PRAGMA user_version): an older journal's are
# rebuilt once (version 2 counts `unrecorded` requests at their worst case, as `in_flight` ones).
TOTALS_VERSION = 2
DAMAGED_WORDS = ("file is not a database", "database disk image is malformed")  # SQLite's own


def damaged(path: Path, err: BaseException) -> DamagedStateError:
    """The error of a response cache that is not a database: what to do, and what it costs."""
    return DamagedStateError(
        f"{path}: the response cache (and money journal) is damaged ({err}); move it away "
        f"(mv {path} {path}.damaged) and re-run: finished iterations are not replayed, the replies of "
        "unfinished ones are bought again"
    )


SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL,
    scope TEXT NOT NULL,
    role TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_tokens INTEGER NOT NULL,
    max_usd REAL NOT NULL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_by_run ON requests (run, state);
CREATE TABLE IF NOT EXISTS cache_hits (
    run TEXT NOT NULL, scope TEXT NOT NULL, role TEXT NOT NULL, hits INTEGER NOT NULL,
    PRIMARY KEY (run, scope, role)
);
CREATE TABLE IF NOT EXISTS carried (
    run TEXT NOT NULL, scope TEXT NOT NULL, role TEXT NOT NULL, requests INTEGER NOT NULL,
    cache_hits INTEGER NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL, PRIMARY KEY (run, scope, role)
);
"""
# `carried`: the counters of a ledger.json written before the journal existed, imported once, so an
# older run directory keeps its history and its spend counts against the budget.

# What a request counts against the budget: its worst case while in flight or unrecorded, else what it
# cost.
WORST = f"{{row}}.state IN ('{IN_FLIGHT}', '{UNRECORDED}')"
CONTRIBUTION_USD = f"(CASE WHEN {WORST} THEN {{row}}.max_usd ELSE {{row}}.cost_usd END)"
CONTRIBUTION_TOKENS = (
    f"(CASE WHEN {WORST} THEN {{row}}.max_tokens ELSE {{row}}.input_tokens + {{row}}.output_tokens END)"
)
# Recorded spend plus every unsettled request at its worst case, per run (carried spend included).
SPENT_BY_RUN_SQL = f"""
SELECT run, SUM(usd), SUM(tokens) FROM (
    SELECT run, {CONTRIBUTION_USD.format(row="requests")} AS usd,
           {CONTRIBUTION_TOKENS.format(row="requests")} AS tokens FROM requests
    UNION ALL
    SELECT run, cost_usd, input_tokens + output_tokens FROM carried
) GROUP BY run
"""


def _totals_schema() -> list[str]:
    """SPENT_BY_RUN_SQL kept as running totals by triggers, in the transaction of every write whoever
    writes (any module, any process): the budget check reads one row instead of summing the journal
    (0.1 s per request at 375K requests, a ceiling on a paper-scale run's speed)."""

    def add(run: str, usd: str, tokens: str) -> str:
        return (
            f"INSERT INTO totals (run, usd, tokens) VALUES ({run}, {usd}, {tokens}) "
            "ON CONFLICT (run) DO UPDATE SET usd = usd + excluded.usd, tokens = tokens + excluded.tokens;"
        )

    def trigger(name: str, event: str, table: str, body: str) -> str:
        return f"CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN {body} END"

    new_usd, new_tokens = CONTRIBUTION_USD.format(row="NEW"), CONTRIBUTION_TOKENS.format(row="NEW")
    old_usd, old_tokens = CONTRIBUTION_USD.format(row="OLD"), CONTRIBUTION_TOKENS.format(row="OLD")
    changed = add("NEW.run", f"{new_usd} - {old_usd}", f"{new_tokens} - {old_tokens}")
    carried = add("NEW.run", "NEW.cost_usd", "NEW.input_tokens + NEW.output_tokens")
    return [
        "DROP TRIGGER IF EXISTS totals_insert",
        "DROP TRIGGER IF EXISTS totals_update",
        "DROP TRIGGER IF EXISTS totals_delete",
        "DROP TRIGGER IF EXISTS totals_carried",
        "DROP TABLE IF EXISTS totals",
        "CREATE TABLE totals (run TEXT PRIMARY KEY, usd REAL NOT NULL, tokens INTEGER NOT NULL)",
        trigger("totals_insert", "INSERT", "requests", add("NEW.run", new_usd, new_tokens)),
        trigger("totals_update", "UPDATE", "requests", changed),
        trigger("totals_delete", "DELETE", "requests", add("OLD.run", f"-{old_usd}", f"-{old_tokens}")),
        trigger("totals_carried", "INSERT", "carried", carried),
        f"INSERT INTO totals (run, usd, tokens) {SPENT_BY_RUN_SQL}",  # the rows written before
        f"PRAGMA user_version = {TOTALS_VERSION}",
    ]


USAGE_SQL = f"""
SELECT scope, role,
       SUM(CASE WHEN {WORST.format(row="requests")} THEN MAX(attempts, 1) ELSE attempts END),
       SUM(input_tokens), SUM(output_tokens), SUM(cost_usd),
       SUM(state = '{IN_FLIGHT}'),
       SUM(CASE state WHEN '{IN_FLIGHT}' THEN max_tokens ELSE 0 END),
       SUM(CASE state WHEN '{IN_FLIGHT}' THEN max_usd ELSE 0 END),
       SUM(state = '{UNRECORDED}'),
       SUM(CASE state WHEN '{UNRECORDED}' THEN max_tokens ELSE 0 END),
       SUM(CASE state WHEN '{UNRECORDED}' THEN max_usd ELSE 0 END)
FROM requests WHERE run = ? GROUP BY scope, role
"""


@dataclass
class RoleUsage:
    """Counters of one role (see the module docstring)."""

    requests: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unsettled: int = 0
    unsettled_max_tokens: int = 0
    unsettled_max_usd: float = 0.0
    unrecorded: int = 0
    unrecorded_max_tokens: int = 0
    unrecorded_max_usd: float = 0.0

    def add(self, other: RoleUsage) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Ticket:
    """One journaled request: its row and the HTTP requests sent for it so far."""

    row: int
    attempts: int = 0


class Journal:
    """The journal's SQLite database (the response cache's file, or memory); safe across threads and
    processes (WAL, write transactions taken immediately). `lock` and `transaction` are shared with
    the response cache, so a reply and its usage commit together."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.lock = threading.RLock()
        with self.errors():
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(
                path if path is not None else ":memory:",
                check_same_thread=False,
                isolation_level=None,
                timeout=SQLITE_BUSY_TIMEOUT_S,
            )
            if path is not None:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            self._add_totals()

    def _add_totals(self) -> None:
        """The running totals table and its triggers, once per journal and version (filled from the rows
        written before them); one process does it, the others find it done."""
        with self.transaction() as db:
            found = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'totals'").fetchone()
            if found and db.execute("PRAGMA user_version").fetchone()[0] >= TOTALS_VERSION:
                return
            for statement in _totals_schema():
                db.execute(statement)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """SQLite's errors as the run's (see the module docstring); others pass unchanged."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            failure = write_failure(err)
            if failure is not None:
                raise StateWriteError(failure.errno, failure.strerror, str(self.path or ":memory:")) from err
            if self.path is not None and any(words in str(err) for words in DAMAGED_WORDS):
                raise damaged(self.path, err) from None
            raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE), committed or rolled back (SQLite rolls
        some failed transactions back itself: a full disk)."""
        with self.lock, self.errors():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def close_unsettled(self, run: str, keep: Collection[int] = ()) -> int:
        """Close the requests of `run` still in flight as `unrecorded` (but the rows in `keep`: those of
        provider batches still open): call it only when no process of the run is sending (the run
        directory's lock is held). They go on counting at their worst case. How many were closed."""
        kept = set(keep)
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id FROM requests WHERE run = ? AND state = ?", (run, IN_FLIGHT)
            ).fetchall()
            closing = [(UNRECORDED, row) for (row,) in rows if row not in kept]
            db.executemany("UPDATE requests SET state = ? WHERE id = ?", closing)
        return len(closing)

    def open(
        self, run: str, scope: str, role: str, key: str, worst: tuple[float, int], budget: BudgetConfig
    ) -> Ticket:
        """Record a request as in flight at its worst case (USD, tokens), or raise BudgetExceededError
        if recorded spend plus everything unsettled plus this one could cross the budget."""
        usd, tokens = worst
        with self.transaction() as db:
            if budget.max_usd is not None or budget.max_tokens is not None:
                check_budget(budget, *self._spent(db, run), usd, tokens)
            cursor = db.execute(
                "INSERT INTO requests (run, scope, role, key, state, max_tokens, max_usd) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run, scope, role, key, IN_FLIGHT, tokens, usd),
            )
        return Ticket(int(cursor.lastrowid))

    def settle(self, db: sqlite3.Connection, ticket: Ticket, usage: tuple[int, int, float]) -> None:
        """Inside the caller's transaction: the request was answered with this (in, out, USD)."""
        db.execute(
            "UPDATE requests SET state = ?, attempts = ?, input_tokens = ?, output_tokens = ?, "
            "cost_usd = ? WHERE id = ?",
            (ANSWERED, max(ticket.attempts, 1), *usage, ticket.row),
        )

    def fail(self, ticket: Ticket) -> None:
        """The request failed after all retries: the provider reported no usage."""
        with self.transaction() as db:
            db.execute(
                "UPDATE requests SET state = ?, attempts = ? WHERE id = ?",
                (FAILED, ticket.attempts, ticket.row),
            )

    def add_hit(self, run: str, scope: str, role: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO cache_hits (run, scope, role, hits) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (run, scope, role) DO UPDATE SET hits = hits + 1",
                (run, scope, role),
            )

    def spent(self, run: str) -> tuple[float, int]:
        """Recorded USD and tokens plus every unsettled request at its worst case."""
        with self.lock:
            return self._spent(self.db, run)

    @staticmethod
    def _spent(db: sqlite3.Connection, run: str) -> tuple[float, int]:
        """One run's SPENT_BY_RUN_SQL figures, from the running totals."""
        found = db.execute("SELECT usd, tokens FROM totals WHERE run = ?", (run,)).fetchone()
        return (float(found[0]), int(found[1])) if found else (0.0, 0)

    def usage(self, run: str) -> dict[str, dict[str, RoleUsage]]:
        """scope → role → counters of one run ("" is the scope of unscoped requests)."""
        out: dict[str, dict[str, RoleUsage]] = {}
        with self.lock:
            rows = self.db.execute(USAGE_SQL, (run,)).fetchall()
            hits = self.db.execute(
                "SELECT scope, role, hits FROM cache_hits WHERE run = ?", (run,)
            ).fetchall()
            carried = self.db.execute(
                "SELECT scope, role, requests, cache_hits, input_tokens, output_tokens, cost_usd "
                "FROM carried WHERE run = ?",
                (run,),
            ).fetchall()
        for scope, role, requests, tin, tout, usd, *open_and_unrecorded in rows:
            out.setdefault(scope, {})[role] = RoleUsage(requests, 0, tin, tout, usd, *open_and_unrecorded)
        for scope, role, n in hits:
            out.setdefault(scope, {}).setdefault(role, RoleUsage()).cache_hits = n
        for scope, role, *counters in carried:
            out.setdefault(scope, {}).setdefault(role, RoleUsage()).add(RoleUsage(*counters))
        return out

    def knows(self, run: str) -> bool:
        """Whether the journal holds anything of `run` (requests, cache hits, carried counters)."""
        with self.lock, self.errors():
            return any(
                self.db.execute(f"SELECT 1 FROM {table} WHERE run = ? LIMIT 1", (run,)).fetchone()
                for table in ("requests", "cache_hits", "carried")
            )

    def carry(self, run: str, ledger: dict) -> None:
        """Import an older ledger.json's counters (its scopes, and the rest of its totals unscoped) once,
        if the journal holds nothing of this run yet."""
        rows = []
        scoped: dict[str, RoleUsage] = {}
        for scope, roles in ledger.get("scopes", {}).items():
            for role, counters in roles.items():
                usage = _old_usage(counters)
                scoped.setdefault(role, RoleUsage()).add(usage)
                rows.append((scope, role, usage))
        for role, counters in ledger.get("roles", {}).items():
            rest = _old_usage(counters)
            rest.add(RoleUsage(*(-getattr(scoped.get(role, RoleUsage()), f.name) for f in fields(RoleUsage))))
            rows.append(("", role, rest))
        with self.transaction() as db:
            known = sum(
                db.execute(f"SELECT COUNT(*) FROM {table} WHERE run = ?", (run,)).fetchone()[0]
                for table in ("requests", "cache_hits", "carried")
            )
            if known:
                return
            db.executemany(
                "INSERT INTO carried VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (run, scope, role, u.requests, u.cache_hits, u.input_tokens, u.output_tokens, u.cost_usd)
                    for scope, role, u in rows
                ],
            )

    def close(self) -> None:
        with self.lock:
            self.db.close()


def _old_usage(counters: dict) -> RoleUsage:
    """The journal-era counters of an older ledger.json row (unknown fields ignored)."""
    names = ("requests", "cache_hits", "input_tokens", "output_tokens", "cost_usd")
    return RoleUsage(**{name: counters.get(name, 0) for name in names})
