"""Training you can watch: every optimizer step reaches a callback, a per-step log, log lines and the
experiment trackers of `student.report_to`; the Prefect task shows a progress artifact; the report plots
the loss curve."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path
from random import Random
from typing import Any

import pytest
from accelerate.tracking import GeneralTracker

from lion_core import prompts
from lion_core.config import StudentConfig
from lion_core.run.report import publish_report
from lion_core.run.rundir import RunDir, write_json
from lion_core.student import train
from lion_core.student.checkpoint import training_key
from lion_core.student.data import SFTPair
from lion_core.student.launch import follow_steps, read_new_steps
from lion_core.student.train import StepRecord, TrainResult, finetune, progress_path, resolve_trackers
from lion_core.world.families import sample_tasks

STEPS = 8
BATCH = 4
ACCUMULATION = 2
EVERY = 3
LOGGED = [1, 3, 6, 8]  # every 3 steps, and the first and the last of 8
PEAK_LR = 3e-3
# linear schedule, 2 warm-up steps (0.25 of 8): 0, 1/2 of the peak, the peak, then down by 1/6 a step
LINEAR_LRS = [PEAK_LR * f for f in (0, 1 / 2, 1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6)]


def pairs(n: int, seed: int = 0) -> list[SFTPair]:
    tasks = sample_tasks(n, Random(seed), ["length"], levels=(1,))
    return [SFTPair(prompts.student_prompt("compact", t.instruction), t.answer) for t in tasks]


def config(base: Path, **overrides: Any) -> StudentConfig:
    settings = dict(
        model_path=base,
        prompt_template="compact",
        learning_rate=PEAK_LR,
        lr_scheduler="linear",
        warmup_ratio=0.25,
        max_steps=STEPS,
        train_batch_size=BATCH,
        gradient_accumulation_steps=ACCUMULATION,
        max_length=64,
        log_every_steps=EVERY,
        report_to="none",
    )
    return StudentConfig(**{**settings, **overrides})


class FakeTracker(GeneralTracker):
    """An Accelerate tracker that remembers what it was given (stands in for TensorBoard, MLflow, W&B)."""

    name = "fake"
    requires_logging_directory = False

    def __init__(self) -> None:
        super().__init__()
        self.started = self.finished = False
        self.config: dict[str, Any] = {}
        self.logged: list[tuple[int | None, dict[str, float]]] = []

    @property
    def tracker(self) -> FakeTracker:
        return self

    def start(self) -> None:
        self.started = True

    def store_init_configuration(self, values: dict) -> None:
        self.config = dict(values)

    def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
        self.logged.append((step, dict(values)))

    def finish(self) -> None:
        self.finished = True


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class Watched:
    """One fine-tune of 8 steps, watched through every channel."""

    def __init__(self, base: Path, out: Path) -> None:
        self.out = out
        self.records: list[StepRecord] = []
        self.tracker = FakeTracker()
        self.lines = Lines()
        logger = logging.getLogger(train.__name__)
        level = logger.level
        logger.addHandler(self.lines)
        logger.setLevel(logging.INFO)
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(train, "resolve_trackers", lambda report_to: [self.tracker])
                self.result: TrainResult = finetune(
                    base,
                    pairs(BATCH * ACCUMULATION * STEPS),
                    out,
                    config(base),
                    seed=0,
                    on_step=self.records.append,
                )
        finally:
            logger.removeHandler(self.lines)
            logger.setLevel(level)


@pytest.fixture(scope="module")
def watched(tiny_student_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Watched:
    return Watched(tiny_student_path, tmp_path_factory.mktemp("progress") / "run" / "iter_1" / "student")


def test_the_callback_sees_every_optimizer_step_with_its_loss_and_scheduled_learning_rate(
    watched: Watched,
) -> None:
    records = watched.records
    assert [r.step for r in records] == list(range(1, STEPS + 1))
    assert all(r.steps == STEPS for r in records)
    assert all(math.isfinite(r.loss) and r.loss > 0 for r in records)
    assert [r.loss for r in records] == watched.result.losses  # the losses the checkpoint records
    assert [r.learning_rate for r in records] == pytest.approx(LINEAR_LRS)
    # each step is one accumulation of 2 micro-batches of 4 examples
    assert [r.examples for r in records] == [BATCH * ACCUMULATION * s for s in range(1, STEPS + 1)]
    assert all(r.examples_per_s > 0 for r in records)


def test_every_step_is_in_the_progress_log_beside_the_checkpoint(watched: Watched) -> None:
    path = progress_path(watched.out)
    assert path == watched.out.parent / "student.progress.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [asdict(r) for r in watched.records]


def test_log_lines_every_log_every_steps_name_step_loss_rate_and_throughput(watched: Watched) -> None:
    assert len(watched.lines.messages) == len(LOGGED)
    for message, step in zip(watched.lines.messages, LOGGED):
        record = watched.records[step - 1]
        assert message.startswith(f"fine-tune step {step}/{STEPS}: loss {record.loss:.4f}, lr ")
        assert message.endswith(" examples/s")


def test_the_trackers_get_the_settings_and_a_record_every_log_every_steps(watched: Watched) -> None:
    tracker = watched.tracker
    assert tracker.started and tracker.finished
    assert tracker.config["learning_rate"] == PEAK_LR and tracker.config["steps"] == STEPS
    assert all(
        isinstance(v, (bool, int, float, str)) for v in tracker.config.values()
    )  # TensorBoard's hparams
    assert [step for step, _ in tracker.logged] == LOGGED
    for step, values in tracker.logged:
        record = watched.records[step - 1]
        assert values["train/loss"] == record.loss
        assert values["train/learning_rate"] == record.learning_rate
        assert values["train/examples_per_second"] > 0


def test_report_to_resolves_to_installed_trackers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train, "get_available_trackers", lambda: [])
    assert resolve_trackers(["auto"]) == [] and resolve_trackers(["none"]) == []  # nothing installed
    with pytest.raises(ValueError, match="wandb, mlflow, not installed here: pip install wandb mlflow"):
        resolve_trackers(["wandb", "mlflow"])
    monkeypatch.setattr(train, "get_available_trackers", lambda: ["tensorboard", "mlflow"])
    assert resolve_trackers(["auto"]) == ["tensorboard"]
    assert resolve_trackers(["mlflow"]) == ["mlflow"]  # a named tracker replaces the default
    assert resolve_trackers(["auto", "mlflow"]) == ["tensorboard", "mlflow"]
    assert resolve_trackers(["all"]) == ["mlflow", "tensorboard"]
    assert resolve_trackers(["none", "mlflow"]) == []  # none wins


def test_report_to_takes_a_name_or_a_list_and_defaults_to_auto(tiny_student_path: Path) -> None:
    assert StudentConfig().report_to == ["auto"]
    assert StudentConfig(report_to="wandb").report_to == ["wandb"]
    assert StudentConfig(report_to=["tensorboard", "mlflow"]).report_to == ["tensorboard", "mlflow"]
    with pytest.raises(ValueError, match="report_to"):
        StudentConfig(report_to="tensorbored")


def test_where_progress_is_shown_is_not_part_of_the_training_key(tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text('{"prompt": "Q: a\\nA: ", "response": "a"}\n')
    base = StudentConfig()
    watched_elsewhere = StudentConfig(report_to="wandb", log_every_steps=1)
    assert training_key(tmp_path, data, base, 0) == training_key(tmp_path, data, watched_elsewhere, 0)
    assert training_key(tmp_path, data, base, 0) != training_key(tmp_path, data, StudentConfig(epochs=1), 0)


def test_an_uninstalled_tracker_fails_before_anything_is_trained_or_written(
    tiny_student_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(train, "get_available_trackers", lambda: [])
    out = tmp_path / "iter_1" / "student"
    with pytest.raises(ValueError, match="pip install wandb"):
        finetune(tiny_student_path, pairs(8), out, config(tiny_student_path, report_to="wandb"), seed=0)
    assert not (tmp_path / "iter_1").exists()


def test_the_default_without_tensorboard_writes_no_tracker_files(
    tiny_student_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(train, "get_available_trackers", lambda: [])
    out = tmp_path / "iter_1" / "student"
    settings = config(tiny_student_path, report_to="auto", max_steps=2, gradient_accumulation_steps=1)
    result = finetune(tiny_student_path, pairs(8), out, settings, seed=0)
    assert result.steps == 2
    assert sorted(p.name for p in (tmp_path / "iter_1").iterdir()) == ["student", "student.progress.jsonl"]


def test_report_to_tensorboard_writes_event_files(tiny_student_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is optional (pip install tensorboard)")
    out = tmp_path / "iter_1" / "student"
    settings = config(tiny_student_path, report_to="tensorboard", max_steps=2, gradient_accumulation_steps=1)
    finetune(tiny_student_path, pairs(8), out, settings, seed=0)
    events = list((tmp_path / "iter_1" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)


def step_line(step: int) -> str:
    return json.dumps(asdict(StepRecord(step, 3, 1.0 / step, 1e-3, 4 * step, 10.0, 0.1 * step))) + "\n"


def test_the_per_step_log_is_read_line_by_line_leaving_a_line_being_written(tmp_path: Path) -> None:
    path = tmp_path / "student.progress.jsonl"
    assert read_new_steps(path, 0) == ([], 0)  # not there yet
    path.write_text(step_line(1) + step_line(2)[:10])
    records, offset = read_new_steps(path, 0)
    assert [r.step for r in records] == [1] and offset == len(step_line(1))
    path.write_text(step_line(1) + step_line(2) + step_line(3))
    records, offset = read_new_steps(path, offset)
    assert [r.step for r in records] == [2, 3] and offset == path.stat().st_size


def writer(path: Path, steps: int, then: str = "") -> subprocess.Popen:
    """A stand-in for the training subprocess: appends step lines to `path`, a half line first."""
    lines = [step_line(s) for s in range(1, steps + 1)]
    script = textwrap.dedent(
        f"""
        import sys, time
        lines = {lines!r}
        with open({str(path)!r}, "a") as f:
            for line in lines:
                f.write(line[:5]); f.flush(); time.sleep(0.2)
                f.write(line[5:]); f.flush(); time.sleep(0.2)
        {then}
        """
    )
    return subprocess.Popen([sys.executable, "-c", script])


def test_following_a_training_subprocess_passes_every_step_on(tmp_path: Path) -> None:
    path = tmp_path / "student.progress.jsonl"
    seen: list[StepRecord] = []
    assert follow_steps(writer(path, 3), path, seen.append) == 0
    assert [r.step for r in seen] == [1, 2, 3]


def test_a_failing_callback_stops_the_training_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "student.progress.jsonl"
    process = writer(path, 1, then="time.sleep(600)")

    def fail(record: StepRecord) -> None:
        raise RuntimeError("the watcher broke")

    with pytest.raises(RuntimeError, match="the watcher broke"):
        follow_steps(process, path, fail)
    assert process.poll() is not None  # not left running


def summary(k: int, losses: list[float]) -> dict[str, Any]:
    return {
        "iteration": k,
        "train_pool": 10,
        "cache_pool": 10,
        "hard": 5,
        "easy": 5,
        "unscorable": 0,
        "hard_share": 0.5,
        "mean_gap": 1.0,
        "train": {"steps": len(losses), "losses": losses},
        "heldout": None,
    }


def test_the_report_plots_the_loss_curve_of_every_iteration(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "runs" / "demo")
    write_json(run.iteration(1).summary, summary(1, [3.0, 2.0, 1.5]))
    write_json(run.iteration(2).summary, summary(2, [2.5, 1.2]))
    path, markdown = publish_report(run)
    curve = run.plots / "train_loss.png"
    assert curve.read_bytes().startswith(b"\x89PNG")
    assert "![train_loss](plots/train_loss.png)" in path.read_text()
    assert "![train_loss](data:image/png;base64," in markdown  # embedded in the UI's report


def test_no_loss_curve_without_losses(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "runs" / "old")
    write_json(run.iteration(1).summary, {**summary(1, []), "train": {"steps": 0}})
    publish_report(run)
    assert not (run.plots / "train_loss.png").exists()


async def progress_artifacts(flow_run_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                type=ArtifactFilterType(any_=["progress"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )


@pytest.mark.slow
def test_the_finetune_task_shows_a_progress_artifact_and_log_lines(
    tiny_student_path: Path, tmp_path: Path
) -> None:
    import asyncio
    import uuid

    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from tasks.student import finetune_task

    data = tmp_path / "sft.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": p.prompt, "response": p.response}) + "\n" for p in pairs(32))
    )
    out = tmp_path / "demo" / "iter_1" / "student"
    settings = config(tiny_student_path, max_steps=4, log_every_steps=2, gradient_accumulation_steps=1)

    @flow
    def one_finetune() -> dict:
        return finetune_task(str(tiny_student_path), str(data), str(out), settings, 0, uuid.uuid4().hex)

    lines = Lines()
    task_logger = logging.getLogger("prefect.task_runs")
    level = task_logger.level
    task_logger.addHandler(lines)
    task_logger.setLevel(logging.INFO)
    try:
        with prefect_test_harness(server_startup_timeout=90):
            state = one_finetune(return_state=True)
            result = state.result()
            artifacts = asyncio.run(progress_artifacts(state.state_details.flow_run_id))
    finally:
        task_logger.removeHandler(lines)
        task_logger.setLevel(level)
    assert result["steps"] == 4
    [progress] = artifacts
    assert progress.data == 100.0
    assert progress.description == f"fine-tune iter_1: 4/4 steps done, final loss {result['losses'][-1]:.4f}"
    steps = [m for m in lines.messages if m.startswith("fine-tune iter_1 step ")]
    assert [m.split("step ")[1].split(":")[0] for m in steps] == ["1/4", "2/4", "4/4"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_fine_tune_under_accelerate_launch_reports_every_step(
    tiny_student_path: Path, tmp_path: Path
) -> None:
    """Two CPU processes (torchrun through accelerate launch, gloo): the steps come from the per-step log
    the main process writes, with the losses the result reports and the examples of both processes."""
    from lion_core.student.launch import FinetuneJob, run_finetune

    accelerate_config = tmp_path / "two_processes.yaml"
    accelerate_config.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_machines: 1\n"
        f"num_processes: 2\nmachine_rank: 0\nmain_process_port: {free_port()}\nmixed_precision: 'no'\n"
    )
    data = tmp_path / "sft.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": p.prompt, "response": p.response}) + "\n" for p in pairs(64))
    )
    settings = config(
        tiny_student_path,
        max_steps=4,
        gradient_accumulation_steps=1,
        num_processes=2,
        accelerate_config=accelerate_config,
    )
    out = tmp_path / "run" / "iter_1" / "student"
    out.parent.mkdir(parents=True)
    seen: list[StepRecord] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        result = run_finetune(
            FinetuneJob(tiny_student_path, data, out, settings, 0, "two"), on_step=seen.append
        )
    assert result.processes == 2
    assert [r.step for r in seen] == [1, 2, 3, 4]
    assert [r.loss for r in seen] == result.losses
    assert [r.examples for r in seen] == [2 * BATCH * s for s in range(1, 5)]
