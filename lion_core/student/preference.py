"""The preference stage (student.objective: sft+dpo): DPO with TRL's DPOTrainer on one iteration's
preference pairs, after its imitation fine-tune; the fine-tuned (SFT) checkpoint is the starting point
and the reference model.

The job is a FinetuneJob whose `base` is the SFT checkpoint and whose `data` is a JSONL file of
{prompt, chosen, rejected} rows, the prompt already in the
student's format (RUN/iter_K/dpo.jsonl). A full checkpoint is trained in full, TRL loading the reference
from the same path; a LoRA checkpoint keeps training its adapter, TRL keeping a frozen copy of it as the
reference. Progress as the fine-tune's (lion_core.student.callbacks): a StepRecord per optimizer step in
OUT.progress.jsonl and to `on_step`; Ctrl-C stops between steps and saves nothing; the result is saved
atomically with its key, and a checkpoint already trained under that key is reused.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
from datasets import Dataset
from peft import PeftModel
from transformers import AutoModelForCausalLM
from transformers.trainer_callback import PrinterCallback
from trl import DPOConfig, DPOTrainer

from lion_core.interrupt import check as check_stop
from lion_core.records import atomic_write_text
from lion_core.student.callbacks import ProgressCallback, StepCallback, StopCallback, progress_path
from lion_core.student.checkpoint import (
    DTYPES,
    FINGERPRINT_FILE,
    base_of,
    has_key,
    is_adapter,
    load_tokenizer,
    replace_dir,
)
from lion_core.student.launch import FinetuneJob
from lion_core.student.train import CHECKPOINTING, LOG_FILE, TrainResult

NO_SCHEDULED_STEPS = -1  # DPOConfig.max_steps when epochs decide


def policy(base: Path, precision: str):
    """The model DPO trains: the SFT checkpoint itself, or its LoRA adapter left trainable."""
    dtype = DTYPES[precision]
    if is_adapter(base):
        model = AutoModelForCausalLM.from_pretrained(base_of(base), dtype=dtype)
        return PeftModel.from_pretrained(model, base, is_trainable=True)
    return AutoModelForCausalLM.from_pretrained(base, dtype=dtype)


def dpo_config(job: FinetuneJob, scratch: Path) -> DPOConfig:
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
        **{CHECKPOINTING: student.gradient_checkpointing},
        seed=job.seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )


def prefer(job: FinetuneJob, on_step: StepCallback | None = None) -> TrainResult:
    """Run the preference stage (or reuse its checkpoint when trained under `job.key`)."""
    if has_key(job.out, job.key):
        return TrainResult(**json.loads((job.out / LOG_FILE).read_text(encoding="utf-8")))
    rows = [json.loads(line) for line in job.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{job.data}: no preference pairs to train on")
    started = time.perf_counter()
    tokenizer = load_tokenizer(job.base)
    scratch = job.out.with_name(job.out.name + ".scratch")
    progress = ProgressCallback(on_step, progress_path(job.out), job.student.log_every_steps, "preference")
    stop = StopCallback("preference stage")
    trainer = DPOTrainer(
        model=policy(job.base, job.student.precision),
        args=dpo_config(job, scratch),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[progress, stop],
    )
    trainer.remove_callback(PrinterCallback)  # the progress log has every step; nothing on stdout
    trainer.train()
    shutil.rmtree(scratch, ignore_errors=True)
    check_stop("preference stage")  # Ctrl-C stopped the trainer: save nothing
    seconds = time.perf_counter() - started
    result = TrainResult(
        str(job.out), trainer.state.global_step, len(rows), progress.tokens, seconds, progress.losses
    )
    tmp = job.out.with_name(job.out.name + ".tmp")
    adapters = {"selected_adapters": ["default"]} if isinstance(trainer.model, PeftModel) else {}
    trainer.model.save_pretrained(tmp, **adapters)  # a LoRA stage: its adapter, not TRL's reference copy
    tokenizer.save_pretrained(tmp)
    atomic_write_text(tmp / LOG_FILE, json.dumps(asdict(result), indent=1))
    atomic_write_text(tmp / FINGERPRINT_FILE, json.dumps({"key": job.key}))
    replace_dir(tmp, job.out)
    return result
