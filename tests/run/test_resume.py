"""A resumed run keeps what the run that did the work recorded: an iteration replayed from the caches
keeps its summary's `seconds` (issue 14, item 9)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from lion_core.config import LionConfig
from lion_core.method.loop import run_iteration
from lion_core.method.pools import initial_pools, write_pools
from lion_core.records import Instruction
from lion_core.run.rundir import RunDir
from tests.support.fakes import fake_effects, finished_run


def test_a_replayed_iteration_keeps_the_seconds_of_the_run_that_did_the_work(tmp_path: Path) -> None:
    config = LionConfig(student={"model_path": tmp_path}, loop={"new_per_iteration": 2, "min_words": 1})
    run = RunDir(tmp_path / "run")
    seeds = ["cats", "maps", "tea", "jazz"]
    write_pools(
        run.iteration(1),
        initial_pools(
            [Instruction(id=f"s{i}", instruction=f"Seed task {i} on {t}") for i, t in enumerate(seeds)]
        ),
    )
    first = asyncio.run(run_iteration(fake_effects(), config, run, 1)).summary
    assert first["seconds"] >= 0
    recorded = {**first, "seconds": 4321.5}  # what the first run, which paid and trained, took
    run.iteration(1).summary.write_text(json.dumps(recorded))

    again = asyncio.run(run_iteration(fake_effects(), config, run, 1)).summary
    assert again["seconds"] == 4321.5
    assert json.loads(run.iteration(1).summary.read_text())["seconds"] == 4321.5


def test_a_resumed_finished_run_replays_no_iteration(tmp_path: Path) -> None:
    _, run, first = finished_run(tmp_path)
    assert len(first) == 2
    summary = run.iteration(2).summary.read_text()
    _, _, again = finished_run(tmp_path)
    assert again == []  # nothing re-entered: not even the cached teacher
    assert run.iteration(2).summary.read_text() == summary


def test_a_changed_file_or_setting_replays_from_that_iteration_on(tmp_path: Path) -> None:
    _, run, _ = finished_run(tmp_path)
    judgements = run.iteration(2).file("judgements")
    judgements.write_text(judgements.read_text() + "\n")  # a file of iteration 2 changed
    _, _, calls = finished_run(tmp_path)
    assert len(calls) == 1  # iteration 1 skipped, iteration 2 replayed

    (run.iteration(1).root / "manifest.json").unlink()  # iteration 1 never finished
    _, _, calls = finished_run(tmp_path)
    assert len(calls) == 2  # both replayed: iteration 2 starts from iteration 1's new outputs

    _, _, calls = finished_run(tmp_path, tau=2.0)  # a setting of the method changed
    assert len(calls) == 2
    _, _, calls = finished_run(tmp_path, tau=2.0, batch_size=7, task_retries=0)  # operational only
    assert calls == []


def test_more_iterations_on_a_finished_run_skip_the_finished_ones(tmp_path: Path) -> None:
    _, _, _ = finished_run(tmp_path, iterations=1)
    _, _, calls = finished_run(tmp_path, iterations=2)
    assert len(calls) == 1  # only iteration 2 runs: `iterations` is not an input of iteration 1


def test_a_changed_evaluation_or_decontamination_set_replays(tmp_path: Path) -> None:
    """Inputs read from files count by their content, not their path."""
    heldout, eval_set = tmp_path / "heldout.jsonl", tmp_path / "eval.jsonl"
    heldout.write_text('{"instruction": "Reverse abc", "answer": "cba"}\n')
    eval_set.write_text('{"instruction": "Name three colours"}\n')
    settings = {
        "evaluation": {"heldout_path": heldout},
        "decontamination": {"enabled": True, "eval_sets": [eval_set]},
    }
    _, _, calls = finished_run(tmp_path, settings=settings)
    assert len(calls) == 2
    _, _, calls = finished_run(tmp_path, settings=settings)
    assert calls == []
    eval_set.write_text('{"instruction": "Name four colours"}\n')  # same path, new questions
    _, _, calls = finished_run(tmp_path, settings=settings)
    assert len(calls) == 2
    heldout.write_text('{"instruction": "Reverse abcd", "answer": "dcba"}\n')
    _, _, calls = finished_run(tmp_path, settings=settings)
    assert len(calls) == 2
