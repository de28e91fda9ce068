"""The ledger, a view of the money journal (lion_core.api.journal), and the budget guard that reads it.

`ledger.json` in the run directory is rebuilt from the journal: per role, `requests` (HTTP requests
sent, retries included; 1 for a request whose outcome was never recorded), `cache_hits`,
`input_tokens`, `output_tokens`, `cost_usd` (what the provider reported), `unsettled` (requests in
flight now, or at a crash until the next run settles them) with their worst case `unsettled_max_tokens`,
`unsettled_max_usd`, and `unrecorded` (requests whose run ended before their reply was recorded: cut
off by a stop, a kill, a full disk) with `unrecorded_max_tokens`, `unrecorded_max_usd` — in total and
per scope (an iteration, "eval"). The budget guard counts recorded spend plus every unsettled and
unrecorded request at its worst case, across processes and resumes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from dataclasses import asdict
from pathlib import Path

from lion_core.api.batch_store import BatchStore
from lion_core.api.journal import Journal, RoleUsage, Ticket
from lion_core.config import BudgetConfig
from lion_core.records import DamagedStateError, atomic_write_text


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
        older = journal.path is not None and self.path is not None and self.path.is_file()
        if older and not journal.knows(self.run):
            journal.carry(self.run, read_ledger_file(self.path))

    def settle_unrecorded(self) -> int:
        """Close this run's requests still in flight as `unrecorded` (see Journal.close_unsettled) but
        those of provider batches still open; call it only while holding the run directory's lock, when
        nothing of the run is sending. How many were closed."""
        return self.journal.close_unsettled(self.run, keep=BatchStore(self.journal).open_tickets())

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

    def save_quietly(self) -> None:
        """`save`, on the way out of a failure: a view that cannot be written (a full disk) must not
        hide the failure (the next save rebuilds it from the journal)."""
        with contextlib.suppress(OSError, sqlite3.Error):
            self.save()


def read_ledger_file(path: Path) -> dict:
    """An older ledger.json (its counters are carried into a journal that knows nothing of the run);
    DamagedStateError when it does not parse."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise DamagedStateError(
            f"{path}: does not parse ({err}) and the response cache knows nothing of this run: move it "
            f"away (mv {path} {path}.damaged) and re-run; the spend it recorded then no longer counts "
            "against the budget"
        ) from None


def run_ledger(ledger_path: Path, cache_path: Path) -> Ledger:
    """A run's ledger read from its journal (empty, and nothing created, when nothing was recorded)."""
    journal = Journal(cache_path) if cache_path.is_file() else Journal()
    return Ledger(ledger_path, journal=journal)


class BudgetGuard:
    """The budget a client's requests are checked against when they are journaled (Journal.open)."""

    def __init__(self, config: BudgetConfig, ledger: Ledger) -> None:
        self.config = config
        self.ledger = ledger
