"""Issue 13 end to end, through the CLI and the world server (benchmarks/reliability.py's probes):
SIGKILLs at the teacher, referee and generator stages, a second run on the same directory, the embedded
Prefect server after a kill, a budget across a kill. Slow: each test runs `lion run` several times."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import reliability as probes  # noqa: E402


def test_sigkills_at_each_role_rebuy_at_most_what_was_in_flight_and_lose_no_spend(tmp_path: Path) -> None:
    """Failure 1 and the orphan server of 5: kills of the lion process alone at the teacher, referee and
    generator stages; the run resumes each time and finishes."""
    result = probes.probe_kills(tmp_path, probes.KILL_PLAN[:3], iterations=1)
    kills = result["kills"]
    assert [k["killed"] for k in kills] == [True, True, True], kills
    for kill in kills:  # what a kill can re-buy is what was in flight: at most `concurrency` per role
        assert all(n <= probes.CONCURRENCY for n in kill["in_flight_at_kill"].values()), kill
    in_flight = sum(sum(k["in_flight_at_kill"].values()) for k in kills)
    assert sum(result["rebought"].values()) <= in_flight
    assert result["teacher_repeated_at_server"] <= kills[0]["in_flight_at_kill"].get("teacher", 0)
    assert result["nothing_lost"], result  # ledger ≤ served ≤ ledger + in flight at worst case
    assert result["prefect_servers_left"] == 0
    assert result["resumed_exit"] == 0, result["resumed_tail"]


def test_a_second_run_on_the_same_directory_is_refused_at_once(tmp_path: Path) -> None:
    """Failure 3: two runs on one directory both went on (and corrupted it)."""
    result = probes.probe_second_run(tmp_path)
    assert result["first_exit"] == 0, result["first_tail"]
    assert result["second_exit"] == 4 and result["second_names_pid"] and result["second_lines"] == 1, result


def test_a_budget_holds_across_a_sigkill_and_its_stop_is_one_clean_line(tmp_path: Path) -> None:
    """Failures 2 and 5: after a kill the budget still counts what the killed run paid; the stop says so
    once, without a traceback, and the ledger counts every reply, late ones included."""
    result = probes.probe_budget(tmp_path, max_tokens=60_000)
    assert result["killed"]
    assert result["within_budget"], result
    assert result["exit"] == 3 and not result["traceback"], result["stop_output"]
    assert "stopped before exceeding the budget" in result["stop_output"]
    assert result["stop_lines"] == 1, result["stop_output"]
    assert result["nothing_lost"], result
