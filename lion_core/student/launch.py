"""Running imitation's fine-tune: in process, or in a separate process group under `accelerate launch`
(several processes, or an accelerate config: DDP, FSDP, DeepSpeed ZeRO-3). Either way an `on_step`
callback sees every optimizer step: called by the trainer in process, or fed from the trainer's per-step
log (OUT.progress.jsonl) as it grows. What cannot run here (FSDP without GPUs, ...) is refused in one
line before any process starts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lion_core.config import StudentConfig
from lion_core.interrupt import check as check_stop
from lion_core.interrupt import die_with_parent
from lion_core.records import atomic_write_text
from lion_core.student.callbacks import StepCallback, StepRecord, progress_path
from lion_core.student.checkpoint import has_key
from lion_core.student.checks import check_student, launches
from lion_core.student.train import LOG_FILE, TrainResult, finetune, read_pairs

FOLLOW_POLL_S = 0.5  # how often the per-step log of a training subprocess is read
MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # accelerate launch --mixed_precision
STOP_GRACE_S = 30.0  # how long stopped training processes may take to exit before they are killed


@dataclass(frozen=True)
class FinetuneJob:
    """One imitation fine-tune: continue `base` on the {prompt, response} pairs in `data` with the
    `student` settings and `seed`, save into `out` under the cache key `key`."""

    base: Path
    data: Path
    out: Path
    student: StudentConfig
    seed: int
    key: str


def launch_command(job: FinetuneJob, config_file: Path) -> list[str]:
    """`accelerate launch [--config_file F] --num_processes N --mixed_precision P -m lion_core.student.train
    ...`: student.precision overrides the config file's mixed precision."""
    config = job.student
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    command = [accelerate, "launch", "--num_processes", str(config.num_processes)]
    command += ["--mixed_precision", MIXED_PRECISION[config.precision]]
    if config.accelerate_config is not None:
        command += ["--config_file", str(config.accelerate_config)]
    elif config.num_processes > 1:
        command.append("--multi_gpu")
    return [
        *command,
        "-m",
        "lion_core.student.train",
        "--base",
        str(job.base),
        "--data",
        str(job.data),
        "--out",
        str(job.out),
        "--config",
        str(config_file),
        "--seed",
        str(job.seed),
        "--key",
        job.key,
    ]


def read_new_steps(path: Path, offset: int) -> tuple[list[StepRecord], int]:
    """The complete lines of a per-step log from byte `offset` on, and the offset after them (a line
    still being written is left for the next read)."""
    if not path.exists():
        return [], offset
    with path.open("rb") as file:
        file.seek(offset)
        chunk = file.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]
    records = [StepRecord(**json.loads(line)) for line in complete.splitlines() if line.strip()]
    return records, offset + len(complete)


def follow_steps(process: subprocess.Popen, path: Path, on_step: StepCallback | None) -> int:
    """Wait for `process`, passing each step its trainer appends to `path` to `on_step`; its exit code.
    Stops the process if following fails (an interrupt, a failing callback)."""
    offset = 0
    try:
        while True:
            check_stop("fine-tune")  # Ctrl-C: the except below stops the training processes
            finished = process.poll() is not None
            records, offset = read_new_steps(path, offset)
            for record in records:
                if on_step is not None:
                    on_step(record)
            if finished:
                return process.returncode
            time.sleep(FOLLOW_POLL_S)
    except BaseException:
        stop_process(process)
        raise


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM (`accelerate launch` passes it on to its training processes), SIGKILL after STOP_GRACE_S."""
    process.terminate()
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _read_all(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode("utf-8", "replace")


def finetune_in_processes(job: FinetuneJob, on_step: StepCallback | None = None) -> TrainResult:
    """Run the training entry point under accelerate launch, following its steps, and read its result
    line (its output goes to temporary files, so a chatty launcher never blocks on a full pipe). What
    cannot run here is refused before the launch. The launcher gets SIGTERM when the thread that started
    it — the one following it — ends, however the process ends (a SIGKILL of `lion` alone included), and
    passes it on to its training processes."""
    check_student(job.student)
    config_file = job.out.with_name(job.out.name + ".student.json")
    atomic_write_text(config_file, job.student.model_dump_json())
    progress = progress_path(job.out)
    progress.unlink(missing_ok=True)  # a killed earlier attempt's steps are not this run's
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        command = launch_command(job, config_file)
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, preexec_fn=die_with_parent())
        returncode = follow_steps(process, progress, on_step)
        if returncode != 0:
            raise RuntimeError(f"accelerate launch failed ({returncode}): {_read_all(stderr)[-2000:]}")
        return TrainResult(**json.loads(_read_all(stdout).strip().splitlines()[-1]))


def run_finetune(job: FinetuneJob, on_step: StepCallback | None = None) -> TrainResult:
    """Imitation's fine-tune: in this process, or under `accelerate launch` when `num_processes` > 1 or an
    `accelerate_config` is set; a checkpoint already trained under `key` is reused as it is (and
    `on_step` sees no step)."""
    if has_key(job.out, job.key):
        return TrainResult(**json.loads((job.out / LOG_FILE).read_text(encoding="utf-8")))
    if launches(job.student):
        return finetune_in_processes(job, on_step)
    return finetune(
        job.base, read_pairs(job.data), job.out, job.student, seed=job.seed, key=job.key, on_step=on_step
    )
