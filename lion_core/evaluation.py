"""Evaluation: the paper's judge protocol, and exact match on a held-out world set.

Judge protocol (Lion §4, after Vicuna): a judge model scores the candidate's and the reference's
answers 1–10 on each question, in both orders; the relative score is sum(candidate) / sum(reference)
in percent, over the scorable questions, overall and per category. The judge's request and reply are
the referee's (`lion_core.referee`): the reference takes the teacher's slot, the candidate the student's.

World: exact match of a student on a held-out world set, per family and level; the oracle teacher
scores 100% by construction.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lion_core import prompts, referee
from lion_core.config import LionConfig, StudentConfig
from lion_core.llm import ChatClient
from lion_core.records import (
    Instruction,
    Judgement,
    RecordError,
    Response,
    atomic_write_text,
    read_instructions,
)
from lion_core.student.generate import answer
from lion_core.world.families import Task

WORLD_FIELDS = ("instruction", "output", "family", "difficulty")
UNCATEGORIZED = "uncategorized"
JUDGE_TAU = 0.0  # the hard/easy label is meaningless in evaluation; only the scores are used
PERCENT = 100.0


@dataclass(frozen=True)
class RelativeScore:
    """Candidate vs reference under a judge: 100 × sum(candidate) / sum(reference), scorable items only."""

    overall: float
    per_category: dict[str, float]
    questions: int
    unscorable: int
    candidate_total: float
    reference_total: float
    per_category_questions: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _ratio(candidate: float, reference: float) -> float:
    return PERCENT * candidate / reference if reference else 0.0


def relative_score(judgements: Sequence[Judgement], categories: Mapping[str, str | None]) -> RelativeScore:
    """The paper's relative score from two-order judgements (reference in the teacher's slot)."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    counts: dict[str, int] = defaultdict(int)
    scorable = [j for j in judgements if j.student_score is not None and j.teacher_score is not None]
    for j in scorable:
        category = categories.get(j.id) or UNCATEGORIZED
        sums[category][0] += j.student_score  # type: ignore[operator]
        sums[category][1] += j.teacher_score  # type: ignore[operator]
        counts[category] += 1
    candidate = sum(s[0] for s in sums.values())
    reference = sum(s[1] for s in sums.values())
    return RelativeScore(
        overall=_ratio(candidate, reference),
        per_category={c: _ratio(*sums[c]) for c in sorted(sums)},
        questions=len(judgements),
        unscorable=len(judgements) - len(scorable),
        candidate_total=candidate,
        reference_total=reference,
        per_category_questions=dict(sorted(counts.items())),
    )


async def judge_answers(
    judge: ChatClient,
    questions: Sequence[Instruction],
    candidate: Sequence[Response],
    reference: Sequence[Response],
    *,
    retries: int,
    on_done: Callable[[int], None] | None = None,
) -> list[Judgement]:
    """Two-order judgements of candidate vs reference answers (the paper's GPT-4 protocol)."""
    items = [(q.id, q.text, r.output, c.output) for q, c, r in zip(questions, candidate, reference)]
    return await referee.judge_all(judge, items, tau=JUDGE_TAU, retries=retries, on_done=on_done)


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
    texts = [prompts.student_prompt(config.prompt_template, t.instruction) for t in tasks]
    return score_world(tasks, answer(checkpoint, texts, config))


def check_inputs(
    config: LionConfig, candidate: str, questions: str | None, world: int, harness: str | None
) -> None:
    """Raise ValueError (one line) for an evaluation that cannot run, before any work starts."""
    if not (questions or world or harness):
        raise ValueError(
            "nothing to evaluate: give --questions (or evaluation.questions), --world, --harness"
        )
    is_checkpoint = Path(candidate).is_dir()
    if not is_checkpoint and not candidate.startswith(("http://", "https://")):
        raise ValueError(
            f"--candidate {candidate!r} is neither a checkpoint directory nor an http(s) endpoint"
        )
    if questions and config.evaluation.judge is None:
        raise ValueError(
            "evaluation.judge is not set in the config: the judge protocol needs a judge endpoint"
        )
    heldout = config.evaluation.heldout_path
    if world and heldout is not None and not Path(heldout).is_file():
        raise ValueError(f"evaluation.heldout_path: {heldout}: no such file")
    if harness and not is_checkpoint:
        raise ValueError("--harness runs on a local checkpoint, not on an endpoint")
    if questions:
        read_instructions(Path(questions))  # a RecordError (a ValueError) names file, line and field
