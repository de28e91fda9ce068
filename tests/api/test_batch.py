"""lion_core/api/batch.py: the batch client answers at batch prices, splits at the limits, resubmits what
failed, expired or was cancelled or lost, and re-attaches to its batch after a SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
from pydantic import SecretStr

from lion_core.api.batch import BatchChatClient
from lion_core.api.batch_format import BatchRequest, encode_file, request_body
from lion_core.api.batch_store import BatchStore
from lion_core.api.budget import BudgetExceededError
from lion_core.api.build import build_client
from lion_core.api.cache import ResponseCache
from lion_core.api.ledger import Ledger
from lion_core.chat import LLMError, complete_all
from lion_core.config import BudgetConfig, EndpointConfig
from lion_core.world.server import WorldServer
from tests.support.paths import REPO
from tests.support.world import teacher_conversations

FAKE_KEY = "sk-test-NEVER-WRITE-THIS-batch-0123456789"
FAST = {"poll_interval_s": 0.05, "collect_s": 0.1}
PRICES = {"price_input_per_1k": 0.15, "price_output_per_1k": 0.6}


def endpoint(server: WorldServer, **batch: object) -> EndpointConfig:
    return EndpointConfig(
        base_url=server.url, model="world", max_tokens=32, mode="batch", batch={**FAST, **batch}, **PRICES
    )


def make_client(server: WorldServer, run_dir: Path, budget: BudgetConfig | None = None, **batch: object):
    return BatchChatClient(
        "teacher",
        endpoint(server, **batch),
        cache=ResponseCache(run_dir / "responses.sqlite"),
        ledger=Ledger(run_dir / "ledger.json"),
        budget=budget or BudgetConfig(),
        api_key=SecretStr(FAKE_KEY),
    )


def run_all(client, convs):
    return asyncio.run(complete_all(client, convs))


def test_batch_client_answers_at_batch_prices_in_one_batch(tmp_path: Path, world: WorldServer) -> None:
    tasks, convs = teacher_conversations(40)
    answers = [t.answer for t in tasks]
    seen = []
    client = make_client(world, tmp_path)
    client.on_progress = seen.append
    replies = run_all(client, convs)
    assert [r.content for r in replies] == answers
    assert world.stats.batches["created"] == 1 and world.stats.requests == 40
    usage = client.ledger.roles["teacher"]
    assert (usage.input_tokens, usage.output_tokens) == (
        world.stats.prompt_tokens,
        world.stats.completion_tokens,
    )
    full = (usage.input_tokens * 0.15 + usage.output_tokens * 0.6) / 1000
    assert usage.cost_usd == pytest.approx(full / 2)  # the Batch API's half price
    assert usage.requests == 40 and usage.unsettled == 0
    assert seen[-1].status == "completed" and seen[-1].completed == seen[-1].total == 40
    again = make_client(world, tmp_path)  # a re-run: every reply from the cache, no batch
    assert [r.content for r in run_all(again, convs)] == answers
    assert world.stats.batches["created"] == 1


def test_a_batch_over_the_request_limit_is_split(tmp_path: Path, world: WorldServer) -> None:
    tasks, convs = teacher_conversations(25)
    answers = [t.answer for t in tasks]
    assert [r.content for r in run_all(make_client(world, tmp_path, max_requests=10), convs)] == answers
    assert world.stats.batches["created"] == 3


def test_failed_lines_are_resubmitted_alone(tmp_path: Path, world: WorldServer) -> None:
    world.faults.batch_failed_share = 0.3
    tasks, convs = teacher_conversations(60)
    answers = [t.answer for t in tasks]
    client = make_client(world, tmp_path)
    assert [r.content for r in run_all(client, convs)] == answers
    assert world.stats.batches["created"] >= 2
    assert world.stats.answered["teacher"] == 60  # every reply paid once
    assert client.ledger.roles["teacher"].input_tokens == world.stats.prompt_tokens


@pytest.mark.parametrize(
    "knob,status", [("batch_expire_share", "expired"), ("batch_cancel_share", "cancelled")]
)
def test_expired_or_cancelled_batch_resubmits_only_what_is_missing(
    tmp_path: Path, world: WorldServer, knob: str, status: str
) -> None:
    setattr(world.faults, knob, 0.5)
    world.faults.batch_faulty = 1
    tasks, convs = teacher_conversations(30)
    answers = [t.answer for t in tasks]
    client = make_client(world, tmp_path)
    assert [r.content for r in run_all(client, convs)] == answers
    assert world.stats.batches[status] == 1 and world.stats.batches["completed"] == 1
    assert world.stats.batches["lines"] == 30  # 15 in the first batch, the missing 15 in the second
    assert world.stats.to_dict()["teacher_requests"]["repeated"] == 0
    assert client.ledger.roles["teacher"].unsettled == 0


def test_a_batch_that_keeps_failing_fails_the_request(tmp_path: Path, world: WorldServer) -> None:
    world.faults.batch_failed_share = 1.0
    _, convs = teacher_conversations(3)
    with pytest.raises(LLMError, match="no reply after 2 batches"):
        run_all(make_client(world, tmp_path, max_resubmits=1), convs)
    ledger = Ledger(tmp_path / "ledger.json", journal=ResponseCache(tmp_path / "responses.sqlite").journal)
    assert ledger.roles["teacher"].cost_usd == 0 and ledger.roles["teacher"].unsettled == 0


def test_budget_counts_batch_requests_at_their_worst_case(tmp_path: Path, world: WorldServer) -> None:
    _, convs = teacher_conversations(20)
    client = make_client(world, tmp_path, budget=BudgetConfig(max_usd=0.0001))
    with pytest.raises(BudgetExceededError):
        run_all(client, convs)
    assert world.stats.batches["lines"] < 20


def test_a_batch_recorded_before_create_returned_is_found_again(tmp_path: Path, world: WorldServer) -> None:
    """A kill between batches.create and recording its id: the re-run finds the batch by its input file."""
    tasks, convs = teacher_conversations(5)
    answers = [t.answer for t in tasks]
    client = make_client(world, tmp_path)
    keys = [client.key(m) for m in convs]
    ledger = client.ledger
    tickets = {k: ledger.open("teacher", k, (0.0, 100), BudgetConfig()) for k in keys}
    store = BatchStore(ledger.journal)
    row = store.record("teacher", world.url, tickets)
    sdk = openai.OpenAI(base_url=world.url, api_key="x")
    body = [BatchRequest(k, request_body("world", m, client.request_params())) for k, m in zip(keys, convs)]
    upload = sdk.files.create(file=("in.jsonl", encode_file(body)), purpose="batch")
    store.uploaded(row, upload.id)
    sdk.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert [r.content for r in run_all(make_client(world, tmp_path), convs)] == answers
    assert world.stats.batches["created"] == 1 and world.stats.requests == 5
    assert Ledger(tmp_path / "ledger.json", journal=ledger.journal).roles["teacher"].unsettled == 0


def test_no_key_in_batch_files_or_cache(tmp_path: Path, world: WorldServer) -> None:
    _, convs = teacher_conversations(5)
    run_all(make_client(world, tmp_path), convs)
    files = list(tmp_path.rglob("*"))
    assert any(f.parent.name == "batches" for f in files)
    for f in files:
        if f.is_file():
            assert FAKE_KEY.encode() not in f.read_bytes()


def test_build_client_in_batch_mode(tmp_path: Path, world: WorldServer) -> None:
    client = build_client(
        "referee",
        endpoint(world),
        ledger=Ledger(tmp_path / "l.json"),
        cache=ResponseCache(tmp_path / "c.sqlite"),
    )
    assert isinstance(client, BatchChatClient) and "key" not in repr(client).lower()


CHILD = """
import asyncio, json, sys
from pathlib import Path
from random import Random
from lion_core import prompts
from lion_core.config import EndpointConfig
from lion_core.api.ledger import Ledger
from lion_core.api.cache import ResponseCache
from lion_core.api.build import build_client
from lion_core.chat import complete_all
from lion_core.world.families import sample_tasks
url, run = sys.argv[1], Path(sys.argv[2])
ep = EndpointConfig(base_url=url, model="world", max_tokens=32, mode="batch",
                    batch={"poll_interval_s": 0.05, "collect_s": 0.1})
cache = ResponseCache(run / "responses.sqlite")
client = build_client("teacher", ep, ledger=Ledger(run / "ledger.json"), cache=cache)
convs = [prompts.teacher_messages(t.instruction) for t in sample_tasks(30, Random(0))]
replies = asyncio.run(complete_all(client, convs))
print(json.dumps([r.content for r in replies]))
"""


def start_child(url: str, run: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(run)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def test_sigkill_while_a_batch_is_in_flight_reattaches_without_resubmitting(
    tmp_path: Path, world: WorldServer
) -> None:
    world.faults.batch_delay_s = 3600.0  # the batch stays in progress until the test lets it finish
    answers = [t.answer for t in teacher_conversations(30)[0]]
    child = start_child(world.url, tmp_path)
    deadline = time.monotonic() + 60
    while world.stats.batches["created"] == 0:
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)  # it polls the batch it recorded
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    world.faults.batch_delay_s = 0.0
    rerun = start_child(world.url, tmp_path)
    out, _ = rerun.communicate(timeout=120)
    assert rerun.returncode == 0
    assert json.loads(out) == answers
    assert world.stats.batches["created"] == 1  # re-attached, not re-submitted
    assert world.stats.requests == 30
    ledger = Ledger(tmp_path / "ledger.json", journal=ResponseCache(tmp_path / "responses.sqlite").journal)
    usage = ledger.roles["teacher"]
    assert usage.unsettled == 0 and usage.input_tokens == world.stats.prompt_tokens


def test_a_batch_cancelled_by_someone_else_is_resubmitted(tmp_path: Path, world: WorldServer) -> None:
    world.faults.batch_delay_s = 3600.0
    tasks, convs = teacher_conversations(10)
    answers = [t.answer for t in tasks]
    client = make_client(world, tmp_path)
    sdk = openai.OpenAI(base_url=world.url, api_key="x")

    def cancel_the_first() -> None:
        while world.stats.batches["created"] == 0:
            time.sleep(0.02)
        world.faults.batch_delay_s = 0.0
        sdk.batches.cancel(next(iter(sdk.batches.list())).id)

    async def both():
        return await asyncio.gather(complete_all(client, convs), asyncio.to_thread(cancel_the_first))

    replies, _ = asyncio.run(both())
    assert [r.content for r in replies] == answers
    assert world.stats.batches["cancelled"] == 1 and world.stats.batches["completed"] == 1


def test_a_batch_the_provider_lost_is_resubmitted_and_counted_at_worst_case(tmp_path: Path) -> None:
    """A local server restarted while its batch was in flight: the batch is gone (404)."""
    tasks, convs = teacher_conversations(5)
    answers = [t.answer for t in tasks]
    with WorldServer(seed=0) as first:
        first.faults.batch_delay_s = 3600.0
        port = first.port

        async def until_created(client: BatchChatClient):
            task = asyncio.ensure_future(complete_all(client, convs))
            while first.stats.batches["created"] == 0:
                await asyncio.sleep(0.02)
            task.cancel()

        asyncio.run(until_created(make_client(first, tmp_path)))
    with WorldServer(seed=0).start(port=port) as second:
        client = make_client(second, tmp_path)
        assert [r.content for r in run_all(client, convs)] == answers
        assert second.stats.batches["created"] == 1
        assert client.ledger.roles["teacher"].unsettled == 5  # the lost batch, at its worst case
