"""Imitation: fine-tune the student on (instruction, teacher response) pairs with TRL's SFTTrainer.

The same code runs on one CPU, one GPU or many processes (DDP, FSDP, DeepSpeed ZeRO-3 through the same
`accelerate launch` configs). Run as:

    python -m lion_core.student.train --base CKPT --data pairs.jsonl --out OUT --config student.json
    accelerate launch --config_file deployments/accelerate/fsdp.yaml -m lion_core.student.train ...

`pairs.jsonl` holds {"prompt", "response"} rows; `student.json` a StudentConfig. The pairs become TRL's
prompt/completion rows (conversational ones for `prompt_template: chat`, rendered with the checkpoint's
chat template), and the loss is on the completion only. Training continues from `--base` (the previous
iteration's checkpoint, as Lion does) and saves with save_pretrained into OUT atomically, in the dtype
of `precision` (an adapter for LoRA/QLoRA, plus merged weights when `merge_adapter` is set).

Progress: every optimizer step is appended to OUT.progress.jsonl beside the checkpoint (a `StepRecord`
per line: step, loss, learning rate, examples/s) and passed to an `on_step` callback; every
`log_every_steps` it is also a log line. The trackers of `report_to` get every step. The callbacks are
in lion_core/student/callbacks.py.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import typer
from accelerate import PartialState
from datasets import Dataset
from datasets.utils.logging import disable_progress_bar
from transformers import PrinterCallback, TrainerCallback
from transformers import ProgressCallback as TqdmCallback
from trl import SFTConfig, SFTTrainer

from lion_core.config import ConfigError, StudentConfig
from lion_core.interrupt import check as check_stop
from lion_core.records import atomic_write_text, writing
from lion_core.student.callbacks import (
    PROGRESS_SUFFIX,
    ProgressCallback,
    StepCallback,
    StepRecord,
    StopCallback,
    format_step,
    is_logged,
    progress_path,
)
from lion_core.student.checkpoint import (
    DTYPES,
    FINGERPRINT_FILE,
    load_for_inference,
    load_for_training,
    load_tokenizer,
    new_adapter,
    replace_dir,
)
from lion_core.student.checks import check_student, require_chat_template, resolve_trackers
from lion_core.student.data import SFTPair, sft_rows

__all__ = [  # the per-step vocabulary lives in callbacks.py; importing it from here keeps working
    "LOG_FILE",
    "PROGRESS_SUFFIX",
    "StepCallback",
    "StepRecord",
    "TrainResult",
    "finetune",
    "format_step",
    "is_logged",
    "progress_path",
    "read_pairs",
    "resolve_trackers",
]

LOG_FILE = "train_log.json"
TRACKER_PROJECT = "lion"  # the project (W&B, Trackio) / experiment (MLflow) of the trackers
TENSORBOARD_DIR = "tensorboard"  # TensorBoard logs go to OUT/../tensorboard (RUN/iter_K/tensorboard)
PROJECT_VARIABLES = ("WANDB_PROJECT", "MLFLOW_EXPERIMENT_NAME")  # set to TRACKER_PROJECT unless set
disable_progress_bar()  # TRL prepares the rows with datasets' map: no progress bars on the console
SFT_FIELDS = frozenset(f.name for f in fields(SFTConfig))
# transformers renamed gradient checkpointing to activation checkpointing (the old name warns, then goes)
CHECKPOINTING = (
    "activation_checkpointing" if "activation_checkpointing" in SFT_FIELDS else "gradient_checkpointing"
)


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


def run_name(out_dir: Path) -> str:
    """The trackers' run name: `RUN/iter_K` for a checkpoint RUN/iter_K/student."""
    out_dir = Path(out_dir).resolve()
    return f"{out_dir.parent.parent.name}/{out_dir.parent.name}"


@contextmanager
def tracker_environment(out_dir: Path) -> Iterator[None]:
    """While training: TensorBoard logs into OUT/../tensorboard, W&B and MLflow use the project 'lion'
    unless their own variables name another (restored afterwards)."""
    values = {"TENSORBOARD_LOGGING_DIR": str(Path(out_dir).resolve().parent / TENSORBOARD_DIR)}
    values |= {name: TRACKER_PROJECT for name in PROJECT_VARIABLES if name not in os.environ}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def sft_config(
    config: StudentConfig, seed: int, out_dir: Path, scratch: Path, trackers: list[str]
) -> SFTConfig:
    """TRL's settings for the student's settings. Made before the model is loaded: it starts the process
    group (FSDP's and ZeRO-3's loading need it). Every step is logged (the progress callback reads the
    steps' logs); nothing is saved by the trainer (this module saves the checkpoint)."""
    return SFTConfig(
        output_dir=str(scratch),
        per_device_train_batch_size=config.train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a value < 1 is a share of the steps (rounded up)
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm or 0.0,
        bf16=config.precision == "bf16",
        fp16=config.precision == "fp16",
        **{
            CHECKPOINTING: config.gradient_checkpointing,
            f"{CHECKPOINTING}_kwargs": {"use_reentrant": False} if config.gradient_checkpointing else None,
        },
        max_length=config.max_length,
        completion_only_loss=True,
        packing=False,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to=trackers or "none",
        run_name=run_name(out_dir),
        **(
            {"project": TRACKER_PROJECT} if "project" in SFT_FIELDS else {}
        ),  # Trackio's (recent transformers)
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
    )


def quiet(trainer: SFTTrainer) -> SFTTrainer:
    """No progress bars or printed log dicts: the progress callback logs the steps."""
    for callback in (PrinterCallback, TqdmCallback):
        trainer.remove_callback(callback)
    return trainer


def finetune(
    base: Path,
    pairs: list[SFTPair],
    out_dir: Path,
    config: StudentConfig,
    *,
    seed: int,
    key: str = "",
    on_step: StepCallback | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Fine-tune `base` on `pairs` and save to `out_dir`; `key` is recorded as the checkpoint's identity.
    `on_step` sees every optimizer step (main process); `report_to` names the trackers; `callbacks` are
    more trainer callbacks. What cannot run here (QLoRA or FSDP without a GPU, ...) is refused in one
    line before anything is loaded or written; a stop (Ctrl-C) saves nothing."""
    started = time.perf_counter()
    check_student(config)
    if not pairs:
        raise ValueError("no training pairs: nothing to fine-tune on")
    trackers = resolve_trackers(config.report_to)
    tokenizer = load_tokenizer(base)
    if config.prompt_template == "chat":
        require_chat_template(tokenizer, base)
    progress = ProgressCallback(on_step, progress_path(out_dir), config.log_every_steps)
    stop = StopCallback("fine-tune")
    with tracker_environment(out_dir), tempfile.TemporaryDirectory(prefix="lion-trainer-") as scratch:
        args = sft_config(config, seed, out_dir, Path(scratch), trackers)
        check_stop("fine-tune")
        trainer = quiet(
            SFTTrainer(
                model=load_for_training(base, config),
                args=args,
                train_dataset=Dataset.from_list(sft_rows(pairs, config.prompt_template)),
                processing_class=tokenizer,
                peft_config=new_adapter(base, config),
                callbacks=[progress, stop, *callbacks],
            )
        )
        examples = len(trainer.train_dataset)
        if not examples:
            raise ValueError(f"no training example fits student.max_length={config.max_length}")
        trainer.train()
    check_stop("fine-tune")  # Ctrl-C: the trainer stopped early; nothing is saved
    processes = trainer.args.world_size
    result = TrainResult(str(out_dir), trainer.state.global_step, examples, progress.tokens, 0.0)
    result.losses, result.processes = progress.losses, processes
    result.seconds = time.perf_counter() - started
    save(trainer, tokenizer, Path(out_dir), config, result, key)
    return result


def gathered_state_dict(trainer: SFTTrainer) -> dict[str, torch.Tensor]:
    """The whole model's weights, gathered from FSDP shards or ZeRO-3 partitions: every process must
    call it (a collective); the main process gets the weights."""
    trainer.accelerator.wait_for_everyone()
    return trainer.accelerator.get_state_dict(trainer.model_wrapped)


def save(
    trainer: SFTTrainer, tokenizer, out_dir: Path, config: StudentConfig, result: TrainResult, key: str
) -> None:
    """Every process gathers the weights; the main process writes them (in the dtype of `precision`) into
    a temporary folder, merges an adapter from the files it wrote when `merge_adapter` is set (no
    collective, so it cannot hang under FSDP), and moves the folder into place. A save that fails (a full
    disk) leaves no temporary folder behind and raises StateWriteError naming the checkpoint."""
    state_dict = gathered_state_dict(trainer)
    accelerator = trainer.accelerator
    if accelerator.is_main_process:
        tmp = out_dir.with_name(out_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # what a killed save left
        try:
            with writing(out_dir):
                write_files(accelerator.unwrap_model(trainer.model), state_dict, tokenizer, tmp, config)
                atomic_write_text(tmp / LOG_FILE, json.dumps(asdict(result), indent=1))
                atomic_write_text(tmp / FINGERPRINT_FILE, json.dumps({"key": key}))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # no half-saved checkpoint takes the disk
            raise
        replace_dir(tmp, out_dir)
    accelerator.wait_for_everyone()


def cast(state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating-point weights in `dtype`; tensors that were one (tied embeddings) stay one, so that
    save_pretrained still writes them once."""
    casts: dict[tuple, torch.Tensor] = {}
    out = {}
    for name, tensor in state_dict.items():
        if not tensor.is_floating_point():
            out[name] = tensor
            continue
        same = (tensor.data_ptr(), tuple(tensor.shape), tensor.stride())
        if same not in casts:
            casts[same] = tensor.to(dtype)
        out[name] = casts[same]
    return out


def write_weights(
    model, state_dict: dict[str, torch.Tensor], folder: Path, dtype: torch.dtype | None
) -> None:
    """save_pretrained with the gathered weights, floating-point ones cast to `dtype` (None: as they are,
    e.g. a LoRA adapter's fp32 weights); config.json records the dtype written."""
    if dtype is None:
        model.save_pretrained(folder, state_dict=state_dict)
        return
    model.save_pretrained(folder, state_dict=cast(state_dict, dtype))
    config = folder / "config.json"
    saved = json.loads(config.read_text(encoding="utf-8"))
    saved["dtype"] = str(dtype).removeprefix("torch.")
    atomic_write_text(config, json.dumps(saved, indent=2, sort_keys=True) + "\n")


def write_files(
    model, state_dict: dict[str, torch.Tensor], tokenizer, tmp: Path, config: StudentConfig
) -> None:
    """The weights (a LoRA adapter as it is, a full model in the dtype of `precision`), the tokenizer, and
    the merged model of an adapter when `merge_adapter` is set, into `tmp`."""
    adapter = config.finetune in ("lora", "qlora")
    write_weights(model, state_dict, tmp, None if adapter else DTYPES[config.precision])
    tokenizer.save_pretrained(tmp)
    if adapter and config.merge_adapter:
        merged = load_for_inference(tmp, config.precision)
        merged.save_pretrained(tmp / "merged")
        tokenizer.save_pretrained(tmp / "merged")


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
    """Entry point for `accelerate launch` / `torchrun`: one fine-tune, result JSON on stdout; what cannot
    run here is one line on stderr (exit code 2)."""
    student = StudentConfig.model_validate_json(config.read_text(encoding="utf-8"))
    try:
        result = finetune(base, read_pairs(data), out, student, seed=seed, key=key)
    except ConfigError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    if PartialState().is_main_process:
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    typer.run(main)
