"""The budget: what refuses a request that could cross `budget.max_usd` or `budget.max_tokens`."""

from __future__ import annotations

from lion_core.config import BudgetConfig


class BudgetExceededError(RuntimeError):
    """The next request could exceed the configured budget; nothing was sent. `limit` names the budget
    field it would cross: "max_usd" or "max_tokens"."""

    def __init__(self, message: str, limit: str = "max_usd") -> None:
        super().__init__(message)
        self.limit = limit


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
