"""lion_core/student/checkpoint.py: what a checkpoint is keyed by."""

from __future__ import annotations

from pathlib import Path

from lion_core.config import StudentConfig
from lion_core.student.checkpoint import training_key


def test_where_progress_is_shown_is_not_part_of_the_training_key(tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text('{"prompt": "Q: a\\nA: ", "response": "a"}\n')
    base = StudentConfig()
    watched_elsewhere = StudentConfig(report_to="wandb", log_every_steps=1)
    assert training_key(tmp_path, data, base, 0) == training_key(tmp_path, data, watched_elsewhere, 0)
    assert training_key(tmp_path, data, base, 0) != training_key(tmp_path, data, StudentConfig(epochs=1), 0)
