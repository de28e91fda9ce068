"""lion_core/run/state.py (issue 22, items 1 and 2): damage in a run directory is found at start, before
any request, and said in one line naming the file, how to recover and what it costs — or repaired by
replaying a finished iteration from the caches; after a failed write, what the run needs free."""

from __future__ import annotations

import errno
import json
import sqlite3
from pathlib import Path

import pytest

from lion_core.api.cache import ResponseCache
from lion_core.records import DamagedStateError
from lion_core.run.rundir import response_cache
from lion_core.run.state import check_run_state, human, space_needed, space_note
from tests.support.fakes import finished_run


def test_an_intact_finished_run_has_nothing_to_say(tmp_path: Path) -> None:
    config, _, _ = finished_run(tmp_path)
    ResponseCache(response_cache(config)).close()  # an intact (empty) cache
    assert check_run_state(config) == []


def test_a_cache_that_is_not_a_database_is_refused_with_the_way_out_and_its_cost(tmp_path: Path) -> None:
    """The trial's bad copy ended in a traceback `DatabaseError: file is not a database`."""
    config, run, _ = finished_run(tmp_path)
    cache = response_cache(config)
    cache.write_bytes(b"not a database: a bad copy " * 400)
    run.ledger.write_text(
        json.dumps({"roles": {"teacher": {"requests": 12}}, "total": {"tokens": 3400, "cost_usd": 1.5}})
    )
    with pytest.raises(DamagedStateError) as refused:
        check_run_state(config)
    line = str(refused.value)
    assert line.startswith(
        f"{cache}: the response cache (and money journal) is damaged (file is not a database)"
    )
    assert f"mv {cache} {cache}.damaged" in line
    assert "finished iterations are not replayed" in line
    assert "(12 requests, 3,400 tokens, $1.50) goes on counting against the budget" in line


def test_a_cache_cut_short_fails_the_integrity_check(tmp_path: Path) -> None:
    config, _, _ = finished_run(tmp_path)
    cache = response_cache(config)
    db = sqlite3.connect(cache)
    db.execute("CREATE TABLE filler (x TEXT)")
    db.executemany("INSERT INTO filler VALUES (?)", [("x" * 1000,) for _ in range(200)])
    db.commit()
    db.close()
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) // 2])  # a copy that stopped half way
    with pytest.raises(DamagedStateError, match=r"response cache .* is damaged"):
        check_run_state(config)


def test_a_torn_first_pool_is_refused_naming_file_and_line(tmp_path: Path) -> None:
    """The trial's torn file in a finished iteration: right line, but after two Prefect tracebacks."""
    config, run, _ = finished_run(tmp_path)
    pool = run.iteration(1).file("cache_pool")
    lines = pool.read_text().splitlines()
    pool.write_text("\n".join([*lines[:2], lines[2][:15]]) + "\n")  # torn in line 3
    with pytest.raises(DamagedStateError) as refused:
        check_run_state(config)
    line = str(refused.value)
    assert line.startswith(f"{pool}:3:") and "it is the run's first pool" in line
    assert "nothing is paid again if the seed file is unchanged" in line


def test_a_torn_file_of_a_finished_iteration_replays_it_for_nothing(tmp_path: Path) -> None:
    config, run, _ = finished_run(tmp_path)
    teacher = run.iteration(1).file("teacher")
    teacher.write_text(teacher.read_text()[:-20])  # torn in its last line
    last = len(teacher.read_text().splitlines())
    (note,) = check_run_state(config)
    assert note.startswith(f"{teacher}:{last}: does not parse, unlike what iteration 1 wrote")
    assert note.endswith("iteration 1 on is replayed from the caches (nothing is paid again)")
    _, _, calls = finished_run(tmp_path)  # and so it is: the fake teacher answers again, the file is whole
    assert calls and check_run_state(config) == []


def test_a_torn_record_of_the_config_is_refused(tmp_path: Path) -> None:
    config, run, _ = finished_run(tmp_path)
    run.config.write_text("loop:\n  tau: [1,\n")
    with pytest.raises(
        DamagedStateError, match=r"config\.yaml: does not parse .* writes it again from CONFIG"
    ):
        check_run_state(config)


def test_a_full_disk_says_what_the_run_holds_and_the_least_it_needs(tmp_path: Path) -> None:
    config, _, _ = finished_run(tmp_path, iterations=1)
    config = config.model_copy(update={"loop": config.loop.model_copy(update={"iterations": 3})})
    space = space_needed(config)
    assert space.finished == 1 and space.written > 0
    assert space.needed == 2 * space.written  # as much again per iteration left as it wrote per iteration
    note = space_note(config, errno.ENOSPC, "lion run config.yaml")
    assert note.startswith(
        f"{config.run_dir} holds {human(space.written)} after 1 of 3 iterations: free at least "
    )
    assert "re-run the same command to resume (lion run config.yaml)" in note
    assert space_note(config, errno.EIO, "lion run c.yaml").startswith("the disk failed: check it (dmesg)")


def test_sizes_read_as_people_read_them() -> None:
    assert [human(n) for n in (512, 3_200_000, 1_500_000_000)] == ["512 B", "3.2 MB", "1.5 GB"]
