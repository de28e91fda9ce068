"""lion_core/student/checkpoint.py: what a checkpoint is keyed by, and how it is loaded for training."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lion_core.config import StudentConfig
from lion_core.student.checkpoint import attention_implementation, load_for_training, training_key


def keyed_files(tmp_path: Path) -> tuple[Path, Path]:
    """A base checkpoint known by its recorded key, and one training pair."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "lion_fingerprint.json").write_text(json.dumps({"key": "base"}))
    data = tmp_path / "sft.jsonl"
    data.write_text('{"prompt": "Q: a\\nA: ", "response": "a"}\n')
    return base, data


def test_where_progress_is_shown_is_not_part_of_the_training_key(tmp_path: Path) -> None:
    base, data = keyed_files(tmp_path)
    default = StudentConfig()
    watched_elsewhere = StudentConfig(report_to="wandb", log_every_steps=1)
    assert training_key(base, data, default, 0) == training_key(base, data, watched_elsewhere, 0)
    assert training_key(base, data, default, 0) != training_key(base, data, StudentConfig(epochs=1), 0)


def test_how_a_fine_tune_computes_is_not_part_of_its_key_what_it_learns_is(tmp_path: Path) -> None:
    """Gradient checkpointing or another attention kernel after running out of memory: the finished
    rounds are not trained again. Pure bf16 or a QLoRA quantization is another fine-tune."""
    base, data = keyed_files(tmp_path)
    key = training_key(base, data, StudentConfig(precision="bf16"), 0)
    assert key == training_key(base, data, StudentConfig(precision="bf16", gradient_checkpointing=True), 0)
    assert key == training_key(base, data, StudentConfig(precision="bf16", attention="eager"), 0)
    assert key != training_key(base, data, StudentConfig(precision="bf16", master_weights="precision"), 0)
    qlora = StudentConfig(finetune="qlora")
    assert training_key(base, data, qlora, 0) != training_key(
        base, data, StudentConfig(finetune="qlora", qlora={"quant_type": "fp4"}), 0
    )


def test_an_existing_runs_fine_tunes_keep_their_keys(tmp_path: Path) -> None:
    """The keys main (3dfb72c, the hand-written Accelerate loop) gave: a run started before the move to
    TRL resumes without training its finished rounds again."""
    base, data = keyed_files(tmp_path)
    assert training_key(base, data, StudentConfig(), 0) == (
        "0d6273220024ac9f3bead7aff88f05f9061f5e1b28f76fd15907888be3b96958"
    )
    lora = StudentConfig(finetune="lora", precision="bf16", num_processes=8)
    assert training_key(base, data, lora, 42) == (
        "061774e802d1929b27c3e8bbf347fa8a17a1d17826020a8bc336c24660399faa"
    )


def test_a_model_is_loaded_for_training_in_the_settings_dtype_and_attention(tiny_student_path: Path) -> None:
    full = load_for_training(tiny_student_path, StudentConfig(precision="bf16"))
    assert full.dtype == torch.float32  # fp32 master weights under bf16 mixed precision
    pure = load_for_training(tiny_student_path, StudentConfig(precision="bf16", master_weights="precision"))
    assert pure.dtype == torch.bfloat16
    lora = load_for_training(tiny_student_path, StudentConfig(finetune="lora", precision="bf16"))
    assert lora.dtype == torch.bfloat16  # the frozen base; the trainer adds fp32 adapters
    eager = load_for_training(tiny_student_path, StudentConfig(attention="eager"))
    assert eager.config._attn_implementation == "eager"
    assert attention_implementation(StudentConfig(precision="bf16")) == "sdpa"  # no flash-attn on CPU
