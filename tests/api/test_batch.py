"""Batch mode: the JSONL format, the world's Files/Batch API, the batch client (journal, cache, faults,
splitting, re-attaching after a SIGKILL)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from random import Random

import openai
import pytest
from pydantic import SecretStr

from lion_core import prompts
from lion_core.api.batch import BatchChatClient
from lion_core.api.batch_format import (
    BatchFormatError,
    BatchRequest,
    chunks,
    decode_result,
    encode_file,
    request_body,
)
from lion_core.api.batch_store import BatchStore
from lion_core.api.budget import BudgetExceededError
from lion_core.api.build import build_client
from lion_core.api.cache import ResponseCache
from lion_core.api.ledger import Ledger
from lion_core.chat import LLMError, complete_all
from lion_core.config import BudgetConfig, EndpointConfig
from lion_core.world.families import sample_tasks
from lion_core.world.server import WorldServer

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


def conversations(n: int, seed: int = 0):
    tasks = sample_tasks(n, Random(seed))
    return [t.answer for t in tasks], [prompts.teacher_messages(t.instruction) for t in tasks]


def run_all(client, convs):
    return asyncio.run(complete_all(client, convs))


# ----------------------------------------------------------------------------- the file format


def test_chunks_respect_requests_and_bytes_per_file() -> None:
    requests = [
        BatchRequest(f"k{i}", request_body("m", [{"role": "user", "content": "x" * 50}], {}))
        for i in range(10)
    ]
    assert [len(c) for c in chunks(requests, 4, 10**6)] == [4, 4, 2]
    line = len(encode_file(requests[:1]))
    assert [len(c) for c in chunks(requests, 100, 3 * line)] == [3, 3, 3, 1]
    with pytest.raises(BatchFormatError, match=r"over batch\.max_bytes"):
        chunks(requests, 100, line - 1)


def test_result_lines_openai_envelope_vllm_bare_and_errors() -> None:
    body = {
        "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    ok = decode_result(
        json.dumps({"custom_id": "a", "response": {"status_code": 200, "body": body}, "error": None})
    )
    assert ok.completion is not None and (ok.completion.content, ok.completion.input_tokens) == ("hi", 3)
    bare = decode_result(json.dumps({"custom_id": "b", "response": body}))
    assert bare.completion is not None and bare.completion.output_tokens == 1
    failed = decode_result(
        json.dumps(
            {"custom_id": "c", "response": None, "error": {"code": "batch_expired", "message": "late"}}
        )
    )
    assert failed.completion is None and failed.error == "batch_expired: late"
    status = decode_result(
        json.dumps(
            {"custom_id": "d", "response": {"status_code": 400, "body": {"error": {"message": "bad"}}}}
        )
    )
    assert status.error == "HTTP 400: bad"


# ----------------------------------------------------------------------------- the world's Batch API


def test_world_files_and_batches_through_the_sdk(world: WorldServer) -> None:
    sdk = openai.OpenAI(base_url=world.url, api_key="x")
    _, convs = conversations(3)
    data = encode_file(BatchRequest(f"k{i}", request_body("world", m, {})) for i, m in enumerate(convs))
    upload = sdk.files.create(file=("in.jsonl", data), purpose="batch")
    assert sdk.files.retrieve(upload.id).bytes == len(data)
    assert sdk.files.content(upload.id).content == data
    batch = sdk.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while batch.status not in ("completed", "failed"):
        time.sleep(0.02)
        batch = sdk.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.request_counts.completed == 3
    lines = sdk.files.content(batch.output_file_id).text.splitlines()
    assert sorted(json.loads(x)["custom_id"] for x in lines) == ["k0", "k1", "k2"]
    assert [b.id for b in sdk.batches.list()] == [batch.id]
    assert world.stats.to_dict()["batches"]["created"] == 1


# ----------------------------------------------------------------------------- the batch client


def test_batch_client_answers_at_batch_prices_in_one_batch(tmp_path: Path, world: WorldServer) -> None:
    answers, convs = conversations(40)
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
    answers, convs = conversations(25)
    assert [r.content for r in run_all(make_client(world, tmp_path, max_requests=10), convs)] == answers
    assert world.stats.batches["created"] == 3


def test_failed_lines_are_resubmitted_alone(tmp_path: Path, world: WorldServer) -> None:
    world.faults.batch_failed_share = 0.3
    answers, convs = conversations(60)
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
    answers, convs = conversations(30)
    client = make_client(world, tmp_path)
    assert [r.content for r in run_all(client, convs)] == answers
    assert world.stats.batches[status] == 1 and world.stats.batches["completed"] == 1
    assert world.stats.batches["lines"] == 30  # 15 in the first batch, the missing 15 in the second
    assert world.stats.to_dict()["teacher_requests"]["repeated"] == 0
    assert client.ledger.roles["teacher"].unsettled == 0


def test_a_batch_that_keeps_failing_fails_the_request(tmp_path: Path, world: WorldServer) -> None:
    world.faults.batch_failed_share = 1.0
    _, convs = conversations(3)
    with pytest.raises(LLMError, match="no reply after 2 batches"):
        run_all(make_client(world, tmp_path, max_resubmits=1), convs)
    ledger = Ledger(tmp_path / "ledger.json", journal=ResponseCache(tmp_path / "responses.sqlite").journal)
    assert ledger.roles["teacher"].cost_usd == 0 and ledger.roles["teacher"].unsettled == 0


def test_budget_counts_batch_requests_at_their_worst_case(tmp_path: Path, world: WorldServer) -> None:
    _, convs = conversations(20)
    client = make_client(world, tmp_path, budget=BudgetConfig(max_usd=0.0001))
    with pytest.raises(BudgetExceededError):
        run_all(client, convs)
    assert world.stats.batches["lines"] < 20


def test_a_batch_recorded_before_create_returned_is_found_again(tmp_path: Path, world: WorldServer) -> None:
    """A kill between batches.create and recording its id: the re-run finds the batch by its input file."""
    answers, convs = conversations(5)
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
    _, convs = conversations(5)
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


# ------------------------------------------------------------------- SIGKILL while a batch is in flight

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
        cwd=Path(__file__).parents[1],
    )


def test_sigkill_while_a_batch_is_in_flight_reattaches_without_resubmitting(
    tmp_path: Path, world: WorldServer
) -> None:
    world.faults.batch_delay_s = 3600.0  # the batch stays in progress until the test lets it finish
    answers, _ = conversations(30)
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
    answers, convs = conversations(10)
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
    answers, convs = conversations(5)
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


# ---------------------------------------------------------- a demo-sized run, every role in batch mode

BATCH_MODE = {"mode": "batch", "batch": {"poll_interval_s": 0.1, "collect_s": 0.3}}


def batch_demo_config(run_dir: Path, port: int):
    """The demo shrunk to seconds (60 seeds, 24 new per iteration, 20 steps), every role in batch mode."""
    from flows.demo import demo_config
    from lion_core.config import LionConfig

    data = demo_config(run_dir, 2, 0, port).model_dump()
    data["world"].update(seed_size=60, heldout_size=36)
    data["student"].update(max_steps=20, epochs=1)
    data["loop"].update(new_per_iteration=24, batch_size=16, task_retry_delay_s=0.2)
    for role in ("teacher", "referee", "generator"):
        data[role].update(BATCH_MODE)
    return LionConfig.model_validate(data)


@pytest.mark.slow
def test_batch_mode_run_killed_mid_batch_reattaches_and_finishes(tmp_path: Path) -> None:
    from flows.demo import prepare_world_files, world_server
    from lion_core.config import dump_config
    from lion_core.run.rundir import RunDir, response_cache

    config = batch_demo_config(tmp_path / "run", 0)
    with world_server(config).start() as server:
        config = batch_demo_config(tmp_path / "run", server.port)
        prepare_world_files(config)
        path = tmp_path / "config.yaml"
        dump_config(config, path)
        command = [sys.executable, "-m", "lion_cli", "run", str(path)]
        env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"}
        server.faults.batch_delay_s = 3600.0  # the first batch stays in flight until after the kill
        first = subprocess.Popen(
            command,
            cwd=Path(__file__).parents[1],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while server.stats.batches["created"] == 0:
            assert first.poll() is None and time.monotonic() < deadline, "the run ended before the kill"
            time.sleep(0.05)
        time.sleep(1.0)  # polling the batch it recorded
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        assert server.stats.batches["created"] == 1
        server.faults.batch_delay_s = 0.0
        second = subprocess.run(
            command, cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True, timeout=900
        )
        assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
        assert server.stats.repeated_teacher_requests() == 0  # the first batch was re-attached, not re-sent
        assert server.stats.batches["completed"] == server.stats.batches["created"] > 1
        run = RunDir(config.run_dir)
        summaries = [json.loads(run.iteration(k).summary.read_text()) for k in (1, 2)]
        assert all("identical" in s for s in summaries)
        store = BatchStore(ResponseCache(response_cache(config)).journal)
        assert store.counts() == {"collected": server.stats.batches["created"]}
        ledger = json.loads(run.ledger.read_text())
        assert all(role["unsettled"] == 0 for role in ledger["roles"].values())
        assert ledger["total"]["tokens"] == server.stats.prompt_tokens + server.stats.completion_tokens
        third = subprocess.run(
            command, cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True, timeout=600
        )
        assert third.returncode == 0 and "this run: 0 API requests sent" in third.stdout
