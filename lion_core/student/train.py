"""Imitation: fine-tune the student on (instruction, teacher response) through Accelerate.

The same code runs on one CPU, one GPU or many processes. Run as:

    python -m lion_core.student.train --base CKPT --data pairs.jsonl --out OUT --config student.json
    accelerate launch --multi_gpu --num_processes 2 -m lion_core.student.train ...   # or torchrun

`pairs.jsonl` holds {"prompt", "response"} rows; `student.json` a StudentConfig. Training continues
from `--base` (the previous iteration's checkpoint, as Lion does) and saves with save_pretrained
into OUT atomically (an adapter for LoRA, plus merged weights when `merge_adapter` is set).

Progress: every optimizer step is appended to OUT.progress.jsonl beside the checkpoint (a `StepRecord`
per line: step, loss, learning rate, examples/s) and passed to an `on_step` callback; every
`log_every_steps` it is also a log line and a record for the experiment trackers of `report_to`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
import typer
from accelerate import Accelerator, PartialState
from accelerate.tracking import get_available_trackers
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import get_scheduler

from lion_core.config import StudentConfig
from lion_core.interrupt import check as check_stop
from lion_core.records import atomic_write_text, writing
from lion_core.student.checkpoint import FINGERPRINT_FILE, load_for_training, load_tokenizer, replace_dir
from lion_core.student.data import SFTPair, build_examples, collate

PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
LOG_FILE = "train_log.json"
PROGRESS_SUFFIX = ".progress.jsonl"  # OUT.progress.jsonl: the per-step log, beside the checkpoint
TRACKER_PROJECT = "lion"  # the project (W&B) / experiment (MLflow) / folder (TensorBoard) of the trackers
TENSORBOARD_DIR = "tensorboard"  # TensorBoard logs go to OUT/../tensorboard (RUN/iter_K/tensorboard)
logger = logging.getLogger(__name__)


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
    seconds: float  # since the first step began


StepCallback = Callable[[StepRecord], None]


def progress_path(out_dir: Path) -> Path:
    """The per-step log of a fine-tune into `out_dir` (beside it: the checkpoint folder is replaced
    when it is saved)."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + PROGRESS_SUFFIX)


def is_logged(step: int, steps: int, every: int) -> bool:
    """Whether a step is logged and reported: every `every` steps, and the first and the last."""
    return step % every == 0 or step in (1, steps)


def format_step(record: StepRecord) -> str:
    """What a step's log line says: `step 10/256: loss 1.2345, lr 2.000e-05, 812.3 examples/s`."""
    return (
        f"step {record.step}/{record.steps}: loss {record.loss:.4f}, "
        f"lr {record.learning_rate:.3e}, {record.examples_per_s:.1f} examples/s"
    )


def resolve_trackers(report_to: Sequence[str]) -> list[str]:
    """Accelerate tracker names for `student.report_to`: none wins; auto is TensorBoard when installed;
    all is every tracker installed; a tracker named but not installed is an error (before training)."""
    available = sorted(str(t) for t in get_available_trackers())
    if "none" in report_to:
        return []
    if "all" in report_to:
        return available
    named = [name for name in dict.fromkeys(report_to) if name != "auto"]
    missing = [name for name in named if name not in available]
    if missing:
        packages = " ".join(name.replace("_", "-") for name in missing)
        raise ValueError(
            f"student.report_to names {', '.join(missing)}, not installed here: "
            f"pip install {packages}, or leave it out of report_to"
        )
    if "auto" in report_to and "tensorboard" in available and "tensorboard" not in named:
        named.insert(0, "tensorboard")
    return named


def make_accelerator(
    config: StudentConfig, trackers: Sequence[Any] = (), logging_dir: Path | None = None
) -> Accelerator:
    """CPU when no GPU is present (also under torchrun/accelerate launch: gloo, one process each);
    `trackers` (Accelerate names or trackers) log into `logging_dir` when they keep local files."""
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=PRECISION[config.precision],
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=list(trackers) or None,
        project_dir=logging_dir,
    )


def tracker_settings(out_dir: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    """Where trackers with local files log (OUT/../tensorboard), and the run name the others get:
    `RUN/iter_K` for a checkpoint RUN/iter_K/student."""
    out_dir = Path(out_dir).resolve()
    run_name = f"{out_dir.parent.parent.name}/{out_dir.parent.name}"
    return out_dir.parent / TENSORBOARD_DIR, {"wandb": {"name": run_name}, "mlflow": {"run_name": run_name}}


def tracked_hparams(config: StudentConfig, seed: int, examples: int, steps: int) -> dict[str, Any]:
    """The fine-tune's settings as flat scalars (what every tracker, TensorBoard's hparams too, takes)."""
    values = {**config.model_dump(mode="json"), "seed": seed, "examples": examples, "steps": steps}
    return {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v) for k, v in values.items()}


class StepReporter:
    """What happens after each optimizer step: a line in the progress log and the `on_step` callback
    (every step, on the main process), a log line and the trackers' record (every `every` steps)."""

    def __init__(
        self, accelerator: Accelerator, steps: int, every: int, path: Path, on_step: StepCallback | None
    ):
        self.accelerator, self.steps, self.every, self.on_step = accelerator, steps, every, on_step
        self.examples = 0
        self.started = time.perf_counter()
        self.file: TextIO | None = None
        self.path = path
        if accelerator.is_main_process:
            with writing(path):
                path.parent.mkdir(parents=True, exist_ok=True)
                self.file = path.open("w", encoding="utf-8")

    def __call__(self, step: int, loss: float, learning_rate: float, examples: int) -> None:
        self.examples += examples * self.accelerator.num_processes
        seconds = time.perf_counter() - self.started
        rate = self.examples / seconds if seconds > 0 else 0.0
        record = StepRecord(step, self.steps, loss, learning_rate, self.examples, rate, seconds)
        logged = is_logged(step, self.steps, self.every)
        if logged:
            self.accelerator.log(
                {
                    "train/loss": loss,
                    "train/learning_rate": learning_rate,
                    "train/examples_per_second": record.examples_per_s,
                },
                step=step,
            )
        if self.file is None:
            return
        with writing(self.path):
            self.file.write(json.dumps(asdict(record)) + "\n")
            self.file.flush()
        if logged:
            logger.info(f"fine-tune {format_step(record)}")
        if self.on_step is not None:
            self.on_step(record)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@contextmanager
def reporting(
    accelerator: Accelerator,
    config: StudentConfig,
    out_dir: Path,
    steps: int,
    on_step: StepCallback | None,
    hparams: dict[str, Any],
) -> Iterator[StepReporter]:
    """A StepReporter for a fine-tune into `out_dir`, with the accelerator's trackers started (and ended,
    however training ends)."""
    _, init_kwargs = tracker_settings(out_dir)
    accelerator.init_trackers(TRACKER_PROJECT, config=hparams, init_kwargs=init_kwargs)
    reporter = StepReporter(accelerator, steps, config.log_every_steps, progress_path(out_dir), on_step)
    try:
        yield reporter
    finally:
        reporter.close()
        # Not accelerator.end_training(): it also destroys the process group, which saving still needs.
        for tracker in accelerator.trackers:
            tracker.finish()
        accelerator.trackers.clear()


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
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Fine-tune `base` on `pairs` and save to `out_dir`; `key` is recorded as the checkpoint's identity.
    `on_step` sees every optimizer step (main process); `report_to` names the trackers."""
    started = time.perf_counter()
    if accelerator is None:
        logging_dir, _ = tracker_settings(out_dir)
        accelerator = make_accelerator(config, resolve_trackers(config.report_to), logging_dir)
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
    hparams = tracked_hparams(config, seed, len(examples), steps)
    with reporting(accelerator, config, out_dir, steps, on_step, hparams) as report:
        losses, tokens = _train_loop(
            accelerator, model, optimizer, scheduler, loader, steps, config.max_grad_norm, report
        )
    result = TrainResult(
        str(out_dir), steps, len(examples), tokens, 0.0, losses, processes=accelerator.num_processes
    )
    result.seconds = time.perf_counter() - started
    _save(accelerator, model, tokenizer, out_dir, config, result, key)
    return result


def _train_loop(
    accelerator,
    model,
    optimizer,
    scheduler,
    loader,
    steps: int,
    max_grad_norm: float | None,
    report: Callable[[int, float, float, int], None] | None = None,
) -> tuple[list[float], int]:
    """Run `steps` optimizer steps; returns the mean loss of each step (over processes) and tokens seen.
    `report(step, loss, learning rate, examples of this process)` follows each optimizer step."""
    model.train()
    losses: list[float] = []
    step_loss = torch.zeros((), device=accelerator.device)
    micro = tokens = examples = 0
    for batch in _batches(loader):
        check_stop("fine-tune")  # Ctrl-C: stop before the next micro-batch, saving nothing
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
        examples += int(batch["attention_mask"].shape[0])
        if accelerator.sync_gradients:
            learning_rate = float(optimizer.param_groups[0]["lr"])  # the rate this step was taken at
            scheduler.step()
            losses.append(float(accelerator.reduce(step_loss / micro, reduction="mean")))
            if report is not None:
                report(len(losses), losses[-1], learning_rate, examples)
            step_loss.zero_()
            micro = examples = 0
            if len(losses) >= steps:
                break
    return losses, tokens * accelerator.num_processes


def _save(
    accelerator, model, tokenizer, out_dir: Path, config: StudentConfig, result: TrainResult, key: str
) -> None:
    """save_pretrained into a temp dir on the main process, then move it into place. A save that fails
    (a full disk) leaves no temp dir behind and raises StateWriteError naming the checkpoint."""
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)  # gathers FSDP shards; every process must call it
    if accelerator.is_main_process:
        out_dir = Path(out_dir)
        tmp = out_dir.with_name(out_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # what a killed save left
        try:
            with writing(out_dir):
                _save_files(accelerator.unwrap_model(model), state_dict, tokenizer, tmp, config)
                atomic_write_text(tmp / LOG_FILE, json.dumps(asdict(result), indent=1))
                atomic_write_text(tmp / FINGERPRINT_FILE, json.dumps({"key": key}))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # no half-saved checkpoint takes the disk
            raise
        replace_dir(tmp, out_dir)
    accelerator.wait_for_everyone()


def _save_files(unwrapped, state_dict, tokenizer, tmp: Path, config: StudentConfig) -> None:
    """The weights and tokenizer (and the merged model of a LoRA adapter, when asked) into `tmp`."""
    unwrapped.save_pretrained(tmp, state_dict=state_dict)
    tokenizer.save_pretrained(tmp)
    if config.finetune == "lora" and config.merge_adapter:
        merged = unwrapped.merge_and_unload()
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
    """Entry point for `accelerate launch` / `torchrun`: one fine-tune, result JSON on stdout."""
    student = StudentConfig.model_validate_json(config.read_text(encoding="utf-8"))
    result = finetune(base, read_pairs(data), out, student, seed=seed, key=key)
    if PartialState().is_main_process:
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    typer.run(main)
