"""lion_core/api/budget.py: the guard refuses a request before it would cross the budget, and only
requests in flight hold their worst case."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lion_core.api.budget import BudgetExceededError
from lion_core.chat import complete_all
from lion_core.config import BudgetConfig
from lion_core.world.server import WorldServer
from tests.support.world import teacher_conversations, world_client


def test_budget_guard_stops_before_the_limit(tmp_path: Path, world: WorldServer) -> None:
    client = world_client(world, tmp_path, price_input_per_1k=1.0, price_output_per_1k=2.0, concurrency=1)
    client.guard.config = BudgetConfig(max_usd=0.5)
    _, conversations = teacher_conversations(100)

    async def spend() -> int:
        answered = 0
        for messages in conversations:
            try:
                await client.complete(messages)
            except BudgetExceededError as err:
                assert "max_usd" in str(err)
                return answered
            answered += 1
        return answered

    answered = asyncio.run(spend())
    assert 0 < answered < 100
    assert world.stats.requests == answered  # the refused request was never sent
    assert client.ledger.spent()[0] <= 0.5


def test_token_budget_refuses_before_sending(tmp_path: Path, world: WorldServer) -> None:
    client = world_client(world, tmp_path)
    client.guard.config = BudgetConfig(max_tokens=10)
    _, (messages,) = teacher_conversations(1)
    with pytest.raises(BudgetExceededError, match="max_tokens"):
        asyncio.run(client.complete(messages))
    assert world.stats.requests == 0


def test_queued_requests_do_not_hold_budget(tmp_path: Path, world: WorldServer) -> None:
    """Only requests in flight reserve their worst case: a long queue does not stop a run early."""
    client = world_client(world, tmp_path, price_input_per_1k=1.0, price_output_per_1k=2.0, concurrency=2)
    _, conversations = teacher_conversations(50)
    worst_case_each = client._reservation(conversations[0])[0]
    client.guard.config = BudgetConfig(max_usd=20 * worst_case_each)  # far below 50 worst cases
    replies = asyncio.run(complete_all(client, conversations))
    assert len(replies) == 50
    assert client.ledger.spent()[0] <= 20 * worst_case_each
