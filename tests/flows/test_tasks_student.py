"""Pools by reference (issue 15, item 3): the student's answers travel as run-directory files. The task
is keyed by the questions file's content, its result is the answers file's hash, and an answers file
that went missing or changed is answered again instead of being trusted from the cache."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from lion_core.config import LionConfig
from lion_core.records import Instruction, Response, read_jsonl, write_jsonl
from tasks.student import answers_step


def test_student_answers_go_file_to_file_and_a_lost_or_changed_file_is_answered_again(
    tiny_student_path: Path, tmp_path: Path
) -> None:
    config = LionConfig(
        student={
            "model_path": tiny_student_path,
            "prompt_template": "compact",
            "max_new_tokens": 6,
            "do_sample": False,
        }
    )
    questions, answers = tmp_path / "questions.jsonl", tmp_path / "answers.jsonl"
    write_jsonl(questions, [Instruction(id=f"q{i}", instruction=f"Reverse {w}") for i, w in enumerate("abc")])

    @flow(result_storage=tmp_path / "results")
    def answer() -> list[Response]:
        return answers_step(config, tiny_student_path, questions, answers)

    first = answer()
    assert [r.id for r in first] == ["q0", "q1", "q2"] and read_jsonl(answers, Response) == first
    written = answers.stat().st_mtime_ns
    assert answer() == first and answers.stat().st_mtime_ns == written  # cached: not answered again

    answers.unlink()  # the file the cached result names is gone
    assert answer() == first and answers.exists()
    write_jsonl(answers, first[:1])  # ... or no longer what the task wrote
    assert answer() == first

    write_jsonl(questions, [Instruction(id="n0", instruction="Reverse xyz")])  # new content: a new key
    assert [r.id for r in answer()] == ["n0"]
