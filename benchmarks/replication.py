"""Run as: make replication   (or .venv/bin/python benchmarks/replication.py [--seeds 3] [--smoke])

The miniature replication of Lion's claim on the offline world: at an equal budget, does the
adversarial loop make a better student than one-way imitation? Three arms share everything but how
the new instructions of each round are chosen:

- lion:       the referee splits the Cache Pool into hard and easy (gap ≥ tau); the generator makes new
              instructions from hard parents (same family and level) and easy ones (same family, harder);
- imitation:  new instructions drawn uniformly from the seed distribution (families × base/harder level),
              the Alpaca/Vicuna-style one-way baseline;
- no-referee: the same generator, fed with parents sampled from the Cache Pool without discrimination
              (half hard prompts, half easy prompts), isolating what the referee adds.

Equal budget: the same initial pool (per seed), the same number of new teacher-answered instructions
per round, the same optimizer steps per round, the same seeds. Every new instruction passes the same
filters (post-filters, ROUGE-L < 0.7 novelty, and exact decontamination against the test set).
Held-out test: a fixed set, uniform over families and over the base (1) and harder (2) level, the
same for every arm and seed. Both training modes run: the new Train Pool only, and cumulative.
Writes benchmarks/results/replication.json and replication.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from random import Random
from typing import Any

from common import RESULTS, machine

from lion_core import teacher
from lion_core.config import LionConfig, LoopConfig, StudentConfig
from lion_core.evaluation import score_world
from lion_core.generation import asker, generate
from lion_core.loop import Roles, discriminate
from lion_core.novelty import NoveltyIndex
from lion_core.records import Instruction, Response, atomic_write_text
from lion_core.student.data import sft_pairs, student_prompts
from lion_core.student.generate import answer
from lion_core.student.train import finetune
from lion_core.world.client import WorldChatClient
from lion_core.world.families import Task, families, sample_tasks
from lion_core.world.roles import RoleSettings
from lion_core.world.student import TinyStudentSpec, build_tiny_student

ARMS = ("lion", "imitation", "no-referee")
MODES = ("cumulative", "train_pool")
LEVELS = (1, 2)
TEST_SEED = 12345


@dataclass(frozen=True)
class Settings:
    """Sizes of one run (calibrated so that the full benchmark takes ≤ 20 minutes on 2 cores)."""

    initial: int = 1000
    new: int = 500
    rounds: int = 3
    first_steps: int = 700
    steps: int = 250
    test_per_cell: int = 20
    batch_size: int = 32
    learning_rate: float = 3e-3
    families: tuple[str, ...] | None = None  # None: every registered family
    max_level: int | None = None  # cap of the generator's levels (None: the families' top level, 3)


SMOKE = Settings(initial=54, new=18, rounds=1, first_steps=8, steps=4, test_per_cell=2)


def test_set(settings: Settings) -> list[Task]:
    """The fixed held-out set: test_per_cell tasks for every family × level."""
    rng = Random(TEST_SEED)
    return [
        t
        for f in families(settings.families)
        for level in LEVELS
        for t in sample_tasks(settings.test_per_cell, rng, [f.name], [level])
    ]


def run_config(settings: Settings, mode: str, seed: int) -> LionConfig:
    student = StudentConfig(
        finetune="full",
        train_data=mode,
        prompt_template="compact",
        learning_rate=settings.learning_rate,
        max_steps=settings.first_steps,
        train_batch_size=settings.batch_size,
        gradient_accumulation_steps=1,
        max_length=96,
        infer_batch_size=256,
        max_new_tokens=24,
    )
    loop = LoopConfig(new_per_iteration=settings.new, min_words=1, seed=seed, generation_rounds=6)
    return LionConfig(student=student, loop=loop)


def accuracy(checkpoint: Path, tests: list[Task], config: LionConfig) -> dict[str, Any]:
    texts = student_prompts(
        "compact", [Instruction(id=str(i), instruction=t.instruction) for i, t in enumerate(tests)]
    )
    return score_world(tests, answer(checkpoint, texts, config.student)).to_dict()


def clean(items: list[Instruction], banned: set[str]) -> list[Instruction]:
    """Exact decontamination: drop new instructions that are test items."""
    return [i for i in items if i.instruction.lower() not in banned]


async def propose(
    arm: str,
    roles: Roles,
    config: LionConfig,
    pool: list[Instruction],
    answers: list[Response],
    checkpoint: Path,
    round_no: int,
    banned: set[str],
    families: tuple[str, ...] | None,
) -> tuple[list[Instruction], dict[str, Any]]:
    """The round's new instructions for an arm, and the discrimination statistics of the Cache Pool."""
    judged = await discriminate(roles, config, pool, answers, checkpoint)
    stats = {"hard_share": judged.split.hard_share, "mean_gap": judged.split.stats["mean_gap"]}
    index = NoveltyIndex(config.loop.rouge_threshold, texts=[i.text for i in pool])
    rng = Random(f"{config.loop.seed}:{arm}:{round_no}")
    n = config.loop.new_per_iteration
    if arm == "imitation":
        candidates = [
            Instruction(
                id=f"r{round_no}-{k:05d}", instruction=t.instruction, origin="easy", iteration=round_no
            )
            for k, t in enumerate(sample_tasks(3 * n, rng, families, LEVELS))
        ]
        candidates = clean(candidates, banned)
        kept = [c for c, keep in zip(candidates, index.filter([c.text for c in candidates]).kept) if keep]
        return kept[:n], stats
    if arm == "lion":
        hard, easy = judged.split.hard, judged.split.easy
    else:  # no-referee: the same generator on parents chosen without the referee
        parents = list(pool)
        rng.shuffle(parents)
        hard, easy = parents[: len(parents) // 2], parents[len(parents) // 2 :]
    loop = config.loop
    result = await generate(
        asker(roles.generator),
        hard,
        easy,
        index,
        n=n,
        ratio=loop.hard_easy_ratio,
        min_words=loop.min_words,
        rounds=loop.generation_rounds,
        iteration=round_no,
        seed=loop.seed,
    )
    return clean(result.kept, banned), stats


def run_arm(job: tuple[str, str, int, Settings, str]) -> dict[str, Any]:
    """One arm × training mode × seed: initial training, then `rounds` of propose → teach → train."""
    import torch

    torch.set_num_threads(1)
    arm, mode, seed, settings, workdir = job
    started = time.perf_counter()
    work = Path(workdir) / f"{arm}-{mode}-{seed}"
    config = run_config(settings, mode, seed)
    tests = test_set(settings)
    banned = {t.instruction.lower() for t in tests}
    world = RoleSettings(max_level=settings.max_level)
    roles = Roles(*(WorldChatClient(role, world, seed) for role in ("teacher", "referee", "generator")))
    seed_tasks = [
        t
        for t in sample_tasks(settings.initial + len(tests), Random(seed), settings.families, LEVELS)
        if t.instruction.lower() not in banned
    ][: settings.initial]
    pool = [Instruction(id=f"seed-{k:05d}", instruction=t.instruction) for k, t in enumerate(seed_tasks)]
    answers = asyncio.run(teacher.answer_all(roles.teacher, pool))
    checkpoint = build_tiny_student(work / "base", TinyStudentSpec(seed=seed))
    checkpoint = Path(
        finetune(
            checkpoint, sft_pairs("compact", answers), work / "round0", config.student, seed=seed
        ).checkpoint
    )
    curve, discrimination, new_levels = [accuracy(checkpoint, tests, config)["accuracy"]], [], []
    for round_no in range(1, settings.rounds + 1):
        new, stats = asyncio.run(
            propose(arm, roles, config, pool, answers, checkpoint, round_no, banned, settings.families)
        )
        discrimination.append(stats)
        new_answers = asyncio.run(teacher.answer_all(roles.teacher, new))
        pool, answers = pool + new, answers + new_answers
        data = answers if mode == "cumulative" else new_answers
        student = config.student.model_copy(update={"max_steps": settings.steps})
        checkpoint = Path(
            finetune(
                checkpoint,
                sft_pairs("compact", data),
                work / f"round{round_no}",
                student,
                seed=seed + round_no,
            ).checkpoint
        )
        new_levels.append(_level_counts(new))
        curve.append(accuracy(checkpoint, tests, config)["accuracy"])
    final = accuracy(checkpoint, tests, config)
    return {
        "arm": arm,
        "mode": mode,
        "seed": seed,
        "final": final,
        "curve": curve,
        "discrimination": discrimination,
        "new_levels": new_levels,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _level_counts(items: list[Instruction]) -> dict[str, int]:
    from lion_core.world.families import level_of

    counts: dict[str, int] = {}
    for item in items:
        key = f"L{level_of(item.instruction)}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def mean_std(values: list[float]) -> str:
    """'mean ± std' in percent (std 0 with one seed)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def summarize(runs: list[dict[str, Any]]) -> str:
    """Markdown tables: per mode, each arm's held-out accuracy overall, per level, per family."""
    lines = []
    for mode in MODES:
        chosen = [r for r in runs if r["mode"] == mode]
        if not chosen:
            continue
        fams = sorted(chosen[0]["final"]["per_family"])
        lines += [
            f"\n### Training data: {mode}\n",
            "| arm | overall | L1 (base) | L2 (harder) | hard share per round | new L1/L2/L3 per round |",
            "|---|---|---|---|---|---|",
        ]
        for arm in ARMS:
            rs = [r for r in chosen if r["arm"] == arm]
            if not rs:
                continue
            shares = " / ".join(
                f"{100 * statistics.mean(r['discrimination'][i]['hard_share'] for r in rs):.0f}%"
                for i in range(len(rs[0]["discrimination"]))
            )
            levels = " · ".join(
                "/".join(
                    str(round(statistics.mean(r["new_levels"][i].get(f"L{lv}", 0) for r in rs)))
                    for lv in (1, 2, 3)
                )
                for i in range(len(rs[0]["new_levels"]))
            )
            lines.append(
                f"| {arm} | {mean_std([r['final']['accuracy'] for r in rs])} | "
                f"{mean_std([r['final']['per_level']['L1'] for r in rs])} | "
                f"{mean_std([r['final']['per_level']['L2'] for r in rs])} | {shares} | {levels} |"
            )
        lines += ["", "| arm | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
        for arm in ARMS:
            rs = [r for r in chosen if r["arm"] == arm]
            if rs:
                lines.append(
                    f"| {arm} | "
                    + " | ".join(mean_std([r["final"]["per_family"][f] for r in rs]) for f in fams)
                    + " |"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="The miniature replication of Lion on the offline world.")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--processes", type=int, default=2, help="runs in parallel (one CPU thread each)")
    parser.add_argument("--smoke", action="store_true", help="a seconds-long run that checks the machinery")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where <name>.json and <name>.md go")
    parser.add_argument("--name", default="replication", help="file name of the results")
    parser.add_argument("--arms", default=",".join(ARMS), help="a subset of " + ",".join(ARMS))
    parser.add_argument("--families", default=None, help="an ablation: only these families (comma-separated)")
    parser.add_argument("--max-level", type=int, default=None, help="an ablation: cap the generator's level")
    args = parser.parse_args(argv)
    settings = replace(
        SMOKE if args.smoke else Settings(),
        families=tuple(args.families.split(",")) if args.families else None,
        max_level=args.max_level,
    )
    arms = [a for a in args.arms.split(",") if a]
    modes = [m for m in args.modes.split(",") if m]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [
            (arm, mode, seed, settings, tmp) for mode in modes for seed in range(args.seeds) for arm in arms
        ]
        with get_context("spawn").Pool(args.processes) as pool:
            runs = pool.map(run_arm, jobs, chunksize=1)
    wall = time.perf_counter() - started
    command = "benchmarks/replication.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {
        "command": command,
        "wall_s": round(wall, 1),
        "machine": machine(),
        "settings": asdict(settings),
        "seeds": args.seeds,
        "modes": modes,
        "runs": runs,
    }
    table = summarize(runs)
    atomic_write_text(args.out / f"{args.name}.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(
        args.out / f"{args.name}.md",
        f"Command: `{command}` — wall time {wall / 60:.1f} min on "
        f"{machine()['cpus']} CPUs, {args.seeds} seeds.\n{table}",
    )
    print(table)
    print(f"wall time: {wall / 60:.1f} min")
    return report


if __name__ == "__main__":
    main()
