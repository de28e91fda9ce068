"""The preference stage of an iteration (student.objective: sft+dpo): after the imitation fine-tune and
discrimination, DPO on the iteration's preference pairs, the fine-tuned checkpoint as the reference; the
next iteration continues from its result. The paper has no such stage: it is off by default.

Pairs: with a referee, the iteration's judged pairs (RUN/iter_K/pairs.jsonl; the hard ones, or all with
a positive gap); without one (selection uniform or progress), self pairs: the student answers its Train
Pool and the teacher's answer is preferred wherever they differ (SPIN, arXiv 2401.01335). At most
`max_pairs`, a seeded sample. The prompts are written in the student's own format (RUN/iter_K/dpo.jsonl).
"""

from __future__ import annotations

import shutil
from random import Random

from lion_core import prompts
from lion_core.config import LionConfig
from lion_core.method.effects import Effects
from lion_core.method.pairs import self_pairs
from lion_core.method.pools import answers_for
from lion_core.method.summary import Discrimination
from lion_core.records import Instruction, PreferencePair, read_jsonl, write_jsonl
from lion_core.run.rundir import IterationDir
from lion_core.student.checkpoint import content_key, fingerprint, training_key
from lion_core.student.launch import FinetuneJob
from lion_core.student.train import TrainResult


def stage_pairs(
    fx: Effects, config: LionConfig, folder: IterationDir, k: int, judged: Discrimination
) -> list[PreferencePair]:
    """The pairs the stage trains on (see the module docstring); self pairs are written to pairs.jsonl."""
    settings = config.student.preference
    if judged.judgements:
        pairs = read_jsonl(folder.pairs, PreferencePair)
        pairs = [p for p in pairs if settings.pairs == "all" or p.label == "hard"]
    else:
        train_pool = read_jsonl(folder.file("train_pool"), Instruction)
        answers = fx.student(folder.student, folder.file("train_pool"), folder.self_answers)
        pairs = self_pairs(train_pool, answers_for(train_pool, judged.teacher), answers, k)
        write_jsonl(folder.pairs, pairs)
    if settings.max_pairs is not None and len(pairs) > settings.max_pairs:
        chosen = set(
            Random(f"{config.loop.seed}:preference:{k}").sample(range(len(pairs)), settings.max_pairs)
        )
        pairs = [p for n, p in enumerate(pairs) if n in chosen]
    return pairs


def training_rows(
    config: LionConfig, pairs: list[PreferencePair], pool: list[Instruction]
) -> list[dict[str, str]]:
    """{prompt in the student's format, chosen, rejected} per pair (the prompt as imitation trains it)."""
    by_id = {item.id: item for item in pool}
    style = config.student.prompt_template
    return [
        {
            "prompt": prompts.student_prompt(style, by_id[p.id].instruction, by_id[p.id].input),
            "chosen": p.chosen,
            "rejected": p.rejected,
        }
        for p in pairs
    ]


def preference_stage(
    fx: Effects,
    config: LionConfig,
    folder: IterationDir,
    k: int,
    pool: list[Instruction],
    judged: Discrimination,
) -> tuple[int, TrainResult | None]:
    """(pairs trained on, the stage's result) — (0, None) when the objective has no preference stage or
    no pair was found; a stale preferred checkpoint of an earlier configuration is removed then."""
    if config.student.objective != "sft+dpo" or fx.prefer is None:
        shutil.rmtree(folder.preferred, ignore_errors=True)
        return 0, None
    pairs = stage_pairs(fx, config, folder, k, judged)
    if not pairs:
        shutil.rmtree(folder.preferred, ignore_errors=True)
        return 0, None
    write_jsonl(folder.dpo, training_rows(config, pairs, pool))
    student = config.student
    key = content_key(
        training_key(folder.student, folder.dpo, student, config.loop.seed),
        fingerprint(folder.student),
        student.preference.model_dump(mode="json"),
    )
    job = FinetuneJob(folder.student, folder.dpo, folder.preferred, student, config.loop.seed, key)
    return len(pairs), fx.prefer(job)
