"""Imitation: fine-tune the student on (instruction, teacher response) through Accelerate.

The same code runs on one CPU, one GPU or many processes. Run as:

    python -m lion_core.student.train --base CKPT --data pairs.jsonl --out OUT --config student.json
    accelerate launch --multi_gpu --num_processes 2 -m lion_core.student.train ...   # or torchrun

`pairs.jsonl` holds {"prompt", "response"} rows; `student.json` a StudentConfig. Training continues
from `--base` (the previous iteration's checkpoint, as Lion does) and saves with save_pretrained
into OUT atomically (an adapter for LoRA, plus merged weights when `merge_adapter` is set).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import typer
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import get_scheduler

from lion_core.config import StudentConfig
from lion_core.records import atomic_write_text
from lion_core.student.checkpoint import (
    FINGERPRINT_FILE,
    load_for_training,
    load_tokenizer,
    replace_dir,
)
from lion_core.student.data import SFTPair, build_examples, collate

PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
LOG_FILE = "train_log.json"


@dataclass
class TrainResult:
    """What a fine-tune did: steps, examples, per-step losses and where the checkpoint is."""

    checkpoint: str
    steps: int
    examples: int
    tokens: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    processes: int = 1


def make_accelerator(config: StudentConfig) -> Accelerator:
    """CPU when no GPU is present (also under torchrun/accelerate launch: gloo, one process each)."""
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=PRECISION[config.precision],
        gradient_accumulation_steps=config.gradient_accumulation_steps,
    )


def planned_steps(config: StudentConfig, batches_per_epoch: int) -> int:
    """Optimizer steps of a round: max_steps, else epochs over the data. Accelerate ends an accumulation
    at the end of each pass over the loader, so an epoch is ceil(batches / accumulation) steps."""
    if config.max_steps is not None:
        return config.max_steps
    per_epoch = math.ceil(batches_per_epoch / config.gradient_accumulation_steps)
    return max(1, math.ceil(config.epochs * per_epoch))


def _batches(loader: DataLoader):
    """Endless passes over the loader (a new shuffle each epoch)."""
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def finetune(
    base: Path,
    pairs: list[SFTPair],
    out_dir: Path,
    config: StudentConfig,
    *,
    seed: int,
    key: str = "",
    accelerator: Accelerator | None = None,
) -> TrainResult:
    """Fine-tune `base` on `pairs` and save to `out_dir`; `key` is recorded as the checkpoint's identity."""
    started = time.perf_counter()
    accelerator = accelerator or make_accelerator(config)
    set_seed(seed)
    tokenizer = load_tokenizer(base)
    examples = build_examples(tokenizer, pairs, config.max_length)
    if not examples:
        raise ValueError(f"no training example fits student.max_length={config.max_length}")
    model = load_for_training(base, config)
    loader = DataLoader(
        examples,
        batch_size=config.train_batch_size,
        shuffle=True,
        collate_fn=lambda batch: collate(batch, tokenizer.pad_token_id),
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps = planned_steps(config, len(loader))
    # Not prepared: Accelerate would step it once per process; it advances once per optimizer step.
    scheduler = get_scheduler(config.lr_scheduler, optimizer, math.ceil(config.warmup_ratio * steps), steps)
    losses, tokens = _train_loop(
        accelerator, model, optimizer, scheduler, loader, steps, config.max_grad_norm
    )
    result = TrainResult(
        str(out_dir), steps, len(examples), tokens, 0.0, losses, processes=accelerator.num_processes
    )
    result.seconds = time.perf_counter() - started
    _save(accelerator, model, tokenizer, out_dir, config, result, key)
    return result


def _train_loop(
    accelerator, model, optimizer, scheduler, loader, steps: int, max_grad_norm: float | None
) -> tuple[list[float], int]:
    """Run `steps` optimizer steps; returns the mean loss of each step (over processes) and tokens seen."""
    model.train()
    losses: list[float] = []
    step_loss = torch.zeros((), device=accelerator.device)
    micro = tokens = 0
    for batch in _batches(loader):
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients and max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        step_loss += loss.detach()
        micro += 1
        tokens += int(batch["attention_mask"].sum())
        if accelerator.sync_gradients:
            scheduler.step()
            losses.append(float(accelerator.reduce(step_loss / micro, reduction="mean")))
            step_loss.zero_()
            micro = 0
            if len(losses) >= steps:
                break
    return losses, tokens * accelerator.num_processes


def _save(
    accelerator, model, tokenizer, out_dir: Path, config: StudentConfig, result: TrainResult, key: str
) -> None:
    """save_pretrained into a temp dir on the main process, then move it into place."""
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)  # gathers FSDP shards; every process must call it
    if accelerator.is_main_process:
        out_dir = Path(out_dir)
        tmp = out_dir.with_name(out_dir.name + ".tmp")
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        if config.finetune == "lora" and config.merge_adapter:
            merged = unwrapped.merge_and_unload()
            merged.save_pretrained(tmp / "merged")
            tokenizer.save_pretrained(tmp / "merged")
        atomic_write_text(tmp / LOG_FILE, json.dumps(asdict(result), indent=1))
        atomic_write_text(tmp / FINGERPRINT_FILE, json.dumps({"key": key}))
        replace_dir(tmp, out_dir)
    accelerator.wait_for_everyone()


def read_pairs(path: Path) -> list[SFTPair]:
    """{"prompt", "response"} JSONL rows as pairs."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [SFTPair(row["prompt"], row["response"]) for row in rows]


def main(
    base: Path = typer.Option(..., help="Checkpoint to start from (local path)."),
    data: Path = typer.Option(..., help="JSONL of {prompt, response} pairs."),
    out: Path = typer.Option(..., help="Directory to save the fine-tuned checkpoint in."),
    config: Path = typer.Option(..., help="StudentConfig as JSON."),
    seed: int = typer.Option(0, help="Seed of shuffling and initialisation."),
    key: str = typer.Option("", help="Identity recorded in the checkpoint (cache key)."),
) -> None:
    """Entry point for `accelerate launch` / `torchrun`: one fine-tune, result JSON on stdout."""
    student = StudentConfig.model_validate_json(config.read_text(encoding="utf-8"))
    result = finetune(base, read_pairs(data), out, student, seed=seed, key=key)
    if PartialState().is_main_process:
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    typer.run(main)
