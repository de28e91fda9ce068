"""`lion run` as a user meets it (slow): Ctrl-C stops a run within seconds, the fine-tune included, says
how to resume in one line, exits 130 and leaves nothing half-written, and the resumed run pays nothing
twice (issue 14, item 7); SIGKILLs at each role, a second run on the same directory, a budget across a
kill (issue 13, through benchmarks/reliability.py's probes); a budget stop names the budget that
finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.demo import world_server
from lion_cli.main import app
from lion_core.run.rundir import RunDir
from lion_core.student.train import progress_path
from tests.support.configs import config_file, edited, local_config, small_demo
from tests.support.paths import benchmark
from tests.support.spawn import lion_process, run_lion

probes = benchmark("reliability")


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
    max_steps = 100_000  # hours on CPU: only a stop ends it
    with world_server(small_demo(tmp_path / "run", 0, 1, max_steps, batch_size=4)).start() as server:
        config = small_demo(tmp_path / "run", server.port, 1, max_steps, batch_size=4)
        with lion_process("run", str(config_file(config, tmp_path)), output=True) as process:
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
    with world_server(small_demo(tmp_path / "run", 0, 1, 5, batch_size=4)).start() as server:
        server.faults.latency_ms = 200  # the teacher's fan-out takes seconds: Ctrl-C lands inside it
        config = small_demo(tmp_path / "run", server.port, 1, 5, batch_size=4)
        path = config_file(config, tmp_path)
        with lion_process("run", str(path), output=True) as process:
            wait_for(process, lambda: server.stats.received["teacher"] >= 8, "the teacher's fan-out")
            out, err = ctrl_c(process)
            stopped_cleanly(process, out, err, config.run_dir)
        run = RunDir(config.run_dir)
        assert server.stats.received["teacher"] < 60  # the fan-out did not go on to the end
        assert not run.iteration(1).file("teacher").exists()

        server.faults.latency_ms = 0
        resumed = run_lion("run", str(path), timeout=600)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
        assert run.iteration(1).summary.exists()
        # only requests cut off in flight can be asked again (as after a kill): at most `concurrency`
        assert server.stats.repeated_teacher_requests() <= config.teacher.concurrency


# ------------------------------------------------ issue 13, through benchmarks/reliability.py's probes


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_second_run_on_the_same_directory_is_refused_at_once(tmp_path: Path) -> None:
    """Failure 3: two runs on one directory both went on (and corrupted it)."""
    result = probes.probe_second_run(tmp_path)
    assert result["first_exit"] == 0, result["first_tail"]
    assert result["second_exit"] == 4 and result["second_names_pid"] and result["second_lines"] == 1, result


@pytest.mark.slow
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


PRICE_PER_1K = 0.01  # USD per 1K tokens, in and out, of every role in the budget tests
STOP_BUDGET_USD = 0.005  # crossed by the teacher's first requests of iteration 1


def priced_world_config(tmp_path: Path, world, student: Path, max_usd: float) -> Path:
    """A one-iteration run on the offline world with every role priced and a USD budget."""
    from random import Random

    from lion_core.records import Instruction, write_jsonl
    from lion_core.world.families import sample_tasks

    tasks = sample_tasks(20, Random(0), None, [1, 2])
    write_jsonl(
        tmp_path / "seed.jsonl",
        [Instruction(id=f"s{i}", instruction=t.instruction) for i, t in enumerate(tasks)],
    )
    config = local_config(tmp_path, model_path=str(student))
    data = yaml.safe_load(config.read_text())
    for role in ("teacher", "referee", "generator"):
        data[role].update(
            base_url=world.url, price_input_per_1k=PRICE_PER_1K, price_output_per_1k=PRICE_PER_1K
        )
    data["student"]["epochs"] = 1
    data["loop"].update(iterations=1, new_per_iteration=5)
    data["budget"] = {"max_usd": max_usd}
    config.write_text(yaml.safe_dump(data))
    return config


def test_a_budget_stop_tells_the_projected_total_and_the_budget_that_finishes(
    tmp_path: Path, world, tiny_student_path: Path
) -> None:
    import re
    import shutil

    from lion_cli.process import EXIT_BUDGET

    student = shutil.copytree(tiny_student_path, tmp_path / "student")
    config = priced_world_config(tmp_path, world, student, STOP_BUDGET_USD)
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == EXIT_BUDGET, result.output
    lines = [line for line in result.output.splitlines() if "stopped before exceeding the budget" in line]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "projected cost of this recipe: $" in result.output  # said before it started
    stop = lines[0]
    assert "in iteration 1; projected total $" in stop and "at the cost per request seen so far" in stop
    assert "and re-run to resume (nothing is paid twice)" in stop
    suggested = float(re.search(r"set budget\.max_usd ≥ \$([\d.,]+) ", stop).group(1).replace(",", ""))
    assert suggested > STOP_BUDGET_USD
    result = CliRunner().invoke(app, ["run", str(edited(config, "budget", "max_usd", suggested))])
    assert result.exit_code == 0, result.output  # the budget the stop named finishes the recipe


# ------------------------------------------------ issue 22, item 6: a failed stage, retried, as if unfailed


def retried_config(run_dir: Path, port: int):
    """One iteration; a referee request that fails fails its batch at once (no retries)."""
    from lion_core.config import LionConfig

    data = small_demo(run_dir, port, 1, task_retries=0).model_dump()
    data["referee"]["max_retries"] = 0
    return LionConfig.model_validate(data)


@pytest.mark.slow
def test_a_run_whose_referee_batches_failed_resumes_to_the_files_of_an_unfailed_run(tmp_path: Path) -> None:
    """The retry the design promises: only the unfinished referee batches run again, the rest come from
    the cache, nothing is paid twice, and the run ends byte-identical to one that never failed."""
    from lion_core.run.rundir import ITERATION_FILES

    with world_server(retried_config(tmp_path / "a", 0)).start() as clean:
        unfailed = retried_config(tmp_path / "unfailed" / "run", clean.port)
        done = run_lion("run", str(config_file(unfailed, tmp_path / "unfailed")), timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with world_server(retried_config(tmp_path / "b", 0)).start() as server:
        server.faults.roles, server.faults.share_5xx, server.faults.max_faults = ["referee"], 1.0, 3
        config = retried_config(tmp_path / "failed" / "run", server.port)
        path = config_file(config, tmp_path / "failed")
        failed = run_lion("run", str(path), timeout=600)
        lines = failed.stdout.strip().splitlines()
        assert failed.returncode == 1 and len(lines) == 1, failed.stdout[-2000:] + failed.stderr[-2000:]
        assert lines[0].startswith("an endpoint kept failing: referee judgements, Cache Pool × 2 orders: ")
        assert "batches failed" in lines[0] and "the others finished and are cached" in lines[0]
        assert "Traceback" not in failed.stdout + failed.stderr
        answered_before = server.stats.answered["referee"]
        resumed = run_lion("run", str(path), timeout=600)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    # nothing paid twice: every request answered once, as many as the unfailed run's
    assert server.stats.answered["referee"] == clean.stats.answered["referee"] > answered_before
    assert server.stats.answered["teacher"] == clean.stats.answered["teacher"]
    assert server.stats.repeated_teacher_requests() == 0
    for k in (1, 2):
        for name in ITERATION_FILES:
            ours, theirs = (
                RunDir(config.run_dir).iteration(k).file(name),
                RunDir(unfailed.run_dir).iteration(k).file(name),
            )
            if theirs.exists():
                assert ours.read_bytes() == theirs.read_bytes(), ours
