"""`lion run` when the machine misbehaves (issue 22, slow), through benchmarks/machine.py's probes — the
figures `make reliability` reports: a full disk (a small tmpfs, where this machine allows mounting one),
damaged state, SIGTERM, SIGKILLs of the whole process group, three runs at once. Each ends in one clear
line or completes, leaves nothing running, loses nothing and pays again at most for what was in flight."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.paths import benchmark

pytestmark = pytest.mark.slow
machine = benchmark("machine")
ROLES = ("teacher", "referee", "generator")


@pytest.mark.parametrize("stage", sorted(machine.DISK_SIZES))
def test_a_full_disk_ends_in_one_line_and_the_same_command_resumes(tmp_path: Path, stage: str) -> None:
    """The trial: 12 rich tracebacks, a Prefect log line last, nothing said of the disk."""
    result = machine.probe_disk_full(tmp_path, stage)
    if "skipped" in result:  # the unit tests simulate ENOSPC instead (tests/vocabulary/test_records.py)
        pytest.skip(result["skipped"])
    full = result["full"]
    assert full["exit"] == 5 and full["lines"] == 1 and not full["traceback"], full
    assert (
        full["message"].startswith("error: could not write ")
        and "(No space left on device)" in full["message"]
    )
    assert "free at least" in full["message"] and "re-run the same command to resume" in full["message"]
    assert full["nothing_torn"] and full["left"] == 0
    assert result["resumed_exit"] == 0
    # asked again: only what had arrived (or was in flight) and could not be written
    assert all(n <= machine.CONCURRENCY for n in result["rebought"].values()), result
    assert result["nothing_lost"], result


def test_damaged_state_is_refused_in_one_line_or_repaired_before_any_request(tmp_path: Path) -> None:
    """The trial: a bad copy of the cache ended in `DatabaseError: file is not a database`; a torn file
    got its line only after two Prefect tracebacks."""
    result = machine.probe_damage(tmp_path)
    assert result["finished_run_exit"] == 0
    cases = {case["case"]: case for case in result["cases"]}
    for case in cases.values():
        assert not case["traceback"] and case["requests_sent"] == 0 and case["left"] == 0, case
    for refused in ("cache not a database (a bad copy)", "cache cut short (a copy that stopped half way)"):
        case = cases[refused]
        assert case["exit"] == 2 and case["lines"] == 1 and "responses.sqlite.damaged" in case["message"], (
            case
        )
        assert case["after_way_out_exit"] == 0 and case["after_way_out_requests"] == 0, case
    torn = cases["first pool torn"]
    assert torn["exit"] == 2 and torn["lines"] == 1 and "iter_1/train_pool.jsonl:" in torn["message"], torn
    assert torn["after_way_out_exit"] == 0 and torn["after_way_out_requests"] == 0
    assert cases["teacher answers of a finished iteration torn"]["exit"] == 0  # replayed for nothing
    assert cases["ledger.json torn"]["exit"] == 0  # rebuilt from the journal


def test_sigterm_stops_a_run_in_one_line_and_the_same_command_resumes(tmp_path: Path) -> None:
    result = machine.probe_sigterm(tmp_path)
    stop = result["stop"]
    assert result["signalled"]
    assert stop["exit"] == 143 and stop["lines"] == 1 and not stop["traceback"], stop
    assert stop["message"].startswith(
        "interrupted: stopped on SIGTERM, nothing half-written; resume with: lion run"
    )
    assert stop["left"] == 0 and result["unsettled_after_stop"] == 0  # settled: unrecorded, worst case
    assert result["resumed_exit"] == 0
    assert all(n <= machine.CONCURRENCY for n in result["rebought"].values()), result
    assert result["nothing_lost"], result


def test_sigkills_of_the_whole_process_group_leave_nothing_running(tmp_path: Path) -> None:
    """The trial: eight group kills left eight Prefect servers, ~230 MB each. One kill, mid-referee (make
    reliability kills at every stage)."""
    result = machine.probe_group_kills(tmp_path, kills=[("referee", 40)])
    assert [k["killed"] for k in result["kills"]] == [True], result
    assert result["processes_left"] == 0 and result["temp_databases_left"] == 0, result
    assert result["resumed_exit"] == 0
    assert all(n <= machine.CONCURRENCY * len(result["kills"]) for n in result["rebought"].values()), result
    assert result["nothing_lost"], result


def test_three_runs_of_one_user_at_once_all_complete(tmp_path: Path) -> None:
    """The trial: concurrent `lion` shared ~/.prefect/prefect.db ("database is locked")."""
    result = machine.probe_concurrent(tmp_path)
    assert result["exits"] == [0] * machine.CONCURRENT_RUNS, result
    assert result["finished"] == machine.CONCURRENT_RUNS
    assert result["database_locked"] == 0 and result["tracebacks"] == 0, result
    assert not result["shared_home_database"]  # no server used the one in PREFECT_HOME
