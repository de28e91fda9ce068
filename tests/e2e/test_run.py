"""Ctrl-C stops a run within seconds — the fine-tune included — says how to resume in one line, exits
130 and leaves nothing half-written; the resumed run finishes without paying twice (issue 14, item 7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lion_core.config import StudentConfig
from lion_core.interrupt import STOP, Interrupted
from lion_core.student.data import SFTPair
from lion_core.student.train import finetune, progress_path

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def stop_flag() -> Iterator[None]:
    STOP.clear()
    yield
    STOP.clear()


def test_a_stop_ends_the_fine_tune_at_the_next_step_and_saves_nothing(
    tmp_path: Path, tiny_student_path: Path, stop_flag: None
) -> None:
    pairs = [SFTPair(f"### Instruction:\nReverse {w}\n\n### Response:\n", w[::-1]) for w in ("abc", "xyz")]
    config = StudentConfig(model_path=tiny_student_path, max_steps=500, train_batch_size=1)
    out = tmp_path / "student"
    steps: list[int] = []

    def on_step(record) -> None:  # Ctrl-C arrives while step 3 is reported
        steps.append(record.step)
        if record.step == 3:
            STOP.set()

    with pytest.raises(Interrupted):
        finetune(tiny_student_path, pairs, out, config, seed=0, on_step=on_step)
    assert steps == [1, 2, 3]  # not one micro-batch more
    assert not out.exists() and not out.with_name("student.tmp").exists()  # no checkpoint, not even half
    assert len(progress_path(out).read_text().splitlines()) == 3


def test_an_interrupt_is_not_an_error_that_prefect_retries() -> None:
    assert issubclass(Interrupted, KeyboardInterrupt) and not issubclass(Interrupted, Exception)


# ------------------------------------------------------------------ SIGINT to the process group


def small_run(tmp_path: Path, port: int, max_steps: int):
    from flows.demo import demo_config
    from lion_core.config import LionConfig

    data = demo_config(tmp_path / "run", 1, 0, port).model_dump()
    data["world"].update(seed_size=60, heldout_size=36)
    data["student"].update(max_steps=max_steps, epochs=1)
    data["loop"].update(new_per_iteration=24, batch_size=4, task_retry_delay_s=0.2)
    return LionConfig.model_validate(data)


def start_lion(tmp_path: Path, config) -> tuple[subprocess.Popen, list[str]]:
    """`lion run CONFIG` in a process group of its own, as a terminal starts it (Ctrl-C reaches it all)."""
    from flows.demo import prepare_world_files
    from lion_core.config import dump_config

    prepare_world_files(config)
    path = tmp_path / "config.yaml"
    dump_config(config, path)
    command = [sys.executable, "-m", "lion_cli", "run", str(path)]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, command


def wait_for(process: subprocess.Popen, ready, what: str) -> None:
    deadline = time.monotonic() + 300
    while not ready():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {process.communicate()}")
        assert time.monotonic() < deadline, f"never reached {what}"
        time.sleep(0.05)


def ctrl_c(process: subprocess.Popen) -> tuple[str, str]:
    """SIGINT to the process group (what a terminal sends on Ctrl-C); the run's output."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        return process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"Ctrl-C did not stop the run: {out[-2000:]} {err[-2000:]}") from None


def stopped_cleanly(process: subprocess.Popen, out: str, err: str, run_dir: Path) -> None:
    """Exit 130, one line saying how to resume, no traceback, nothing torn or half-written."""
    assert process.returncode == 130, (out[-2000:], err[-2000:])
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted:"), out
    assert "resume with: lion run " in lines[0]
    assert "Traceback" not in out + err, err[-3000:]
    for file in run_dir.rglob("*.json*"):
        if ".prefect-results" in file.parts or file.name.endswith(".progress.jsonl"):
            continue
        text = file.read_text()
        rows = text.splitlines() if file.suffix == ".jsonl" else [text]
        assert all(isinstance(json.loads(row), (dict, list)) for row in rows if row.strip()), file
    assert not list(run_dir.rglob("*.tmp"))


@pytest.mark.slow
def test_ctrl_c_during_the_fine_tune_stops_it(tmp_path: Path) -> None:
    from flows.demo import world_server
    from lion_core.run.rundir import RunDir

    max_steps = 100_000  # hours on CPU: only a stop ends it
    with world_server(small_run(tmp_path, 0, max_steps)).start() as server:
        config = small_run(tmp_path, server.port, max_steps)
        process, _ = start_lion(tmp_path, config)
        student = RunDir(config.run_dir).iteration(1).student
        steps = progress_path(student)
        wait_for(process, lambda: steps.exists() and len(steps.read_text().splitlines()) >= 3, "step 3")
        out, err = ctrl_c(process)
        stopped_cleanly(process, out, err, config.run_dir)
        done = len(steps.read_text().splitlines())
        assert done < 100, done  # stopped at the next step, not at the end of the fine-tune
        assert not student.exists()  # no checkpoint of a fine-tune that did not finish
        assert server.stats.received["referee"] == 0  # and nothing after it ran


@pytest.mark.slow
def test_ctrl_c_during_a_fan_out_stops_it_and_the_run_resumes(tmp_path: Path) -> None:
    from flows.demo import world_server
    from lion_core.run.rundir import RunDir

    with world_server(small_run(tmp_path, 0, 5)).start() as server:
        server.faults.latency_ms = 200  # the teacher's fan-out takes seconds: Ctrl-C lands inside it
        config = small_run(tmp_path, server.port, 5)
        process, command = start_lion(tmp_path, config)
        wait_for(process, lambda: server.stats.received["teacher"] >= 8, "the teacher's fan-out")
        out, err = ctrl_c(process)
        stopped_cleanly(process, out, err, config.run_dir)
        run = RunDir(config.run_dir)
        assert server.stats.received["teacher"] < 60  # the fan-out did not go on to the end
        assert not run.iteration(1).file("teacher").exists()

        server.faults.latency_ms = 0
        resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
        assert run.iteration(1).summary.exists()
        # only requests cut off in flight can be asked again (as after a kill): at most `concurrency`
        assert server.stats.repeated_teacher_requests() <= config.teacher.concurrency
