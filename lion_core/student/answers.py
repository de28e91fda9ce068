"""The student's batched answers to instructions, from a questions file to an answers file (whole pools
travel as run-directory files)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lion_core.config import StudentConfig
from lion_core.records import Instruction, Response, read_jsonl, write_jsonl
from lion_core.student.data import student_prompts
from lion_core.student.generate import answer


def answer_file(
    student: StudentConfig,
    checkpoint: Path,
    questions: Path,
    answers: Path,
    seed: int,
    send_inputs: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[Response]:
    """The student's answers to the instructions in `questions`, written to `answers`;
    `on_batch(done, total)` follows the batches."""
    items = read_jsonl(questions, Instruction)
    follow = None if on_batch is None else lambda done: on_batch(done, len(items))
    out = student_answers(student, checkpoint, items, seed, follow, send_inputs)
    write_jsonl(answers, out)
    return out


def student_answers(
    student: StudentConfig,
    checkpoint: Path,
    items: list[Instruction],
    seed: int,
    on_batch: Callable[[int], None] | None = None,
    send_inputs: bool = True,
) -> list[Response]:
    """The student's batched answers to instructions (`seed` matters when sampling; `send_inputs`:
    config `loop.send_inputs`)."""
    texts = student_prompts(student.prompt_template, items, send_inputs=send_inputs)
    outputs = answer(checkpoint, texts, student, seed=seed, on_batch=on_batch, keys=[i.id for i in items])
    model = f"student:{Path(checkpoint).parent.name}"
    return [
        Response(id=i.id, instruction=i.instruction, input=i.input, output=o, model=model)
        for i, o in zip(items, outputs)
    ]
