"""What the method does to the world, as injected callables: the seam between the one body of the
method (lion_core.method.loop) and whoever runs it — the Prefect flow passes cached, retried tasks
(flows/iteration.py), plain Python passes direct calls (lion_core.method.direct)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lion_core.api.ledger import Ledger
from lion_core.chat import ChatClient
from lion_core.method.generation import Ask
from lion_core.records import Instruction, Judgement, Response
from lion_core.student.launch import FinetuneJob
from lion_core.student.train import TrainResult

JudgeItem = tuple[str, str, str, str]  # (id, instruction text, teacher answer, student answer)


@dataclass(frozen=True)
class Effects:
    """What the method does to the world, injected: the flow passes Prefect tasks, plain Python calls.

    `student(checkpoint, questions, answers)` answers the instructions of the JSONL file `questions`
    into the JSONL file `answers` and returns them: whole pools travel as files of the run directory.
    `step(name, fn, *args)` runs a pure step (selection, pool update) — a named task in the flow; the
    whole-pool steps take run-directory paths and read their pools from its files.
    `heldout(checkpoint)` scores a student on a held-out set (None: no held-out evaluation).
    `score(checkpoint, answered, out)` is the checkpoint's loss on each teacher answer of the JSONL file
    `answered`, written to `out` (selections that decide on the student's own loss).
    `prefer(job)` runs the preference stage (student.objective: sft+dpo).
    `usage()` is the API usage of the current iteration, for its summary.
    """

    teacher: Callable[[list[Instruction]], Awaitable[list[Response]]]
    finetune: Callable[[FinetuneJob], TrainResult]
    student: Callable[[Path, Path, Path], list[Response]]
    judge: Callable[[list[JudgeItem]], Awaitable[list[Judgement]]]
    generator: Ask
    step: Callable[..., Any]
    heldout: Callable[[Path], dict[str, Any]] | None = None
    usage: Callable[[], dict[str, Any]] = dict
    score: Callable[[Path, Path, Path], dict[str, float]] | None = None
    prefer: Callable[[FinetuneJob], TrainResult] | None = None


@dataclass(frozen=True)
class Roles:
    """The three roles the proprietary LLM plays (often one endpoint, three clients)."""

    teacher: ChatClient
    referee: ChatClient
    generator: ChatClient
    ledger: Ledger | None = None
