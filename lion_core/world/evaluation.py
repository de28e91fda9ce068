"""Exact match of a student on a held-out set of the offline world, per family and level.

The world's oracle teacher scores 100% by construction; a student is scored on the same tasks. The
held-out set is a JSONL file `{instruction, input, output, family, difficulty}` (what
`lion world sample` prints and `lion demo` writes).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lion_core import prompts
from lion_core.config import StudentConfig
from lion_core.records import RecordError, atomic_write_text
from lion_core.world.families import Task

WORLD_FIELDS = ("instruction", "output", "family", "difficulty")


@dataclass(frozen=True)
class WorldScore:
    """Exact-match accuracy overall, per family, per level and per family@level."""

    n: int
    accuracy: float
    per_family: dict[str, float]
    per_level: dict[str, float]
    per_family_level: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def write_world_set(path: Path, tasks: Sequence[Task]) -> None:
    """A held-out set as JSONL {instruction, input, output, family, difficulty} (`lion world sample`)."""
    rows = [
        {
            "instruction": t.instruction,
            "input": "",
            "output": t.answer,
            "family": t.family,
            "difficulty": t.level,
        }
        for t in tasks
    ]
    atomic_write_text(Path(path), "".join(json.dumps(r) + "\n" for r in rows))


def read_world_set(path: Path) -> list[Task]:
    """Read a held-out set written by `write_world_set` or `lion world sample`."""
    tasks = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise RecordError(f"{path}:{number}: invalid JSON: {err.msg}") from None
        missing = [f for f in WORLD_FIELDS if f not in row]
        if missing:
            raise RecordError(f"{path}:{number}: field '{missing[0]}': missing")
        tasks.append(Task(row["instruction"], str(row["output"]), row["family"], int(row["difficulty"])))
    if not tasks:
        raise RecordError(f"{path}: empty file (no records)")
    return tasks


def _means(groups: dict[str, list[bool]]) -> dict[str, float]:
    return {key: sum(v) / len(v) for key, v in sorted(groups.items())}


def score_world(tasks: Sequence[Task], outputs: Sequence[str]) -> WorldScore:
    """Exact match of outputs (stripped) against the tasks' answers."""
    if len(tasks) != len(outputs):
        raise ValueError(f"{len(tasks)} tasks but {len(outputs)} outputs")
    family, level, both = defaultdict(list), defaultdict(list), defaultdict(list)
    hits = []
    for task, output in zip(tasks, outputs):
        hit = output.strip() == task.answer
        hits.append(hit)
        family[task.family].append(hit)
        level[f"L{task.level}"].append(hit)
        both[f"{task.family}@L{task.level}"].append(hit)
    accuracy = sum(hits) / len(hits) if hits else 0.0
    return WorldScore(len(hits), accuracy, _means(family), _means(level), _means(both))


def evaluate_on_world(checkpoint: Path, tasks: Sequence[Task], config: StudentConfig) -> WorldScore:
    """A student checkpoint's exact match on a world set (batched inference, greedy per config)."""
    from lion_core.student.generate import answer  # torch: only when a checkpoint is evaluated

    texts = [prompts.student_prompt(config.prompt_template, t.instruction) for t in tasks]
    return score_world(tasks, answer(checkpoint, texts, config))
