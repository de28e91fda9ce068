"""The money journal, the ledger that is its view, and the budget guard that reads it.

Every paid request is a row of the journal — a table in the response cache's SQLite database — written
*before* the request is sent (state `in_flight`, with its worst-case tokens and USD) and settled in the
same transaction that stores its reply (`answered`, with the provider's usage) or closed when it fails
after all retries (`failed`). A process killed at any point leaves only rows that are either settled
or still `in_flight`; the latter are counted at their worst case, forever, so no crash loses spend.

`ledger.json` in the run directory is a view rebuilt from the journal: per role, `requests` (HTTP
requests sent, retries included; 1 for a request whose outcome was never recorded), `cache_hits`,
`input_tokens`, `output_tokens`, `cost_usd` (what the provider reported), and `unsettled` (requests
in flight at a crash or a stop, reply never recorded) with their worst case `unsettled_max_tokens`,
`unsettled_max_usd` — in total and per scope (an iteration, "eval"). The budget guard counts recorded
spend plus every unsettled request at its worst case, across processes and resumes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from lion_core.config import BudgetConfig
from lion_core.records import atomic_write_text

# Seconds a connection waits for another process's write transaction before failing.
SQLITE_BUSY_TIMEOUT_S = 30
IN_FLIGHT, ANSWERED, FAILED = "in_flight", "answered", "failed"

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

# What a request counts against the budget: its worst case while in flight, else what it cost.
CONTRIBUTION_USD = f"(CASE {{row}}.state WHEN '{IN_FLIGHT}' THEN {{row}}.max_usd ELSE {{row}}.cost_usd END)"
CONTRIBUTION_TOKENS = (
    f"(CASE {{row}}.state WHEN '{IN_FLIGHT}' THEN {{row}}.max_tokens "
    "ELSE {row}.input_tokens + {row}.output_tokens END)"
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
        "CREATE TABLE totals (run TEXT PRIMARY KEY, usd REAL NOT NULL, tokens INTEGER NOT NULL)",
        trigger("totals_insert", "INSERT", "requests", add("NEW.run", new_usd, new_tokens)),
        trigger("totals_update", "UPDATE", "requests", changed),
        trigger("totals_delete", "DELETE", "requests", add("OLD.run", f"-{old_usd}", f"-{old_tokens}")),
        trigger("totals_carried", "INSERT", "carried", carried),
        f"INSERT INTO totals (run, usd, tokens) {SPENT_BY_RUN_SQL}",  # a journal from before the totals
    ]


USAGE_SQL = f"""
SELECT scope, role,
       SUM(CASE state WHEN '{IN_FLIGHT}' THEN MAX(attempts, 1) ELSE attempts END),
       SUM(input_tokens), SUM(output_tokens), SUM(cost_usd),
       SUM(state = '{IN_FLIGHT}'),
       SUM(CASE state WHEN '{IN_FLIGHT}' THEN max_tokens ELSE 0 END),
       SUM(CASE state WHEN '{IN_FLIGHT}' THEN max_usd ELSE 0 END)
FROM requests WHERE run = ? GROUP BY scope, role
"""


class BudgetExceededError(RuntimeError):
    """The next request could exceed the configured budget; nothing was sent. `limit` names the budget
    field it would cross: "max_usd" or "max_tokens"."""

    def __init__(self, message: str, limit: str = "max_usd") -> None:
        super().__init__(message)
        self.limit = limit


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
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
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
        """The running totals table and its triggers, once per journal (filled from the rows of a journal
        written before them); one process does it, the others find it done."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'totals'").fetchone():
                return
            for statement in _totals_schema():
                db.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE), committed or rolled back."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

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
        for scope, role, requests, tin, tout, usd, unsettled, max_tokens, max_usd in rows:
            out.setdefault(scope, {})[role] = RoleUsage(
                requests, 0, tin, tout, usd, unsettled, max_tokens, max_usd
            )
        for scope, role, n in hits:
            out.setdefault(scope, {}).setdefault(role, RoleUsage()).cache_hits = n
        for scope, role, *counters in carried:
            out.setdefault(scope, {}).setdefault(role, RoleUsage()).add(RoleUsage(*counters))
        return out

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


def check_budget(budget: BudgetConfig, spent_usd: float, spent_tokens: int, usd: float, tokens: int) -> None:
    """Raise BudgetExceededError if spending `usd`/`tokens` more could cross a limit."""
    if budget.max_usd is not None and spent_usd + usd > budget.max_usd:
        raise BudgetExceededError(
            f"budget: max_usd {budget.max_usd:.4f} would be exceeded "
            f"(spent or in flight {spent_usd:.4f}, next up to {usd:.4f})"
        )
    if budget.max_tokens is not None and spent_tokens + tokens > budget.max_tokens:
        raise BudgetExceededError(
            f"budget: max_tokens {budget.max_tokens} would be exceeded "
            f"(spent or in flight {spent_tokens}, next up to {tokens})",
            limit="max_tokens",
        )


def run_id(ledger_path: Path | None, journal: Journal) -> str:
    """The run's name in the journal: its directory relative to the journal's folder ("." when the
    cache lives in the run directory), so moving both together keeps the run's history."""
    if ledger_path is None:
        return ""
    run = Path(ledger_path).parent.resolve()
    if journal.path is None:
        return str(run)
    return os.path.relpath(run, journal.path.parent.resolve())


class Ledger:
    """Usage per role and scope: a view of the journal, written to ledger.json by `save()`.

    Clients attach their response cache's journal (`attach`); without one the ledger keeps an in-memory
    journal (tests, benchmarks). `scope` names the requests recorded from now on (e.g. "iter_2")."""

    def __init__(self, path: Path | None = None, scope: str | None = None, journal: Journal | None = None):
        self.path = Path(path) if path is not None else None
        self.scope = scope
        self.journal = journal or Journal()
        self._attached = journal is not None

    def attach(self, journal: Journal) -> None:
        """Record into (and read from) `journal`; a ledger belongs to one journal. An older ledger.json
        (written before the journal) is carried into it once."""
        if self._attached and journal is not self.journal:
            if journal.path is None or self.journal.path is None or journal.path != self.journal.path:
                raise ValueError("one ledger cannot record into two response caches")
            return
        self.journal, self._attached = journal, True
        if journal.path is not None and self.path is not None and self.path.is_file():
            journal.carry(self.run, json.loads(self.path.read_text(encoding="utf-8")))

    @property
    def run(self) -> str:
        return run_id(self.path, self.journal)

    def open(self, role: str, key: str, worst: tuple[float, int], budget: BudgetConfig) -> Ticket:
        """Journal a request before it is sent (see Journal.open)."""
        return self.journal.open(self.run, self.scope or "", role, key, worst, budget)

    def add_cache_hit(self, role: str) -> None:
        self.journal.add_hit(self.run, self.scope or "", role)

    @property
    def scopes(self) -> dict[str, dict[str, RoleUsage]]:
        """scope → role → counters (unscoped requests count in the totals only)."""
        return {s: roles for s, roles in self.journal.usage(self.run).items() if s}

    @property
    def roles(self) -> dict[str, RoleUsage]:
        """role → counters over the whole run."""
        totals: dict[str, RoleUsage] = {}
        for roles in self.journal.usage(self.run).values():
            for role, usage in roles.items():
                totals.setdefault(role, RoleUsage()).add(usage)
        return totals

    def scope_usage(self, scope: str) -> dict[str, dict[str, float]]:
        """Counters of one scope (e.g. "iter_2") per role, as plain dicts."""
        return {role: asdict(u) for role, u in sorted(self.scopes.get(scope, {}).items())}

    def spent(self) -> tuple[float, int]:
        """USD and tokens spent, every unsettled request counted at its worst case (what the budget
        counts)."""
        return self.journal.spent(self.run)

    def to_dict(self) -> dict:
        usage = self.journal.usage(self.run)
        roles: dict[str, RoleUsage] = {}
        for by_role in usage.values():
            for role, u in by_role.items():
                roles.setdefault(role, RoleUsage()).add(u)
        worst_usd, worst_tokens = self.spent()
        recorded_usd = sum(u.cost_usd for u in roles.values())
        recorded_tokens = sum(u.input_tokens + u.output_tokens for u in roles.values())
        return {
            "roles": {role: asdict(u) for role, u in sorted(roles.items())},
            "total": {
                "cost_usd": recorded_usd,
                "tokens": recorded_tokens,
                "worst_case_cost_usd": worst_usd,
                "worst_case_tokens": worst_tokens,
            },
            "scopes": {
                scope: {role: asdict(u) for role, u in sorted(by_role.items())}
                for scope, by_role in sorted(usage.items())
                if scope
            },
        }

    def save(self) -> None:
        """Write the view to ledger.json atomically (no-op without a path). Losing this file loses
        nothing: it is rebuilt from the journal."""
        if self.path is not None:
            atomic_write_text(self.path, json.dumps(self.to_dict(), indent=2) + "\n")


def run_ledger(ledger_path: Path, cache_path: Path) -> Ledger:
    """A run's ledger read from its journal (empty, and nothing created, when nothing was recorded)."""
    journal = Journal(cache_path) if cache_path.is_file() else Journal()
    return Ledger(ledger_path, journal=journal)


class BudgetGuard:
    """The budget a client's requests are checked against when they are journaled (Journal.open)."""

    def __init__(self, config: BudgetConfig, ledger: Ledger) -> None:
        self.config = config
        self.ledger = ledger
