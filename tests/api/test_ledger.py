"""lion_core/api/ledger.py over the journal (issue 13): a SIGKILLed client loses no spend and its budget
holds, replies after a budget stop are counted, an older ledger.json is carried in once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from lion_core.api.budget import BudgetExceededError
from lion_core.api.ledger import Ledger
from lion_core.chat import complete_all
from lion_core.config import BudgetConfig
from lion_core.world.server import Faults, WorldServer
from tests.support.world import teacher_conversations, world_client

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
        resumed = world_client(server, tmp_path, concurrency=concurrency)  # a re-run: same cache, same ledger
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
        resumed = world_client(server, tmp_path, concurrency=4)
        resumed.guard.config = BudgetConfig(max_tokens=budget)
        _, conversations = teacher_conversations(400)
        with pytest.raises(BudgetExceededError):
            asyncio.run(complete_all(resumed, conversations))
        assert server.stats.prompt_tokens + server.stats.completion_tokens <= budget


def test_replies_still_in_flight_after_a_budget_stop_are_counted(tmp_path: Path) -> None:
    """Issue 13, failure 5: replies that arrived after the stop were missing from the ledger."""
    with WorldServer(faults=Faults(latency_ms=30), seed=0) as server:
        client = world_client(server, tmp_path, concurrency=8)
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


def test_a_ledger_written_before_the_journal_is_carried_into_it(tmp_path: Path, world: WorldServer) -> None:
    """An older run directory keeps its history, and its spend still counts against the budget."""
    old = {
        "teacher": {"requests": 7, "cache_hits": 2, "input_tokens": 700, "output_tokens": 70, "cost_usd": 0}
    }
    (tmp_path / "ledger.json").write_text(json.dumps({"roles": old, "scopes": {"iter_1": old}}))
    client = world_client(world, tmp_path)
    assert client.ledger.roles["teacher"].input_tokens == 700
    assert client.ledger.scope_usage("iter_1")["teacher"]["requests"] == 7
    assert client.ledger.spent()[1] == 770
    client.guard.config = BudgetConfig(max_tokens=800)
    _, (messages,) = teacher_conversations(1)
    with pytest.raises(BudgetExceededError):
        asyncio.run(client.complete(messages))
    client.ledger.save()
    again = world_client(world, tmp_path)  # the view it wrote is not carried a second time
    assert again.ledger.roles["teacher"].input_tokens == 700


# ------------------------------------------------ issue 22, item 6: requests cut off are settled at the end


def test_requests_cut_off_in_flight_are_settled_when_the_run_ends_but_open_batches_stay(
    tmp_path: Path,
) -> None:
    """The trial left 16 requests `unsettled` in ledger.json forever: the run's end closes them as
    `unrecorded`, at their worst case; a provider batch still open is collected by the next run."""
    from lion_core.api.batch_store import BatchStore
    from lion_core.api.cache import ResponseCache

    cache = ResponseCache(tmp_path / "responses.sqlite")
    ledger = Ledger(tmp_path / "ledger.json", scope="iter_1", journal=cache.journal)
    cut = [ledger.open("referee", f"k{i}", (0.01, 100), BudgetConfig()) for i in range(3)]
    batched = ledger.open("teacher", "b1", (0.02, 200), BudgetConfig())
    BatchStore(cache.journal).record("teacher", "http://provider/v1", {"b1": batched})
    assert ledger.settle_unrecorded() == len(cut)
    ledger.save()
    saved = json.loads((tmp_path / "ledger.json").read_text())
    referee, teacher = saved["roles"]["referee"], saved["roles"]["teacher"]
    assert (referee["unsettled"], referee["unrecorded"], referee["unrecorded_max_tokens"]) == (0, 3, 300)
    assert teacher["unsettled"] == 1 and teacher["unrecorded"] == 0  # the open batch stays in flight
    assert saved["total"]["worst_case_tokens"] == 500  # what the budget counts: every one at its worst


def test_a_torn_ledger_json_is_only_a_view_when_the_journal_knows_the_run(tmp_path: Path) -> None:
    from lion_core.api.cache import ResponseCache
    from lion_core.records import DamagedStateError

    cache = ResponseCache(tmp_path / "responses.sqlite")
    ledger = Ledger(tmp_path / "ledger.json", journal=cache.journal)
    ledger.open("teacher", "k", (0.01, 100), BudgetConfig())
    (tmp_path / "ledger.json").write_text('{"roles": {"teach')  # torn
    again = Ledger(tmp_path / "ledger.json")
    again.attach(ResponseCache(tmp_path / "responses.sqlite").journal)  # rebuilt from the journal
    assert again.spent()[1] == 100
    with pytest.raises(DamagedStateError, match=r"ledger\.json: does not parse .* move it away"):
        Ledger(tmp_path / "ledger.json").attach(ResponseCache(tmp_path / "other.sqlite").journal)
