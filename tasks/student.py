"""Prefect tasks around the student: fine-tune (imitation), batched answers, held-out evaluation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from prefect import Task, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import INPUTS, TASK_SOURCE

from lion_core.config import LionConfig, StudentConfig
from lion_core.records import Response, read_jsonl
from lion_core.run.resume import file_hash
from lion_core.student.answers import answer_file
from lion_core.student.callbacks import StepRecord, format_step, is_logged
from lion_core.student.checkpoint import NOT_TRAINING, content_key, fingerprint, has_key
from lion_core.student.launch import FinetuneJob, run_finetune
from lion_core.student.preference import prefer
from lion_core.student.score import loss_file, read_losses
from lion_core.student.train import TrainResult
from lion_core.world.evaluation import evaluate_on_world, read_world_set


def _explicit_key(context, parameters: dict) -> str:
    """The task's `key` parameter is its cache key (computed from everything that matters)."""
    return parameters["key"]


class FinetuneProgress:
    """The fine-tune's progress artifact and log lines: every `log_every_steps` optimizer steps (and the
    first and the last), the percentage of steps done with the latest loss, learning rate and examples/s.
    A failed artifact update is logged once and never stops the training."""

    def __init__(self, name: str, every: int) -> None:
        self.name, self.every = name, every
        self.logger = get_run_logger()
        self.artifact_id = create_progress_artifact(0.0, description=f"{name}: starting")
        self.update_failed = False

    def __call__(self, record: StepRecord) -> None:
        if not is_logged(record.step, record.steps, self.every):
            return
        self.logger.info(f"{self.name} {format_step(record)}")
        self.update(100.0 * record.step / record.steps, f"{self.name} {format_step(record)}")

    def update(self, percent: float, description: str) -> None:
        try:
            update_progress_artifact(self.artifact_id, percent, description=description)
        except Exception as error:  # the UI's view of progress is not worth a fine-tune
            if not self.update_failed:
                self.logger.warning(f"{self.name}: progress artifact not updated ({error})")
            self.update_failed = True


def trained(name: str, train: Callable[..., TrainResult], job: FinetuneJob) -> dict:
    """Run a training stage on a job with its steps shown as a progress artifact and log lines."""
    progress = FinetuneProgress(f"{name} {job.out.parent.name}", job.student.log_every_steps)
    result = train(job, on_step=progress)
    last = f", final loss {result.losses[-1]:.4f}" if result.losses else ""
    progress.update(100.0, f"{progress.name}: {result.steps}/{result.steps} steps done{last}")
    return asdict(result)


@task(name="fine-tune", cache_key_fn=_explicit_key, persist_result=True)
def finetune_task(base: str, data: str, out_dir: str, student: StudentConfig, seed: int, key: str) -> dict:
    """Imitation: fine-tune `base` on the round's {prompt, response} file; keyed by (base, data, hparams)."""
    return trained(
        "fine-tune", run_finetune, FinetuneJob(Path(base), Path(data), Path(out_dir), student, seed, key)
    )


@task(name="preference", cache_key_fn=_explicit_key, persist_result=True)
def preference_task(base: str, data: str, out_dir: str, student: StudentConfig, seed: int, key: str) -> dict:
    """The preference stage (DPO) on the iteration's pairs, from its fine-tuned checkpoint; keyed by
    (checkpoint, pairs, settings)."""
    return trained(
        "preference", prefer, FinetuneJob(Path(base), Path(data), Path(out_dir), student, seed, key)
    )


def keyed_step(task: Task, job: FinetuneJob) -> TrainResult:
    """A training task for a job; a cached result whose checkpoint was removed trains again."""
    args = (str(job.base), str(job.data), str(job.out), job.student, job.seed, job.key)
    result = task(*args)
    if not has_key(job.out, job.key):
        result = task.with_options(refresh_cache=True)(*args)
    return TrainResult(**result)


def finetune_step(job: FinetuneJob) -> TrainResult:
    """The fine-tune task for a job (see `keyed_step`)."""
    return keyed_step(finetune_task, job)


def preference_step(job: FinetuneJob) -> TrainResult:
    """The preference task for a job (see `keyed_step`)."""
    return keyed_step(preference_task, job)


def _answers_key(context, parameters: dict) -> str:
    """(checkpoint identity, the questions file's content hash, where the answers go, student settings,
    seed): never the model itself, never the pool as a list."""
    student = parameters["student"].model_dump(mode="json", exclude=NOT_TRAINING)
    return content_key(
        fingerprint(Path(parameters["checkpoint"])),
        file_hash(Path(parameters["questions"])),
        parameters["answers"],
        student,
        parameters["seed"],
        parameters["send_inputs"],
    )


@task(name="student-answers", cache_key_fn=_answers_key, persist_result=True)
def student_answers_task(
    checkpoint: str, questions: str, answers: str, student: StudentConfig, seed: int, send_inputs: bool = True
) -> str:
    """The student's batched answers to the instructions of the JSONL file `questions` (the Cache Pool,
    or evaluation questions), written to the JSONL file `answers`; returns that file's content hash
    (the pool travels as files, not as task parameters or results). A progress artifact follows."""
    progress = create_progress_artifact(0.0, description=f"student answers ({Path(questions).name})")

    def on_batch(done: int, total: int) -> None:
        update_progress_artifact(progress, 100.0 * done / max(1, total), f"student answers: {done}/{total}")

    answer_file(student, Path(checkpoint), Path(questions), Path(answers), seed, send_inputs, on_batch)
    return file_hash(Path(answers))


def answers_step(
    config: LionConfig,
    checkpoint: Path,
    questions: Path,
    answers: Path,
    label: str | None = None,
    send_inputs: bool | None = None,
) -> list[Response]:
    """The student-answers task for files; a cached result whose answers file went missing or changed
    answers again. `label` names the task run; `send_inputs` defaults to config `loop.send_inputs`."""
    task = student_answers_task if label is None else student_answers_task.with_options(task_run_name=label)
    loop = config.loop
    inputs = loop.send_inputs if send_inputs is None else send_inputs
    args = (str(checkpoint), str(questions), str(answers), config.student, loop.seed, inputs)
    digest = task(*args)
    if not answers.exists() or file_hash(answers) != digest:
        task.with_options(refresh_cache=True)(*args)
    return read_jsonl(answers, Response)


def _loss_key(context, parameters: dict) -> str:
    """(checkpoint identity, the answers file's content hash, where the losses go, student settings)."""
    student = parameters["student"].model_dump(mode="json", exclude=NOT_TRAINING)
    return content_key(
        fingerprint(Path(parameters["checkpoint"])),
        file_hash(Path(parameters["answered"])),
        parameters["out"],
        student,
    )


@task(name="student-losses", cache_key_fn=_loss_key, persist_result=True)
def student_loss_task(checkpoint: str, answered: str, out: str, student: StudentConfig) -> str:
    """The student's loss on every teacher answer of the JSONL file `answered`, written to `out`;
    returns that file's content hash."""
    loss_file(student, Path(checkpoint), Path(answered), Path(out))
    return file_hash(Path(out))


def score_step(config: LionConfig, checkpoint: Path, answered: Path, out: Path) -> dict[str, float]:
    """The student-losses task for files; answered again when its file went missing or changed."""
    name = f"student-losses-{out.stem}"
    task = student_loss_task.with_options(task_run_name=name)
    args = (str(checkpoint), str(answered), str(out), config.student)
    digest = task(*args)
    if not out.exists() or file_hash(out) != digest:
        task.with_options(refresh_cache=True)(*args)
    return read_losses(out)


@task(name="held-out-eval", cache_policy=INPUTS + TASK_SOURCE, persist_result=True)
def heldout_task(checkpoint: str, heldout: str, student: StudentConfig, fingerprint: str) -> dict:
    """Exact match of the checkpoint on the held-out world set, per family and level."""
    return evaluate_on_world(Path(checkpoint), read_world_set(Path(heldout)), student).to_dict()
