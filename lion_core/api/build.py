"""A role's chat client from its endpoint config: synchronous or through the provider's Batch API."""

from __future__ import annotations

from collections.abc import Callable

from lion_core.api.batch import BatchChatClient
from lion_core.api.cache import ResponseCache
from lion_core.api.client import OpenAIChatClient
from lion_core.api.ledger import Ledger
from lion_core.config import BudgetConfig, EndpointConfig


def build_client(
    role: str,
    endpoint: EndpointConfig,
    *,
    ledger: Ledger,
    cache: ResponseCache | None,
    budget: BudgetConfig | None = None,
    accept: Callable[[str], bool] | None = None,
) -> OpenAIChatClient:
    """A client for a role, with the key from the environment (raises before any work if missing); in
    `mode: batch` it sends through the provider's Batch API (lion_core.api.batch). `accept(text)`: what
    a reply must pass to be served from the cache again (the referee's must carry both score lines)."""
    kind = BatchChatClient if endpoint.mode == "batch" else OpenAIChatClient
    return kind(
        role, endpoint, cache=cache, ledger=ledger, budget=budget, api_key=endpoint.api_key(), accept=accept
    )
