"""lion_core/world/server.py: the OpenAI-compatible server, its length cut and its rate limits."""

from __future__ import annotations

import asyncio

import httpx
import openai

from lion_core import prompts
from lion_core.world.server import WorldServer, count_tokens, reset_header


def test_openai_client_talks_to_the_server(world: WorldServer) -> None:
    async def ask() -> tuple[list[str], object]:
        async with openai.AsyncOpenAI(base_url=world.url, api_key="none") as client:
            models = await client.models.list()
            reply = await client.chat.completions.create(
                model="world", messages=prompts.teacher_messages("Reverse abcd"), max_tokens=16
            )
            return [m.id for m in models.data], reply

    models, reply = asyncio.run(ask())
    assert models == ["world"]
    assert reply.choices[0].message.content == "dcba"
    assert reply.usage.completion_tokens == count_tokens("dcba")
    assert reply.usage.prompt_tokens == world.stats.prompt_tokens


def test_reply_over_max_tokens_is_cut_with_finish_reason_length(world: WorldServer) -> None:
    async def ask():
        async with openai.AsyncOpenAI(base_url=world.url, api_key="none") as client:
            return await client.chat.completions.create(
                model="world", messages=prompts.referee_messages("Reverse ab", "ba", "ab"), max_tokens=5
            )

    reply = asyncio.run(ask())
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5


def _post_chat(world: WorldServer, messages: list[dict[str, str]], max_tokens: int) -> httpx.Response:
    body = {"model": "world", "messages": messages, "max_tokens": max_tokens}
    return httpx.post(f"{world.url}/chat/completions", json=body, timeout=10)


def test_world_answers_429_over_its_token_limit_counting_usage(world: WorldServer) -> None:
    """A token limit of 600/min holds 10 tokens: the first request (bucket full) is answered and charged
    its usage; the next one finds the bucket in debt and gets a 429 saying how long to wait."""
    world.faults.rate_limit_tpm = 600
    world.faults.reply_min_tokens = 40
    messages = prompts.teacher_messages("Reverse abcd")
    first = _post_chat(world, messages, max_tokens=1024)
    assert first.status_code == 200
    usage = first.json()["usage"]
    assert usage["completion_tokens"] == 40  # padded to reply_min_tokens
    assert first.headers["x-ratelimit-limit-tokens"] == "600"
    assert first.headers["x-ratelimit-remaining-tokens"] == "0"  # 10 in the bucket, ~80 used
    second = _post_chat(world, messages, max_tokens=1024)
    assert second.status_code == 429
    # the bucket holds 10 - total_tokens; 10 are needed back, at 10 tokens/s (less what refilled meanwhile)
    full_wait_ms = usage["total_tokens"] * 1000 / 10
    assert 0.9 * full_wait_ms <= float(second.headers["retry-after-ms"]) <= full_wait_ms
    assert world.stats.faults["rate_limit"] == 1


def test_world_sends_request_limit_headers_on_every_reply(world: WorldServer) -> None:
    world.faults.rate_limit_rpm = 60
    reply = _post_chat(world, prompts.teacher_messages("Reverse abcd"), max_tokens=16)
    assert reply.status_code == 200
    assert reply.headers["x-ratelimit-limit-requests"] == "60"
    assert reply.headers["x-ratelimit-remaining-requests"] == "0"  # one second of 60/min: 1 request
    assert reply.headers["x-ratelimit-reset-requests"].endswith("ms")
    again = _post_chat(world, prompts.teacher_messages("Reverse abcd"), max_tokens=16)
    assert again.status_code == 429 and 0 < float(again.headers["retry-after-ms"]) <= 1000


def test_world_rate_limits_hold_for_every_role_whatever_the_injected_faults(world: WorldServer) -> None:
    """Faults aimed at the referee only, and a fault budget already spent, leave the limits in force."""
    world.faults.rate_limit_rpm = 60
    world.faults.roles = ["referee"]
    world.faults.max_faults = 1
    teacher = prompts.teacher_messages("Reverse abcd")
    codes = [_post_chat(world, teacher, max_tokens=16).status_code for _ in range(3)]
    assert codes == [200, 429, 429]  # the second 429 comes after max_faults 429s: limits never run out


def test_reset_headers_are_written_as_openai_writes_them() -> None:
    assert [reset_header(s) for s in (0.12, 1.5, 360.0, 61.25)] == ["120ms", "1.5s", "6m0s", "1m1.25s"]
