"""The response cache: SQLite key → reply, in the same database as the money journal, so that a reply
and its usage commit in one transaction (lion_core.api.journal)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from lion_core.api.journal import Journal, Ticket
from lion_core.chat import Completion, Messages


def cache_key(base_url: str, model: str, messages: Messages, params: dict[str, object]) -> str:
    """Stable hash of everything that determines a reply."""
    blob = json.dumps(
        {"base_url": base_url.rstrip("/"), "model": model, "messages": messages, "params": params},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """SQLite key → completion, safe across threads and processes (WAL). It shares its database with the
    money journal (lion_core.api.journal.Journal): a reply and its usage are committed in one transaction.

    A reply its role's parser rejected (`accepted=False`) is kept apart and never served: the next
    identical request is asked anew instead of repeating a verdict nobody could read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.journal = Journal(path)
        self._db, self._lock = self.journal.db, self.journal.lock
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS rejected (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM replies WHERE key = ?", (key,)).fetchone()
        return Completion(**{**json.loads(row[0]), "cached": True}) if row else None

    def put(
        self,
        key: str,
        completion: Completion,
        *,
        settles: tuple[Ticket, float] | None = None,
        accepted: bool = True,
    ) -> None:
        """Store a reply; `settles` = (its journal ticket, its cost): its usage commits with it."""
        value = json.dumps({**asdict(completion), "cached": False})
        table = "replies" if accepted else "rejected"
        with self.journal.transaction() as db:
            db.execute(f"INSERT OR REPLACE INTO {table} (key, value) VALUES (?, ?)", (key, value))
            if settles is not None:
                ticket, usd = settles
                self.journal.settle(db, ticket, (completion.input_tokens, completion.output_tokens, usd))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        self.journal.close()
