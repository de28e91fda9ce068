"""lion_core/api/client.py against the offline world: retries under faults, identical requests sent once,
the key kept off disk and out of logs, the token limiter booked and corrected by every reply."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path

import httpx
import pytest

from lion_core import prompts
from lion_core.api.client import OpenAIChatClient
from lion_core.api.ledger import Ledger
from lion_core.api.tokens import provider_wait
from lion_core.chat import LLMError, complete_all
from lion_core.config import BudgetConfig, EndpointConfig
from lion_core.world.server import Faults, WorldServer, prompt_tokens
from tests.support.world import FAKE_KEY, teacher_conversations, world_client


def test_faulty_server_all_answered_and_ledger_matches_server(tmp_path: Path) -> None:
    faults = Faults(share_5xx=0.2, share_429=0.1, share_timeout=0.05, hang_s=2.5, retry_after_ms=20)
    with WorldServer(faults=faults, seed=1) as server:
        # a timeout well above a loaded machine's reply time: only the hangs time out, each seen by the server
        client = world_client(server, tmp_path, timeout_s=1.5, max_retries=12)
        tasks, conversations = teacher_conversations(200)
        replies = asyncio.run(complete_all(client, conversations))
        assert [r.content for r in replies] == [t.answer for t in tasks]
        assert server.stats.faults["5xx"] > 0 and server.stats.faults["429"] > 0
        assert server.stats.faults["timeout"] > 0
        client.ledger.save()
        usage = client.ledger.roles["teacher"]
        assert usage.requests == server.stats.requests > 200  # retries are counted
        assert usage.input_tokens == server.stats.prompt_tokens
        assert usage.output_tokens == server.stats.completion_tokens
        assert (tmp_path / "ledger.json").exists()


def test_identical_requests_in_flight_are_sent_once(tmp_path: Path, world: WorldServer) -> None:
    world.faults.latency_ms = 50
    _, conversations = teacher_conversations(1)
    replies = asyncio.run(complete_all(world_client(world, tmp_path), conversations * 10))
    assert len({r.content for r in replies}) == 1
    assert world.stats.requests == 1


def test_variant_asks_anew_and_is_cached_too(tmp_path: Path, world: WorldServer) -> None:
    client = world_client(world, tmp_path)
    _, (messages,) = teacher_conversations(1)

    async def ask() -> None:
        await client.complete(messages)
        await client.complete(messages, variant=1)
        await client.complete(messages, variant=1)

    asyncio.run(ask())
    assert world.stats.requests == 2


def test_the_key_never_reaches_disk_or_logs(
    tmp_path: Path, world: WorldServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = world_client(world, tmp_path)
    _, conversations = teacher_conversations(20)
    asyncio.run(complete_all(client, conversations))
    client.ledger.save()
    assert FAKE_KEY not in repr(client)
    assert FAKE_KEY not in caplog.text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path


def test_failure_after_retries_names_role_and_endpoint_not_key(tmp_path: Path) -> None:
    with WorldServer(faults=Faults(share_5xx=1.0)) as server:
        client = world_client(server, tmp_path, max_retries=1)
        _, (messages,) = teacher_conversations(1)
        with pytest.raises(LLMError) as caught:
            asyncio.run(client.complete(messages))
        assert "teacher" in str(caught.value) and server.url in str(caught.value)
        assert FAKE_KEY not in str(caught.value)
        assert server.stats.requests == 2


def limited_client(tmp_path: Path, clock: list[float], **endpoint: object) -> OpenAIChatClient:
    """A client whose limiter runs on `clock` at 60 tokens/min: a booking of N tokens holds N seconds."""
    settings = {"base_url": "http://127.0.0.1:9/v1", "tokens_per_minute": 60, **endpoint}
    client = OpenAIChatClient(
        "teacher", EndpointConfig(**settings), cache=None, ledger=Ledger(), budget=BudgetConfig()
    )
    client.limiter.clock = lambda: clock[0]
    return client


def chat_request(messages: list[dict[str, str]], max_tokens: int) -> httpx.Request:
    body = {"model": "world", "messages": messages, "max_tokens": max_tokens}
    return httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions", json=body)


def test_a_request_is_booked_at_prompt_tokens_plus_max_tokens_then_corrected_to_usage(tmp_path: Path) -> None:
    clock = [0.0]
    client = limited_client(tmp_path, clock)
    messages = prompts.teacher_messages("Reverse abcd")
    request = chat_request(messages, max_tokens=1024)
    asyncio.run(client._on_http_request(request))
    chars = sum(len(m["content"]) for m in messages)  # the documented estimate (no tiktoken for "world")
    prompt = math.ceil(chars / BudgetConfig().chars_per_token) + 3 * len(messages) + 3
    assert client.counter.count(messages) == prompt
    assert client.limiter.book(0) == prompt + 1024  # 60 tokens/min: the next request waits that long
    usage = {"prompt_tokens": 40, "completion_tokens": 300, "total_tokens": 340}
    reply = httpx.Response(200, json={"usage": usage}, request=request)
    asyncio.run(client._on_http_response(reply))
    assert client.limiter.book(0) == 340  # corrected: only what the reply used is still booked


def test_requests_other_than_chat_are_neither_booked_nor_paced(tmp_path: Path) -> None:
    clock = [0.0]
    client = limited_client(tmp_path, clock)
    models = httpx.Request("GET", "http://127.0.0.1:9/v1/models")
    upload = httpx.Request("POST", "http://127.0.0.1:9/v1/files", content=b"x" * 4000)  # a Batch API file
    for request in (models, upload):
        asyncio.run(client._on_http_request(request))
        asyncio.run(client._on_http_response(httpx.Response(200, json={}, request=request)))
    assert client.limiter.book(0) == 0  # nothing held: the next chat request leaves at once


def test_a_failed_request_gives_its_booking_back(tmp_path: Path) -> None:
    clock = [0.0]
    client = limited_client(tmp_path, clock)
    request = chat_request(prompts.teacher_messages("Reverse abcd"), max_tokens=1024)
    asyncio.run(client._on_http_request(request))
    asyncio.run(client._on_http_response(httpx.Response(503, request=request)))
    assert client.limiter.book(0) == 0


def test_a_429_with_retry_after_pauses_the_whole_limiter(tmp_path: Path) -> None:
    clock = [0.0]
    client = limited_client(tmp_path, clock, tokens_per_minute=None)
    request = chat_request(prompts.teacher_messages("Reverse abcd"), max_tokens=64)
    asyncio.run(client._on_http_request(request))
    too_many = httpx.Response(429, headers={"retry-after-ms": "1500"}, request=request)
    asyncio.run(client._on_http_response(too_many))
    assert client.limiter.paused_for() == 1.5
    assert client.limiter.book(1) == 1.5  # every request of the client, not only the one that got the 429
    clock[0] = 1.5
    assert client.limiter.paused_for() == 0


def test_remaining_tokens_zero_with_a_reset_makes_the_next_request_wait(tmp_path: Path) -> None:
    clock = [0.0]
    client = limited_client(tmp_path, clock, tokens_per_minute=None)
    request = chat_request(prompts.teacher_messages("Reverse abcd"), max_tokens=50)
    asyncio.run(client._on_http_request(request))
    booked = client.booking(request.content).tokens
    headers = {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "20s"}
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    reply = httpx.Response(200, json={"usage": usage}, headers=headers, request=request)
    asyncio.run(client._on_http_response(reply))
    assert client.limiter.book(1) == 20.0  # no limit header: wait for the whole reset
    limit = {**headers, "x-ratelimit-limit-tokens": "600"}  # 10 tokens/s: the shortfall refills sooner
    assert provider_wait(200, limit, booked) == booked / 10
    assert provider_wait(200, {**limit, "x-ratelimit-remaining-tokens": str(booked)}, booked) == 0


def test_the_limits_a_provider_announces_lower_the_clients_own(tmp_path: Path) -> None:
    clock = [0.0]
    client = limited_client(tmp_path, clock, tokens_per_minute=None, requests_per_minute=600)
    request = chat_request(prompts.teacher_messages("Reverse abcd"), max_tokens=50)
    asyncio.run(client._on_http_request(request))
    headers = {"x-ratelimit-limit-requests": "6000", "x-ratelimit-limit-tokens": "60000"}
    asyncio.run(client._on_http_response(httpx.Response(503, headers=headers, request=request)))
    assert (client.limiter.rpm, client.limiter.tpm) == (600, 60000)  # its own 600/min is kept: lower


def test_the_estimate_learns_characters_per_token_from_replies(tmp_path: Path, world: WorldServer) -> None:
    client = world_client(world, tmp_path)
    _, conversations = teacher_conversations(20)
    before = [abs(client.counter.count(m) - prompt_tokens(m)) for m in conversations]
    asyncio.run(complete_all(client, conversations))
    after = [abs(client.counter.count(m) - prompt_tokens(m)) / prompt_tokens(m) for m in conversations]
    assert client.counter.chars_per_token != BudgetConfig().chars_per_token
    assert max(after) < 0.1 and sum(before) > 0  # within 10% of the world's own count once calibrated
