"""The preference stage (lion_core.student.preference): DPO through TRL on the tiny student, from its
fine-tuned checkpoint, full and LoRA; progress per step, a key that makes it resumable, Ctrl-C."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lion_core import prompts
from lion_core.interrupt import STOP, Interrupted
from lion_core.student.data import SFTPair
from lion_core.student.launch import FinetuneJob
from lion_core.student.preference import prefer
from lion_core.student.score import answer_losses
from lion_core.student.train import StepRecord, finetune, progress_path
from tests.support.configs import STYLE, tiny_student

LETTERS = "cdefghijklmnopqrstu"


def rows() -> list[dict[str, str]]:
    """The teacher's reversal preferred to the student's copy."""
    return [
        {"prompt": prompts.student_prompt(STYLE, f"Reverse ab{c}"), "chosen": f"{c}ba", "rejected": f"ab{c}"}
        for c in LETTERS
    ]


def job(tmp_path: Path, base: Path, name: str, **preference) -> FinetuneJob:
    data = tmp_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    settings = {"learning_rate": 3e-3, "max_steps": 6, "train_batch_size": 4, "beta": 0.1, **preference}
    student = tiny_student(base, preference=settings, finetune="lora" if "lora" in name else "full")
    return FinetuneJob(base, data, tmp_path / name, student, seed=0, key=f"key-{name}")


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_dpo_moves_the_fine_tuned_student_toward_the_chosen_answers(
    tiny_student_path: Path, tmp_path: Path, kind: str
) -> None:
    sft = tmp_path / f"sft-{kind}"
    config = tiny_student(tiny_student_path, max_steps=4, finetune=kind)
    finetune(tiny_student_path, sft_pairs(), sft, config, seed=0)
    stage = job(tmp_path, sft, f"preferred-{kind}")
    seen: list[StepRecord] = []
    result = prefer(stage, on_step=seen.append)
    assert result.steps == 6 and [r.step for r in seen] == list(range(1, 7))
    assert result.losses == [r.loss for r in seen] and result.losses[-1] < result.losses[0]
    logged = [json.loads(line) for line in progress_path(stage.out).read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3, 4, 5, 6]
    assert (stage.out / "adapter_config.json").exists() == (kind == "lora")
    before, after = losses(sft, stage), losses(stage.out, stage)
    assert after[1] - after[0] > before[1] - before[0]  # the chosen answers gained on the rejected ones
    assert prefer(stage) == result  # trained under its key: reused, not trained again


def test_ctrl_c_stops_the_stage_between_steps_and_saves_nothing(
    tiny_student_path: Path, tmp_path: Path
) -> None:
    sft = shutil.copytree(tiny_student_path, tmp_path / "sft")
    stage = job(tmp_path, sft, "stopped")

    def stop(record: StepRecord) -> None:
        if record.step == 2:
            STOP.set()

    try:
        with pytest.raises(Interrupted):
            prefer(stage, on_step=stop)
    finally:
        STOP.clear()
    assert not stage.out.exists()


def sft_pairs() -> list[SFTPair]:
    """The imitation data the stage starts from: the chosen answers."""
    return [SFTPair(r["prompt"], r["chosen"]) for r in rows()]


def losses(checkpoint: Path, stage: FinetuneJob) -> list[float]:
    """Mean loss of the chosen answers under a checkpoint (first), then of the rejected ones."""
    data = rows()
    config = stage.student
    chosen = answer_losses(checkpoint, [SFTPair(r["prompt"], r["chosen"]) for r in data], config)
    rejected = answer_losses(checkpoint, [SFTPair(r["prompt"], r["rejected"]) for r in data], config)
    return [sum(chosen) / len(chosen), sum(rejected) / len(rejected)]
