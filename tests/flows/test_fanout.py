"""Bounded fan-out (issue 15, item 2): a stage runs only so many batch tasks at once, so the first
request leaves at once and memory does not grow with the pool; results keep the input order."""

from __future__ import annotations

import asyncio

from prefect import flow

from flows.fanout import batches_in_flight, fan_out
from lion_core.api.ledger import Ledger
from lion_core.config import EndpointConfig, LoopConfig


class CountingLedger(Ledger):
    def __init__(self) -> None:
        super().__init__()
        self.saves = 0

    def save(self) -> None:
        self.saves += 1


class Client:
    def __init__(self, endpoint: EndpointConfig) -> None:
        self.endpoint = endpoint


def test_a_fan_out_never_runs_more_batches_than_its_bound_and_keeps_input_order() -> None:
    running, peak, started = 0, 0, []

    async def call(first: int, batch: list[int]) -> list[int]:
        nonlocal running, peak
        started.append(first)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01 * (first % 3))  # batches finish out of order
        running -= 1
        return [x * 10 for x in batch]

    ledger = CountingLedger()

    @flow
    async def stage() -> list[int]:
        return await fan_out(call, list(range(400)), 10, "test", ledger, in_flight=3)

    assert asyncio.run(stage()) == [x * 10 for x in range(400)]
    assert peak == 3
    assert sorted(started) == list(range(0, 400, 10))
    assert ledger.saves == 1  # 40 batches in well under LEDGER_REFRESH_S: ledger.json written at the end


def test_the_default_bound_keeps_the_role_busy_and_a_batch_mode_role_fills_a_provider_batch() -> None:
    loop = LoopConfig(batch_size=64)
    assert batches_in_flight(Client(EndpointConfig(concurrency=32)), loop) == 2  # 2 × ⌈32 / 64⌉
    assert batches_in_flight(Client(EndpointConfig(concurrency=200)), loop) == 8  # 2 × ⌈200 / 64⌉
    batch = EndpointConfig(mode="batch", batch={"max_requests": 50_000})
    assert batches_in_flight(Client(batch), loop) == 782  # ⌈50,000 / 64⌉: one provider batch's worth
    assert batches_in_flight(Client(batch), LoopConfig(batch_size=64, batches_in_flight=5)) == 5


def test_a_failed_batch_lets_the_batches_in_flight_finish_then_fails_the_stage_naming_it() -> None:
    """Issue 22, item 6: one batch out of retries failed the stage at once, and Prefect cancelled its
    siblings in flight (shown "Crashed", re-done on retry)."""
    import pytest

    from lion_core.chat import LLMError

    finished: list[int] = []

    async def call(first: int, batch: list[int]) -> list[int]:
        if first == 10:  # fails once 0, 10 and 20 are all in flight
            await asyncio.sleep(0.05)
            raise LLMError("referee at http://127.0.0.1:1/v1 failed after retries: InternalServerError")
        await asyncio.sleep(0.5)  # in flight while batch 10 fails
        finished.append(first)
        return batch

    @flow
    async def stage() -> list[int]:
        return await fan_out(call, list(range(60)), 10, "referee judgements", CountingLedger(), in_flight=3)

    with pytest.raises(LLMError, match=r"^referee judgements: 1 of 6 batches failed \(the batch at 10\)"):
        asyncio.run(stage())
    assert sorted(finished) == [0, 20]  # in flight with it: finished, not cancelled
    # none started after the failure: a retry re-runs the failed batch and those never started only


def test_a_budget_stop_in_one_batch_stops_the_stage_as_a_budget_stop() -> None:
    import pytest

    from lion_core.api.budget import BudgetExceededError
    from lion_core.chat import LLMError

    async def call(first: int, batch: list[int]) -> list[int]:
        if first == 0:  # fails after the budget stop of the batch beside it
            await asyncio.sleep(0.05)
            raise LLMError("teacher failed after retries")
        raise BudgetExceededError("budget: max_tokens 10 would be exceeded", limit="max_tokens")

    @flow
    async def stage() -> list[int]:
        return await fan_out(call, list(range(20)), 10, "teacher answers", CountingLedger(), in_flight=2)

    with pytest.raises(BudgetExceededError):  # the stop wins: exit 3 and the budget line, not exit 1
        asyncio.run(stage())
