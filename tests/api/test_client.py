"""The API client against the offline world: retries, the response cache, the ledger, the budget."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from pathlib import Path
from random import Random

import httpx
import pytest
from pydantic import SecretStr

from lion_core import prompts
from lion_core.api.budget import BudgetExceededError
from lion_core.api.cache import ResponseCache
from lion_core.api.client import OpenAIChatClient
from lion_core.api.ledger import Ledger
from lion_core.api.tokens import RateLimiter, TokenCounter, parse_duration, provider_wait
from lion_core.chat import LLMError, complete_all
from lion_core.config import BudgetConfig, EndpointConfig
from lion_core.world.families import sample_tasks
from lion_core.world.server import Faults, WorldServer, prompt_tokens

FAKE_KEY = "sk-test-NEVER-WRITE-THIS-0123456789abcdef"


def make_client(server: WorldServer, run_dir: Path, **endpoint: object) -> OpenAIChatClient:
    settings = {"base_url": server.url, "model": "world", "max_tokens": 32, "concurrency": 32, **endpoint}
    return OpenAIChatClient(
        "teacher",
        EndpointConfig(**settings),
        cache=ResponseCache(run_dir / "cache.sqlite"),
        ledger=Ledger(run_dir / "ledger.json"),
        budget=BudgetConfig(),
        api_key=SecretStr(FAKE_KEY),
    )


def teacher_conversations(n: int, seed: int = 0):
    tasks = sample_tasks(n, Random(seed))
    return tasks, [prompts.teacher_messages(t.instruction) for t in tasks]


def test_faulty_server_all_answered_and_ledger_matches_server(tmp_path: Path) -> None:
    faults = Faults(share_5xx=0.2, share_429=0.1, share_timeout=0.05, hang_s=1.5, retry_after_ms=20)
    with WorldServer(faults=faults, seed=1) as server:
        client = make_client(server, tmp_path, timeout_s=0.5, max_retries=12)
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


def test_repeated_requests_are_served_from_the_cache(tmp_path: Path, world: WorldServer) -> None:
    _, conversations = teacher_conversations(50)
    first = asyncio.run(complete_all(make_client(world, tmp_path), conversations))
    sent = world.stats.requests
    assert sent == 50
    again = make_client(world, tmp_path)  # a new process would build a new client on the same cache
    second = asyncio.run(complete_all(again, conversations))
    assert world.stats.requests == sent
    assert [r.content for r in second] == [r.content for r in first]
    assert again.ledger.roles["teacher"].cache_hits == 50


def test_identical_requests_in_flight_are_sent_once(tmp_path: Path, world: WorldServer) -> None:
    world.faults.latency_ms = 50
    _, conversations = teacher_conversations(1)
    replies = asyncio.run(complete_all(make_client(world, tmp_path), conversations * 10))
    assert len({r.content for r in replies}) == 1
    assert world.stats.requests == 1


def test_variant_asks_anew_and_is_cached_too(tmp_path: Path, world: WorldServer) -> None:
    client = make_client(world, tmp_path)
    _, (messages,) = teacher_conversations(1)

    async def ask() -> None:
        await client.complete(messages)
        await client.complete(messages, variant=1)
        await client.complete(messages, variant=1)

    asyncio.run(ask())
    assert world.stats.requests == 2


def test_budget_guard_stops_before_the_limit(tmp_path: Path, world: WorldServer) -> None:
    client = make_client(world, tmp_path, price_input_per_1k=1.0, price_output_per_1k=2.0, concurrency=1)
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
    client = make_client(world, tmp_path)
    client.guard.config = BudgetConfig(max_tokens=10)
    _, (messages,) = teacher_conversations(1)
    with pytest.raises(BudgetExceededError, match="max_tokens"):
        asyncio.run(client.complete(messages))
    assert world.stats.requests == 0


def test_the_key_never_reaches_disk_or_logs(
    tmp_path: Path, world: WorldServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(world, tmp_path)
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
        client = make_client(server, tmp_path, max_retries=1)
        _, (messages,) = teacher_conversations(1)
        with pytest.raises(LLMError) as caught:
            asyncio.run(client.complete(messages))
        assert "teacher" in str(caught.value) and server.url in str(caught.value)
        assert FAKE_KEY not in str(caught.value)
        assert server.stats.requests == 2


def test_rate_limiter_spaces_requests_and_tokens() -> None:
    now = [100.0]
    limiter = RateLimiter(requests_per_minute=60, tokens_per_minute=600, clock=lambda: now[0])
    delays = [limiter.book(tokens=5) for _ in range(4)]
    assert delays == [0.0, 1.0, 2.0, 3.0]  # one request per second
    heavy = RateLimiter(requests_per_minute=None, tokens_per_minute=600, clock=lambda: now[0])
    assert [heavy.book(tokens=100) for _ in range(3)] == [0.0, 10.0, 20.0]  # 100 tokens = 10 s at 600/min


# ----------------------------------------------------------------------------- counting tokens (issue 15)


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


def test_openai_reset_durations_are_read() -> None:
    assert parse_duration("1s") == 1 and parse_duration("6m0s") == 360 and parse_duration("120ms") == 0.12
    assert parse_duration("1.5s") == 1.5 and parse_duration("2h3m") == 7380 and parse_duration("20") == 20
    assert parse_duration("soon") is None and parse_duration("") is None


def test_the_estimate_learns_characters_per_token_from_replies(tmp_path: Path, world: WorldServer) -> None:
    client = make_client(world, tmp_path)
    _, conversations = teacher_conversations(20)
    before = [abs(client.counter.count(m) - prompt_tokens(m)) for m in conversations]
    asyncio.run(complete_all(client, conversations))
    after = [abs(client.counter.count(m) - prompt_tokens(m)) / prompt_tokens(m) for m in conversations]
    assert client.counter.chars_per_token != BudgetConfig().chars_per_token
    assert max(after) < 0.1 and sum(before) > 0  # within 10% of the world's own count once calibrated


def test_an_encoding_counts_exactly_and_a_missing_one_never_fails() -> None:
    counter = TokenCounter("gpt-4o-mini", chars_per_token=2.0)  # offline, its encoding cannot load
    messages = [{"role": "user", "content": "count <|endoftext|> these words"}]
    assert counter.count(messages) > 0

    class Words:
        def encode(self, text: str, disallowed_special: tuple = ()) -> list[str]:
            return text.split()

    counter.encoding = Words()
    assert counter.count(messages) == 4 + TokenCounter.overhead(1)


def test_queued_requests_do_not_hold_budget(tmp_path: Path, world: WorldServer) -> None:
    """Only requests in flight reserve their worst case: a long queue does not stop a run early."""
    client = make_client(world, tmp_path, price_input_per_1k=1.0, price_output_per_1k=2.0, concurrency=2)
    _, conversations = teacher_conversations(50)
    worst_case_each = client._reservation(conversations[0])[0]
    client.guard.config = BudgetConfig(max_usd=20 * worst_case_each)  # far below 50 worst cases
    replies = asyncio.run(complete_all(client, conversations))
    assert len(replies) == 50
    assert client.ledger.spent()[0] <= 20 * worst_case_each


# ----------------------------------------------------------------------------- the journal (issue 13)

KILLED_CLIENT = """
import asyncio, sys
from pathlib import Path
from pydantic import SecretStr
from lion_core import prompts
from lion_core.config import BudgetConfig, EndpointConfig
from lion_core.api.ledger import Ledger
from lion_core.api.client import OpenAIChatClient
from lion_core.api.cache import ResponseCache
from lion_core.chat import complete_all
from lion_core.world.families import sample_tasks
from random import Random

url, folder, concurrency, budget = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
endpoint = EndpointConfig(base_url=url, model="world", max_tokens=32, concurrency=concurrency)
client = OpenAIChatClient(
    "teacher", endpoint, cache=ResponseCache(folder / "cache.sqlite"), ledger=Ledger(folder / "ledger.json"),
    budget=BudgetConfig(max_tokens=int(budget)) if budget != "none" else BudgetConfig(),
)
tasks = sample_tasks(400, Random(0))
asyncio.run(complete_all(client, [prompts.teacher_messages(t.instruction) for t in tasks]))
"""


def kill_mid_flight(server: WorldServer, folder: Path, concurrency: int, answered: int, budget: str) -> None:
    """A client process spending on `server`, SIGKILLed once the server answered `answered` requests."""
    import os
    import signal
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CLIENT, server.url, str(folder), str(concurrency), budget],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    while server.stats.answered["teacher"] < answered:
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()


def test_a_sigkill_loses_no_spend_and_rebuys_at_most_what_was_in_flight(tmp_path: Path) -> None:
    """Issue 13, failure 1: the ledger forgot what the killed process had paid for."""
    concurrency = 4
    with WorldServer(faults=Faults(latency_ms=20), seed=0) as server:
        kill_mid_flight(server, tmp_path, concurrency, answered=40, budget="none")
        served_at_kill = server.stats.prompt_tokens + server.stats.completion_tokens
        answered_at_kill = server.stats.answered["teacher"]
        resumed = make_client(server, tmp_path, concurrency=concurrency)  # a re-run: same cache, same ledger
        usage = resumed.ledger.roles["teacher"]
        recorded = usage.input_tokens + usage.output_tokens
        assert 0 < recorded <= served_at_kill <= recorded + usage.unsettled_max_tokens
        assert usage.unsettled <= concurrency
        _, conversations = teacher_conversations(400)
        asyncio.run(complete_all(resumed, conversations))
        rebought = server.stats.answered["teacher"] - 400
        assert 0 <= rebought <= concurrency  # only what was in flight at the kill is asked again
        assert answered_at_kill - rebought <= resumed.ledger.roles["teacher"].requests


def test_a_budget_holds_across_a_sigkill(tmp_path: Path) -> None:
    """Issue 13, failure 2: after a kill the guard reloaded a ledger that had lost the killed spend."""
    budget = 6000
    with WorldServer(faults=Faults(latency_ms=20), seed=0) as server:
        kill_mid_flight(server, tmp_path, concurrency=4, answered=60, budget=str(budget))
        resumed = make_client(server, tmp_path, concurrency=4)
        resumed.guard.config = BudgetConfig(max_tokens=budget)
        _, conversations = teacher_conversations(400)
        with pytest.raises(BudgetExceededError):
            asyncio.run(complete_all(resumed, conversations))
        assert server.stats.prompt_tokens + server.stats.completion_tokens <= budget


def test_replies_still_in_flight_after_a_budget_stop_are_counted(tmp_path: Path) -> None:
    """Issue 13, failure 5: replies that arrived after the stop were missing from the ledger."""
    with WorldServer(faults=Faults(latency_ms=30), seed=0) as server:
        client = make_client(server, tmp_path, concurrency=8)
        client.guard.config = BudgetConfig(max_tokens=3000)
        _, conversations = teacher_conversations(200)
        with pytest.raises(BudgetExceededError):
            asyncio.run(complete_all(client, conversations))
        client.ledger.save()
        usage = Ledger(tmp_path / "ledger.json", journal=client.cache.journal).roles["teacher"]
        served = server.stats.prompt_tokens + server.stats.completion_tokens
        recorded = usage.input_tokens + usage.output_tokens
        assert recorded <= served <= recorded + usage.unsettled_max_tokens
        saved = json.loads((tmp_path / "ledger.json").read_text())
        assert saved["total"]["worst_case_tokens"] >= served


def test_a_reply_the_referee_rejects_is_not_served_again(tmp_path: Path) -> None:
    """Issue 13, failure 5: a malformed referee reply was cached, so the item stayed unscorable."""
    from lion_core.method import referee

    from lion_core.config import LionConfig
    from lion_core.method.direct import build_roles

    with WorldServer(faults=Faults(share_malformed=1.0), seed=0) as server:
        endpoint = {"base_url": server.url, "model": "world", "max_tokens": 64}
        config = LionConfig(teacher=endpoint, referee=endpoint, generator=endpoint)
        cache = ResponseCache(tmp_path / "cache.sqlite")
        client = build_roles(config, Ledger(tmp_path / "ledger.json"), cache).referee  # as a run builds it
        messages = referee.render("Reverse abc", "cba", "abc")
        first = asyncio.run(client.complete(messages))
        assert referee.parse_scores(first.content) is None
        server.faults.share_malformed = 0.0
        again = asyncio.run(client.complete(messages))
        assert not again.cached and referee.parse_scores(again.content) is not None
        assert server.stats.requests == 2
        assert asyncio.run(client.complete(messages)).cached  # a good reply is served from the cache


def test_a_ledger_written_before_the_journal_is_carried_into_it(tmp_path: Path, world: WorldServer) -> None:
    """An older run directory keeps its history, and its spend still counts against the budget."""
    old = {
        "teacher": {"requests": 7, "cache_hits": 2, "input_tokens": 700, "output_tokens": 70, "cost_usd": 0}
    }
    (tmp_path / "ledger.json").write_text(json.dumps({"roles": old, "scopes": {"iter_1": old}}))
    client = make_client(world, tmp_path)
    assert client.ledger.roles["teacher"].input_tokens == 700
    assert client.ledger.scope_usage("iter_1")["teacher"]["requests"] == 7
    assert client.ledger.spent()[1] == 770
    client.guard.config = BudgetConfig(max_tokens=800)
    _, (messages,) = teacher_conversations(1)
    with pytest.raises(BudgetExceededError):
        asyncio.run(client.complete(messages))
    client.ledger.save()
    again = make_client(world, tmp_path)  # the view it wrote is not carried a second time
    assert again.ledger.roles["teacher"].input_tokens == 700
