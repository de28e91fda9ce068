"""The preference stage (student.objective: sft+dpo): DPO with TRL's DPOTrainer on one iteration's
preference pairs, after its imitation fine-tune; the fine-tuned (SFT) checkpoint is the starting point
and the reference model.

The pairs come in as a JSONL file of {prompt, chosen, rejected} rows, the prompt already in the
student's format (RUN/iter_K/dpo.jsonl). A full checkpoint is trained in full, TRL loading the reference
from the same path; a LoRA checkpoint keeps training its adapter, TRL keeping a frozen copy of it as the
reference. Progress as the fine-tune's: a StepRecord per optimizer step in OUT.progress.jsonl and to
`on_step`; Ctrl-C stops between steps and saves nothing; the result is saved atomically with its key,
and a checkpoint already trained under that key is reused.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import torch
from datasets import Dataset
from peft import PeftModel
from transformers import AutoModelForCausalLM, TrainerCallback
from transformers.trainer_callback import PrinterCallback
from trl import DPOConfig, DPOTrainer

from lion_core.config import StudentConfig
from lion_core.interrupt import check as check_stop
from lion_core.records import atomic_write_text
from lion_core.student.checkpoint import (
    DTYPES,
    FINGERPRINT_FILE,
    base_of,
    has_key,
    is_adapter,
    load_tokenizer,
    replace_dir,
)
from lion_core.student.train import LOG_FILE, StepCallback, StepRecord, TrainResult, progress_path

NO_SCHEDULED_STEPS = -1  # DPOConfig.max_steps when epochs decide


@dataclass(frozen=True)
class PreferenceJob:
    """One preference stage: continue the SFT checkpoint `base` on the {prompt, chosen, rejected} rows
    of `data` with the `student` settings and `seed`; save into `out` under the cache key `key`."""

    base: Path
    data: Path
    out: Path
    student: StudentConfig
    seed: int
    key: str


class Progress(TrainerCallback):
    """A StepRecord per optimizer step, to the per-step log and `on_step`; Ctrl-C between steps."""

    def __init__(self, path: Path, examples_per_step: int, on_step: StepCallback | None) -> None:
        self.path, self.per_step, self.on_step = path, examples_per_step, on_step
        self.started = time.perf_counter()
        self.file: TextIO | None = None
        self.losses: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("w", encoding="utf-8")

    def on_step_end(self, args, state, control, **kwargs):
        check_stop("preference stage")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs or self.file is None:
            return
        seconds = time.perf_counter() - self.started
        examples = state.global_step * self.per_step
        record = StepRecord(
            state.global_step,
            state.max_steps,
            float(logs["loss"]),
            float(logs.get("learning_rate", 0.0)),
            examples,
            examples / seconds if seconds > 0 else 0.0,
            seconds,
        )
        self.losses.append(record.loss)
        self.file.write(json.dumps(asdict(record)) + "\n")
        self.file.flush()
        if self.on_step is not None:
            self.on_step(record)

    def on_train_end(self, args, state, control, **kwargs):
        if self.file is not None:
            self.file.close()


def policy(base: Path, precision: str):
    """The model DPO trains: the SFT checkpoint itself, or its LoRA adapter left trainable."""
    dtype = DTYPES[precision]
    if is_adapter(base):
        model = AutoModelForCausalLM.from_pretrained(base_of(base), dtype=dtype)
        return PeftModel.from_pretrained(model, base, is_trainable=True)
    return AutoModelForCausalLM.from_pretrained(base, dtype=dtype)


def dpo_config(job: PreferenceJob, scratch: Path) -> DPOConfig:
    """TRL's settings from the student's: beta, learning rate, epochs or steps, batch, precision."""
    settings, student = job.student.preference, job.student
    return DPOConfig(
        output_dir=str(scratch),
        beta=settings.beta,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or NO_SCHEDULED_STEPS,
        per_device_train_batch_size=settings.train_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        lr_scheduler_type=student.lr_scheduler,
        warmup_steps=student.warmup_ratio,  # a float below 1: a share of the steps (transformers 5)
        max_length=student.max_length,
        bf16=student.precision == "bf16",
        fp16=student.precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        seed=job.seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )


def prefer(job: PreferenceJob, on_step: StepCallback | None = None) -> TrainResult:
    """Run the preference stage (or reuse its checkpoint when trained under `job.key`)."""
    if has_key(job.out, job.key):
        return TrainResult(**json.loads((job.out / LOG_FILE).read_text(encoding="utf-8")))
    rows = [json.loads(line) for line in job.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{job.data}: no preference pairs to train on")
    started = time.perf_counter()
    tokenizer = load_tokenizer(job.base)
    settings = job.student.preference
    scratch = job.out.with_name(job.out.name + ".scratch")
    progress = Progress(
        progress_path(job.out), settings.train_batch_size * settings.gradient_accumulation_steps, on_step
    )
    trainer = DPOTrainer(
        model=policy(job.base, job.student.precision),
        args=dpo_config(job, scratch),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[progress],
    )
    trainer.remove_callback(PrinterCallback)  # the progress log has every step; nothing on stdout
    trainer.train()
    shutil.rmtree(scratch, ignore_errors=True)
    result = TrainResult(
        str(job.out), trainer.state.global_step, len(rows), 0, time.perf_counter() - started, progress.losses
    )
    tmp = job.out.with_name(job.out.name + ".tmp")
    adapters = {"selected_adapters": ["default"]} if isinstance(trainer.model, PeftModel) else {}
    trainer.model.save_pretrained(tmp, **adapters)  # a LoRA stage: its adapter, not TRL's reference copy
    tokenizer.save_pretrained(tmp)
    atomic_write_text(tmp / LOG_FILE, json.dumps(asdict(result), indent=1))
    atomic_write_text(tmp / FINGERPRINT_FILE, json.dumps({"key": job.key}))
    replace_dir(tmp, job.out)
    return result
