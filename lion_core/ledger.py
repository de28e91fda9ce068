"""Usage ledger per role and the budget guard that stops a run before it overspends.

`ledger.json` in the run directory holds, per role: `requests` (HTTP requests sent, retries
included), `cache_hits`, `input_tokens`, `output_tokens`, `cost_usd` — in total and per scope (an
iteration). It is loaded on resume, so a re-run adds to the same totals.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from lion_core.config import BudgetConfig
from lion_core.records import atomic_write_text


class BudgetExceededError(RuntimeError):
    """The next request could exceed the configured budget; nothing was sent."""


@dataclass
class RoleUsage:
    """Counters of one role."""

    requests: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


def _usages(data: dict[str, dict]) -> dict[str, RoleUsage]:
    return {role: RoleUsage(**usage) for role, usage in data.items()}


class Ledger:
    """Thread-safe usage counters per role, persisted atomically as JSON."""

    def __init__(self, path: Path | None = None, scope: str | None = None) -> None:
        self.path = path
        self.scope = scope
        self._lock = threading.Lock()
        self.roles: dict[str, RoleUsage] = {}
        self.scopes: dict[str, dict[str, RoleUsage]] = {}
        if path is not None and path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            self.roles = _usages(data.get("roles", {}))
            self.scopes = {name: _usages(roles) for name, roles in data.get("scopes", {}).items()}

    def _targets(self, role: str) -> list[RoleUsage]:
        targets = [self.roles.setdefault(role, RoleUsage())]
        if self.scope is not None:
            targets.append(self.scopes.setdefault(self.scope, {}).setdefault(role, RoleUsage()))
        return targets

    def add_request(self, role: str) -> None:
        with self._lock:
            for usage in self._targets(role):
                usage.requests += 1

    def add_cache_hit(self, role: str) -> None:
        with self._lock:
            for usage in self._targets(role):
                usage.cache_hits += 1

    def add_usage(self, role: str, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        with self._lock:
            for usage in self._targets(role):
                usage.input_tokens += input_tokens
                usage.output_tokens += output_tokens
                usage.cost_usd += cost_usd

    def scope_usage(self, scope: str) -> dict[str, dict[str, float]]:
        """Counters of one scope (e.g. "iter_2") per role, as plain dicts."""
        with self._lock:
            return {role: asdict(usage) for role, usage in sorted(self.scopes.get(scope, {}).items())}

    def spent(self) -> tuple[float, int]:
        """Total USD and total tokens over all roles."""
        with self._lock:
            usd = sum(u.cost_usd for u in self.roles.values())
            tokens = sum(u.input_tokens + u.output_tokens for u in self.roles.values())
        return usd, tokens

    def to_dict(self) -> dict:
        usd, tokens = self.spent()
        with self._lock:
            roles = {role: asdict(usage) for role, usage in sorted(self.roles.items())}
            scopes = {
                name: {role: asdict(u) for role, u in sorted(usages.items())}
                for name, usages in self.scopes.items()
            }
        return {"roles": roles, "total": {"cost_usd": usd, "tokens": tokens}, "scopes": scopes}

    def save(self) -> None:
        """Write ledger.json atomically (no-op without a path)."""
        if self.path is not None:
            atomic_write_text(self.path, json.dumps(self.to_dict(), indent=2) + "\n")


class BudgetGuard:
    """Reserves a worst-case cost before each request; refuses one that could cross max USD or tokens."""

    def __init__(self, config: BudgetConfig, ledger: Ledger) -> None:
        self.config = config
        self.ledger = ledger
        self._lock = threading.Lock()
        self._reserved_usd = 0.0
        self._reserved_tokens = 0

    def reserve(self, usd: float, tokens: int) -> None:
        """Reserve a request's worst case or raise BudgetExceededError."""
        with self._lock:
            spent_usd, spent_tokens = self.ledger.spent()
            max_usd, max_tokens = self.config.max_usd, self.config.max_tokens
            if max_usd is not None and spent_usd + self._reserved_usd + usd > max_usd:
                raise BudgetExceededError(
                    f"budget: max_usd {max_usd:.4f} would be exceeded "
                    f"(spent {spent_usd:.4f}, in flight {self._reserved_usd:.4f}, next up to {usd:.4f})"
                )
            if max_tokens is not None and spent_tokens + self._reserved_tokens + tokens > max_tokens:
                raise BudgetExceededError(
                    f"budget: max_tokens {max_tokens} would be exceeded "
                    f"(spent {spent_tokens}, in flight {self._reserved_tokens}, next up to {tokens})"
                )
            self._reserved_usd += usd
            self._reserved_tokens += tokens

    def release(self, usd: float, tokens: int) -> None:
        """Release a reservation once the request's real usage is in the ledger."""
        with self._lock:
            self._reserved_usd -= usd
            self._reserved_tokens -= tokens
