"""What each iteration asks its judges: the Cache Pool items the referee judges (all of them, or
`referee.sample`'s sample), the requests it is sent, and the student's own loss on the teacher's answers
for the selections that read it instead of a referee."""

from __future__ import annotations

import json
from pathlib import Path

from lion_core.config import LionConfig
from lion_core.method import referee, sampling
from lion_core.method.effects import Effects, JudgeItem
from lion_core.records import Instruction, Response
from lion_core.run.rundir import IterationDir, RunDir
from lion_core.student.score import read_losses


def judged_items(config: LionConfig, run: RunDir, k: int, pool: list[Instruction]) -> list[Instruction]:
    """What the referee judges in iteration k: the whole Cache Pool, or `referee.sample`'s sample of it
    (sized by the hard share the previous iteration estimated)."""
    sample = config.referee.sample
    if sample is None:
        return pool
    previous = run.iteration(k - 1).summary
    share = json.loads(previous.read_text(encoding="utf-8"))["hard_share"] if k > 1 else None
    chosen = sampling.plan(pool, k, config.loop, sample, share)
    return sampling.draw(pool, chosen, config.loop.seed, k)


def judge_items(
    config: LionConfig, items: list[Instruction], teacher: list[Response], student: list[Response]
) -> list[JudgeItem]:
    """(id, the instruction as the referee sees it, teacher answer, student answer) per item."""
    shown = [referee.judged_text(i, send_inputs=config.loop.send_inputs) for i in items]
    return [(i.id, text, t.output, s.output) for i, text, t, s in zip(items, shown, teacher, student)]


def score_losses(fx: Effects, config: LionConfig, folder: IterationDir, base: Path) -> None:
    """The student's loss on every Cache Pool teacher answer before and after the iteration's fine-tune
    (its base checkpoint, then its student): what `progress` decides on."""
    if fx.score is None:
        raise ValueError(f"selection {config.loop.selection!r} needs the student's losses: no score effect")
    fx.score(base, folder.file("teacher"), folder.losses_before)
    fx.score(folder.student, folder.file("teacher"), folder.losses_after)


def recorded_losses(folder: IterationDir) -> dict[str, tuple[float, float]]:
    """id → (loss before, loss after) the iteration's fine-tune, from its files."""
    before, after = read_losses(folder.losses_before), read_losses(folder.losses_after)
    return {i: (before[i], after[i]) for i in after if i in before}
