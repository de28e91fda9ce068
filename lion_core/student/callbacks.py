"""What a fine-tune shows while it runs, and how Ctrl-C stops it: callbacks for any `transformers.Trainer`
(TRL's SFTTrainer here; the same two fit DPOTrainer or any other TRL trainer).

    trainer = SFTTrainer(..., args=SFTConfig(logging_steps=1, ...),
                         callbacks=[ProgressCallback(on_step, progress_path(out), every=10), StopCallback()])
    trainer.train()
    check_stop("fine-tune")  # Ctrl-C during training: raise here, before anything is saved

- `ProgressCallback(on_step, path, every, name)`: each optimizer step becomes a `StepRecord` (step, loss,
  learning rate, examples and examples/s so far), appended to `path` (OUT.progress.jsonl, a JSON line
  per step) and passed to `on_step` on the main process; every `every` steps (and the first and the last)
  a log line. It reads the trainer's per-step logs, so the trainer must log every step
  (`logging_steps=1`). `records`, `losses` and `tokens` are what the fine-tune saw.
- `StopCallback(where)`: when Ctrl-C sets `lion_core.interrupt.STOP`, the trainer stops after the
  micro-batch in flight (its trackers closed as at a normal end); the caller then raises `Interrupted`
  with `lion_core.interrupt.check(where)` instead of saving.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from lion_core.interrupt import STOP
from lion_core.records import writing

PROGRESS_SUFFIX = ".progress.jsonl"  # OUT.progress.jsonl: the per-step log, beside the checkpoint
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepRecord:
    """One optimizer step of a fine-tune: its number (from 1) of `steps`, the mean loss over its
    micro-batches and processes, the learning rate it was taken at, and throughput so far."""

    step: int
    steps: int
    loss: float
    learning_rate: float
    examples: int  # examples seen so far, all processes
    examples_per_s: float
    seconds: float  # since training began


StepCallback = Callable[[StepRecord], None]


def progress_path(out_dir: Path) -> Path:
    """The per-step log of a fine-tune into `out_dir` (beside it: the checkpoint folder is replaced
    when it is saved)."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + PROGRESS_SUFFIX)


def is_logged(step: int, steps: int, every: int) -> bool:
    """Whether a step is logged and shown: every `every` steps, and the first and the last."""
    return step % every == 0 or step in (1, steps)


def format_step(record: StepRecord) -> str:
    """What a step's log line says: `step 10/256: loss 1.2345, lr 2.000e-05, 812.3 examples/s`."""
    return (
        f"step {record.step}/{record.steps}: loss {record.loss:.4f}, "
        f"lr {record.learning_rate:.3e}, {record.examples_per_s:.1f} examples/s"
    )


def examples_per_step(examples: int, batch: int, accumulation: int, processes: int) -> list[int]:
    """Examples of each optimizer step of one epoch, all processes, as a Trainer runs it: batches of
    `batch` per process (a lone process's last batch holds the rest; several processes get equal full
    batches, Accelerate completing the last ones), `accumulation` batches a step (the last step of the
    epoch takes the batches left)."""
    batches = math.ceil(examples / batch)
    if processes == 1:
        sizes = [batch] * (batches - 1) + [examples - batch * (batches - 1)]
    else:
        sizes = [batch] * math.ceil(batches / processes)
    return [sum(sizes[i : i + accumulation]) * processes for i in range(0, len(sizes), accumulation)]


class ProgressCallback(TrainerCallback):
    """Each optimizer step as a StepRecord: appended to `path` (if any) and passed to `on_step` (if any) on
    the main process; a log line `{name} step …` every `every` steps and at the first and the last.
    Needs the trainer to log every step (`logging_steps=1`): the step's loss is the trainer's own,
    averaged over micro-batches and processes."""

    def __init__(
        self,
        on_step: StepCallback | None = None,
        path: Path | None = None,
        every: int = 1,
        name: str = "fine-tune",
    ) -> None:
        self.on_step, self.path, self.every, self.name = on_step, path, every, name
        self.records: list[StepRecord] = []
        self.tokens = 0  # tokens seen, all processes, when the trainer logs them (SFTTrainer's num_tokens)
        self.started = time.perf_counter()
        self.epoch_steps: list[int] = []

    @property
    def losses(self) -> list[float]:
        return [r.loss for r in self.records]

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.records, self.tokens, self.started = [], 0, time.perf_counter()
        loader = kwargs.get("train_dataloader")
        if loader is not None:
            self.epoch_steps = examples_per_step(
                len(loader.dataset),
                args.per_device_train_batch_size,
                args.gradient_accumulation_steps,
                args.world_size,
            )
        if state.is_world_process_zero and self.path is not None:
            with writing(self.path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text("", encoding="utf-8")

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs or "loss" not in logs or (self.records and state.global_step <= self.records[-1].step):
            return  # not a training step's log (the end-of-training summary, an evaluation)
        self.tokens = int(logs.get("num_tokens", self.tokens))
        record = self._record(state.global_step, state.max_steps, logs)
        self.records.append(record)
        if not state.is_world_process_zero:
            return
        if self.path is not None:
            with writing(self.path), self.path.open("a", encoding="utf-8") as file:
                file.write(json.dumps(asdict(record)) + "\n")
        if is_logged(record.step, record.steps, self.every):
            logger.info(f"{self.name} {format_step(record)}")
        if self.on_step is not None:
            self.on_step(record)

    def _record(self, step: int, steps: int, logs: dict[str, float]) -> StepRecord:
        seconds = time.perf_counter() - self.started
        per_epoch = self.epoch_steps or [0]
        full, part = divmod(step, len(per_epoch))
        examples = full * sum(per_epoch) + sum(per_epoch[:part])
        rate = examples / seconds if seconds > 0 else 0.0
        loss, learning_rate = float(logs["loss"]), float(logs["learning_rate"])
        return StepRecord(step, steps, loss, learning_rate, examples, rate, seconds)


class StopCallback(TrainerCallback):
    """Ctrl-C: once `lion_core.interrupt.STOP` is set, the trainer stops after the micro-batch in flight
    (and ends as usual: its trackers are closed). `stopped` says whether it did; the caller raises with
    `lion_core.interrupt.check(where)` rather than save a half-trained model."""

    def __init__(self, where: str = "fine-tune") -> None:
        self.where = where
        self.stopped = False

    def _check(self, control: TrainerControl) -> None:
        if STOP.is_set():
            self.stopped = control.should_training_stop = True

    def on_step_begin(self, args, state, control, **kwargs: Any) -> None:
        self._check(control)

    def on_substep_end(self, args, state, control, **kwargs: Any) -> None:
        self._check(control)

    def on_step_end(self, args, state, control, **kwargs: Any) -> None:
        self._check(control)

    def on_log(self, args, state, control, **kwargs: Any) -> None:
        self._check(control)
