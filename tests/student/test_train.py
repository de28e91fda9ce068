"""lion_core/student/train.py (TRL's SFTTrainer) on the world's tiny student (CPU): learning, determinism,
epochs, LoRA, DDP; the lion and chat prompt styles train on exactly the prompt the student answers
after; precision, gradient checkpointing and attention are honoured; every optimizer step reaches a
callback, a per-step log, log lines and the experiment trackers of `student.report_to`; a stop ends
the fine-tune at the next step and saves nothing."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from random import Random
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from lion_core import prompts
from lion_core.config import LoraSettings, StudentConfig
from lion_core.interrupt import STOP, Interrupted
from lion_core.student import callbacks, checks
from lion_core.student.checkpoint import (
    FINGERPRINT_FILE,
    base_of,
    is_adapter,
    load_for_inference,
    load_tokenizer,
)
from lion_core.student.data import SFTPair, prompt_ids
from lion_core.student.generate import answer
from lion_core.student.train import (
    LOG_FILE,
    StepRecord,
    TrainResult,
    finetune,
    progress_path,
    resolve_trackers,
)
from lion_core.world.families import sample_tasks
from tests.support.configs import (
    ACCUMULATION,
    BATCH,
    PEAK_LR,
    STEPS,
    STYLE,
    greedy_student,
    length_pairs,
    tiny_pairs,
    watched_student,
)
from tests.support.fakes import LogLines


def exact_match(checkpoint: Path, tasks, config: StudentConfig) -> float:
    outputs = answer(checkpoint, [prompts.student_prompt(STYLE, t.instruction) for t in tasks], config)
    return sum(o == t.answer for o, t in zip(outputs, tasks)) / len(tasks)


def test_short_finetune_learns_an_easy_family(tiny_student_path: Path, tmp_path: Path) -> None:
    train = sample_tasks(600, Random(0), ["length"], levels=(1,))
    heldout = sample_tasks(100, Random(99), ["length"], levels=(1,))
    config = greedy_student(tiny_student_path)
    before = exact_match(tiny_student_path, heldout, config)
    result = finetune(tiny_student_path, tiny_pairs(train), tmp_path / "ft", config, seed=0, key="k1")
    after = exact_match(tmp_path / "ft", heldout, config)
    print(f"exact match on held-out 'length' items: untrained {before:.2f}, after 150 steps {after:.2f}")
    assert before <= 0.1
    assert after >= 0.5
    assert result.steps == len(result.losses) == 150
    assert result.losses[-1] < 0.5 * result.losses[0]
    assert json.loads((tmp_path / "ft" / FINGERPRINT_FILE).read_text())["key"] == "k1"
    assert json.loads((tmp_path / "ft" / LOG_FILE).read_text())["steps"] == 150


def test_training_is_deterministic_with_a_seed(tiny_student_path: Path, tmp_path: Path) -> None:
    pairs = tiny_pairs(sample_tasks(64, Random(1), ["copy"], levels=(1,)))
    config = greedy_student(tiny_student_path, max_steps=5)
    first = finetune(tiny_student_path, pairs, tmp_path / "a", config, seed=3)
    second = finetune(tiny_student_path, pairs, tmp_path / "b", config, seed=3)
    assert first.losses == second.losses


def test_epochs_with_gradient_accumulation_see_every_batch_of_every_epoch(
    tiny_student_path: Path, tmp_path: Path
) -> None:
    pairs = tiny_pairs(sample_tasks(10, Random(2), ["copy"], levels=(1,)))
    settings = dict(max_steps=None, train_batch_size=1, gradient_accumulation_steps=4)
    one, three = (
        finetune(
            tiny_student_path,
            pairs,
            tmp_path / f"e{n}",
            greedy_student(tiny_student_path, epochs=n, **settings),
            seed=0,
        )
        for n in (1, 3)
    )
    assert (one.steps, three.steps) == (3, 9)  # 10 batches in steps of 4, 4 and 2, per epoch
    assert three.tokens == 3 * one.tokens


def test_lora_saves_an_adapter_merges_on_request_and_continues(
    tiny_student_path: Path, tmp_path: Path
) -> None:
    pairs = tiny_pairs(sample_tasks(64, Random(2), ["length"], levels=(1,)))
    lora = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    config = greedy_student(tiny_student_path, finetune="lora", lora=lora, merge_adapter=True, max_steps=4)
    finetune(tiny_student_path, pairs, tmp_path / "it1", config, seed=0)
    assert is_adapter(tmp_path / "it1")
    assert (tmp_path / "it1" / "merged" / "config.json").exists()
    assert not (tmp_path / "it1" / "model.safetensors").exists()  # only the adapter weights
    # the next iteration continues the same adapter rather than stacking a new one
    second = finetune(tmp_path / "it1", pairs, tmp_path / "it2", config, seed=0)
    assert is_adapter(tmp_path / "it2") and second.steps == 4
    assert base_of(tmp_path / "it2") == base_of(tmp_path / "it1") == tiny_student_path
    first_weights, second_weights = (
        load_file(tmp_path / it / "adapter_model.safetensors") for it in ("it1", "it2")
    )
    assert first_weights.keys() == second_weights.keys()  # the same adapter, no second one on top
    assert any(not torch.equal(first_weights[k], second_weights[k]) for k in first_weights)  # trained on
    # the adapter and the merged weights saved beside it are the same model, and not the base model
    text = prompts.student_prompt(STYLE, sample_tasks(1, Random(3), ["length"], levels=(1,))[0].instruction)
    ids = load_tokenizer(tiny_student_path)(text, return_tensors="pt").input_ids

    def logits(path: Path) -> torch.Tensor:
        with torch.no_grad():
            return load_for_inference(path)(ids).logits

    adapted = logits(tmp_path / "it2")
    assert torch.allclose(logits(tmp_path / "it2" / "merged"), adapted, atol=1e-5)
    assert not torch.allclose(logits(tiny_student_path), adapted, atol=1e-5)


class Seen(TrainerCallback):
    """What the trainer trains: its prepared rows (input_ids, labels) and its model."""

    def on_train_begin(self, args, state, control, train_dataloader=None, model=None, **kwargs: Any) -> None:
        self.rows = list(train_dataloader.dataset)
        self.model = model
        self.trainable = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
        self.frozen = {n: p.dtype for n, p in model.named_parameters() if not p.requires_grad}


TINY_LORA = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])


@pytest.mark.parametrize("mode", ["full", "lora"])
@pytest.mark.parametrize("style", ["lion", "chat"])
def test_each_style_trains_on_exactly_the_prompt_the_student_answers_after(
    style: str, mode: str, tiny_student_path: Path, tmp_path: Path
) -> None:
    """lion (text, TRL adds EOS) and chat (the checkpoint's chat template, which closes the turn with
    EOS): the prompt's tokens are those `prompt_ids` gives at answering, masked; every answer token and
    the EOS are learned. Full and LoRA both train and answer."""
    tasks = sample_tasks(16, Random(4), ["length"], levels=(1,))
    pairs = [SFTPair(prompts.student_prompt(style, t.instruction), t.answer) for t in tasks]
    config = greedy_student(
        tiny_student_path,
        prompt_template=style,
        finetune=mode,
        lora=TINY_LORA,
        max_steps=2,
        max_length=128,
        max_new_tokens=4,
        report_to="none",
    )
    seen = Seen()
    result = finetune(tiny_student_path, pairs, tmp_path / "ft", config, seed=0, callbacks=[seen])
    tokenizer = load_tokenizer(tiny_student_path)
    assert len(seen.rows) == len(pairs)
    for pair, row in zip(pairs, seen.rows):
        head = prompt_ids(tokenizer, pair.prompt, style)
        assert row["input_ids"][: len(head)] == head
        assert set(row["labels"][: len(head)]) == {-100}
        tail = row["input_ids"][len(head) :]
        assert row["labels"][len(head) :] == tail
        assert tail[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(tail, skip_special_tokens=True) == pair.response
    assert result.steps == 2 and is_adapter(tmp_path / "ft") == (mode == "lora")
    assert seen.model.config._attn_implementation == "sdpa"  # auto on CPU
    assert not seen.model.is_activation_checkpointing  # off by default
    outputs = answer(tmp_path / "ft", [p.prompt for p in pairs[:4]], config)
    assert len(outputs) == 4 and all(isinstance(o, str) for o in outputs)


def test_precision_gradient_checkpointing_and_attention_are_honoured(
    tiny_student_path: Path, tmp_path: Path
) -> None:
    """bf16: a full fine-tune keeps fp32 master weights (mixed precision) and saves bf16 weights; with
    master_weights: precision it trains in bf16; a LoRA base is loaded frozen in bf16 under fp32 adapters."""
    pairs = length_pairs(8)
    settings = dict(precision="bf16", max_steps=1, report_to="none")
    full, pure, lora = Seen(), Seen(), Seen()
    finetune(
        tiny_student_path,
        pairs,
        tmp_path / "full",
        greedy_student(tiny_student_path, gradient_checkpointing=True, attention="eager", **settings),
        seed=0,
        callbacks=[full],
    )
    assert full.model.is_activation_checkpointing and full.model.config._attn_implementation == "eager"
    assert set(full.trainable.values()) == {torch.float32}
    assert {t.dtype for t in load_file(tmp_path / "full" / "model.safetensors").values()} == {torch.bfloat16}
    assert json.loads((tmp_path / "full" / "config.json").read_text())["dtype"] == "bfloat16"
    assert load_for_inference(tmp_path / "full", "bf16").dtype == torch.bfloat16
    finetune(
        tiny_student_path,
        pairs,
        tmp_path / "pure",
        greedy_student(tiny_student_path, master_weights="precision", **settings),
        seed=0,
        callbacks=[pure],
    )
    assert set(pure.trainable.values()) == {torch.bfloat16}
    finetune(
        tiny_student_path,
        pairs,
        tmp_path / "lora",
        greedy_student(tiny_student_path, finetune="lora", lora=TINY_LORA, **settings),
        seed=0,
        callbacks=[lora],
    )
    assert set(lora.frozen.values()) == {torch.bfloat16} and set(lora.trainable.values()) == {torch.float32}


@pytest.mark.slow
def test_training_runs_as_two_processes_on_cpu(tiny_student_path: Path, tmp_path: Path) -> None:
    tasks = sample_tasks(600, Random(0), ["length"], levels=(1,))
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": p.prompt, "response": p.response}) + "\n" for p in tiny_pairs(tasks))
    )
    config = greedy_student(tiny_student_path, max_steps=60)
    (tmp_path / "student.json").write_text(config.model_dump_json())
    single = finetune(tiny_student_path, tiny_pairs(tasks), tmp_path / "single", config, seed=0)
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    command = [
        torchrun,
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "lion_core.student.train",
        "--base",
        str(tiny_student_path),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "ddp"),
        "--config",
        str(tmp_path / "student.json"),
        "--seed",
        "0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    ddp = json.loads(run.stdout.strip().splitlines()[-1])
    assert ddp["processes"] == 2
    assert ddp["steps"] == 60
    assert ddp["losses"][-1] < 0.5 * ddp["losses"][0]
    assert single.losses[-1] < 0.5 * single.losses[0]
    assert abs(ddp["losses"][-1] - single.losses[-1]) < 0.5 * single.losses[0]
    assert (tmp_path / "ddp" / "model.safetensors").exists()


@pytest.fixture
def stop_flag() -> Iterator[None]:
    STOP.clear()
    yield
    STOP.clear()


def test_a_stop_ends_the_fine_tune_at_the_next_step_and_saves_nothing(
    tmp_path: Path, tiny_student_path: Path, stop_flag: None
) -> None:
    pairs = [SFTPair(f"### Instruction:\nReverse {w}\n\n### Response:\n", w[::-1]) for w in ("abc", "xyz")]
    config = StudentConfig(model_path=tiny_student_path, max_steps=500, train_batch_size=1)
    out = tmp_path / "student"
    steps: list[int] = []

    def on_step(record) -> None:  # Ctrl-C arrives while step 3 is reported
        steps.append(record.step)
        if record.step == 3:
            STOP.set()

    with pytest.raises(Interrupted):
        finetune(tiny_student_path, pairs, out, config, seed=0, on_step=on_step)
    assert steps == [1, 2, 3]  # not one micro-batch more
    assert not out.exists() and not out.with_name("student.tmp").exists()  # no checkpoint, not even half
    assert len(progress_path(out).read_text().splitlines()) == 3


LOGGED = [1, 3, 6, 8]  # every 3 steps, and the first and the last of 8
# linear schedule, 2 warm-up steps (0.25 of 8): 0, 1/2 of the peak, the peak, then down by 1/6 a step
LINEAR_LRS = [PEAK_LR * f for f in (0, 1 / 2, 1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6)]


class FakeTracker(TrainerCallback):
    """What a tracker of `report_to` sees (transformers' integrations are trainer callbacks: TensorBoard,
    MLflow, W&B): the settings when training begins, each log, the end."""

    def __init__(self) -> None:
        self.started = self.finished = False
        self.settings: dict[str, Any] = {}
        self.logged: list[tuple[int, dict[str, float]]] = []

    def on_train_begin(self, args, state, control, **kwargs: Any) -> None:
        self.started = True
        self.settings = {"learning_rate": args.learning_rate, "max_steps": state.max_steps}

    def on_log(self, args, state, control, logs=None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.logged.append((state.global_step, dict(logs)))

    def on_train_end(self, args, state, control, **kwargs: Any) -> None:
        self.finished = True


class Watched:
    """One fine-tune of 8 steps, watched through every channel."""

    def __init__(self, base: Path, out: Path) -> None:
        self.out = out
        self.records: list[StepRecord] = []
        self.tracker = FakeTracker()
        self.lines = LogLines()
        logger = logging.getLogger(callbacks.__name__)
        level = logger.level
        logger.addHandler(self.lines)
        logger.setLevel(logging.INFO)
        try:
            self.result: TrainResult = finetune(
                base,
                length_pairs(BATCH * ACCUMULATION * STEPS),
                out,
                watched_student(base),
                seed=0,
                on_step=self.records.append,
                callbacks=[self.tracker],
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


def test_the_trackers_get_the_settings_and_every_step(watched: Watched) -> None:
    tracker = watched.tracker
    assert tracker.started and tracker.finished
    assert tracker.settings == {"learning_rate": PEAK_LR, "max_steps": STEPS}
    assert [step for step, _ in tracker.logged] == list(range(1, STEPS + 1))
    for step, values in tracker.logged:
        record = watched.records[step - 1]
        assert values["loss"] == record.loss
        assert values["learning_rate"] == record.learning_rate
        assert values["grad_norm"] > 0


def test_report_to_resolves_to_installed_trackers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "get_available_reporting_integrations", lambda: [])
    assert resolve_trackers(["auto"]) == [] and resolve_trackers(["none"]) == []  # nothing installed
    with pytest.raises(ValueError, match="wandb, mlflow, not installed here: pip install wandb mlflow"):
        resolve_trackers(["wandb", "mlflow"])
    monkeypatch.setattr(checks, "get_available_reporting_integrations", lambda: ["tensorboard", "mlflow"])
    assert resolve_trackers(["auto"]) == ["tensorboard"]
    assert resolve_trackers(["mlflow"]) == ["mlflow"]  # a named tracker replaces the default
    assert resolve_trackers(["auto", "mlflow"]) == ["tensorboard", "mlflow"]
    assert resolve_trackers(["all"]) == ["mlflow", "tensorboard"]
    assert resolve_trackers(["none", "mlflow"]) == []  # none wins


def test_an_uninstalled_tracker_fails_before_anything_is_trained_or_written(
    tiny_student_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checks, "get_available_reporting_integrations", lambda: [])
    out = tmp_path / "iter_1" / "student"
    with pytest.raises(ValueError, match="pip install wandb"):
        finetune(
            tiny_student_path,
            length_pairs(8),
            out,
            watched_student(tiny_student_path, report_to="wandb"),
            seed=0,
        )
    assert not (tmp_path / "iter_1").exists()


def test_the_default_without_tensorboard_writes_no_tracker_files(
    tiny_student_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checks, "get_available_reporting_integrations", lambda: [])
    out = tmp_path / "iter_1" / "student"
    settings = watched_student(
        tiny_student_path, report_to="auto", max_steps=2, gradient_accumulation_steps=1
    )
    result = finetune(tiny_student_path, length_pairs(8), out, settings, seed=0)
    assert result.steps == 2
    assert sorted(p.name for p in (tmp_path / "iter_1").iterdir()) == ["student", "student.progress.jsonl"]


def test_report_to_tensorboard_writes_event_files(tiny_student_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is optional (pip install tensorboard)")
    out = tmp_path / "iter_1" / "student"
    settings = watched_student(
        tiny_student_path, report_to="tensorboard", max_steps=2, gradient_accumulation_steps=1
    )
    finetune(tiny_student_path, length_pairs(8), out, settings, seed=0)
    events = list((tmp_path / "iter_1" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
