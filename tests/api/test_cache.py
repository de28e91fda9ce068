"""lion_core/api/cache.py: what is served again (a repeated request; not a reply the referee rejects) and
the key replies are cached under (a world by its settings, a provider by its URL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lion_core.api.cache import ResponseCache
from lion_core.api.client import OpenAIChatClient
from lion_core.api.ledger import Ledger
from lion_core.chat import complete_all
from lion_core.config import EndpointConfig
from lion_core.world.server import Faults, WorldServer
from tests.support.world import teacher_conversations, world_client


def test_repeated_requests_are_served_from_the_cache(tmp_path: Path, world: WorldServer) -> None:
    _, conversations = teacher_conversations(50)
    first = asyncio.run(complete_all(world_client(world, tmp_path), conversations))
    sent = world.stats.requests
    assert sent == 50
    again = world_client(world, tmp_path)  # a new process would build a new client on the same cache
    second = asyncio.run(complete_all(again, conversations))
    assert world.stats.requests == sent
    assert [r.content for r in second] == [r.content for r in first]
    assert again.ledger.roles["teacher"].cache_hits == 50


def test_a_reply_the_referee_rejects_is_not_served_again(tmp_path: Path) -> None:
    """Issue 13, failure 5: a malformed referee reply was cached, so the item stayed unscorable."""
    from lion_core.config import LionConfig
    from lion_core.method import referee
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


def teacher_client(endpoint, cache_path: Path):
    from lion_core.api.cache import ResponseCache
    from lion_core.api.ledger import Ledger

    ledger = Ledger(cache_path.with_suffix(".json"))
    return OpenAIChatClient("teacher", endpoint, cache=ResponseCache(cache_path), ledger=ledger)


def test_a_demo_world_on_another_port_replays_the_cache(tmp_path: Path) -> None:
    import asyncio

    from flows.demo import demo_config
    from lion_core.chat import complete_all
    from lion_core.world.server import WorldServer

    _, conversations = teacher_conversations(20)
    cache = tmp_path / "responses.sqlite"
    with WorldServer(seed=0) as first, WorldServer(seed=0) as second:
        assert first.port != second.port
        before = demo_config(tmp_path / "run", 1, 0, first.port).teacher
        paid = asyncio.run(complete_all(teacher_client(before, cache), conversations))
        after = demo_config(tmp_path / "run", 1, 0, second.port).teacher
        replayed = asyncio.run(complete_all(teacher_client(after, cache), conversations))
        assert first.stats.requests == 20 and second.stats.requests == 0  # nothing bought twice
        assert [r.content for r in replayed] == [r.content for r in paid] and all(r.cached for r in replayed)


def test_the_cache_key_names_the_world_by_its_settings_and_a_provider_by_its_url(tmp_path: Path) -> None:
    from flows.demo import demo_config
    from lion_core.config import EndpointConfig

    messages = [{"role": "user", "content": "Reverse abc"}]

    def key(endpoint: EndpointConfig) -> str:
        return teacher_client(endpoint, tmp_path / "c.sqlite").key(messages)

    world = [demo_config(tmp_path / "run", 1, seed, 9000).teacher for seed in (0, 1)]
    assert key(world[0]) != key(world[1])  # another world on the same port: other replies
    assert key(world[0]) == key(world[0].model_copy(update={"base_url": "http://localhost:9/v1"}))
    a, b = EndpointConfig(base_url="https://a.example/v1"), EndpointConfig(base_url="https://b.example/v1")
    assert key(a) != key(b)  # two providers never share replies
    assert key(a) == key(EndpointConfig(base_url="https://a.example/v1/"))
