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
