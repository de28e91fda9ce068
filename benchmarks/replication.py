"""Run as: make replication   (or .venv/bin/python benchmarks/replication.py [--seeds 3] [--smoke])

The miniature replication of Lion's claim on the offline world: at an equal budget, does the
adversarial loop make a better student than one-way imitation? Every arm runs the method's one body,
lion_core.loop (the code `lion run` runs), and they differ only in the two steps the loop injects —
which Cache Pool items are hard (the selection) and what answers a generator request:

- lion:       selection `paper` (gap ≥ tau); the generator makes new instructions from hard parents
              (same family and level) and easy ones (same family, harder);
- imitation:  selection `random` and, instead of the generator, a draw from the seed distribution
              (families × base/harder level): the Alpaca/Vicuna-style one-way baseline;
- no-referee: the same generator, with hard and easy labels drawn at random in the referee's
              proportions (selection `random`), isolating what the referee's choice adds.

Equal budget: the same initial pool and round-0 student (trained once per seed, shared by the arms),
the same number of new teacher-answered instructions
per round, the same optimizer steps per round, the same seeds. Every new instruction passes the same
filters (post-filters, ROUGE-L < 0.7 novelty, and exact decontamination against the test set).
Held-out test: a fixed set, uniform over families and over the base (1) and harder (2) level, the
same for every arm and seed. Both training modes run: the new Train Pool only, and cumulative.
Writes benchmarks/results/replication.json and replication.md.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from random import Random
from typing import Any

from common import RESULTS, machine

from lion_core.config import LionConfig, LoopConfig, StudentConfig
from lion_core.generation import Ask, GenerationRequest, asker
from lion_core.llm import Completion
from lion_core.loop import FinetuneJob, Roles, direct_effects, run_iteration, run_loop
from lion_core.records import Instruction, atomic_write_text, read_jsonl, write_jsonl
from lion_core.rundir import RunDir
from lion_core.student.data import student_prompts
from lion_core.student.generate import answer
from lion_core.student.launch import run_finetune
from lion_core.student.train import TrainResult
from lion_core.world.client import WorldChatClient
from lion_core.world.evaluation import score_world
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


def accuracy(checkpoint: Path, tests: list[Task], config: LionConfig) -> dict[str, Any]:
    """Exact match of a checkpoint on the test set, overall, per family and per level."""
    texts = student_prompts(
        "compact", [Instruction(id=str(i), instruction=t.instruction) for i, t in enumerate(tests)]
    )
    return score_world(tests, answer(checkpoint, texts, config.student)).to_dict()


def test_set(settings: Settings) -> list[Task]:
    """The fixed held-out set: test_per_cell tasks for every family × level."""
    rng = Random(TEST_SEED)
    return [
        t
        for f in families(settings.families)
        for level in LEVELS
        for t in sample_tasks(settings.test_per_cell, rng, [f.name], [level])
    ]


def run_config(settings: Settings, arm: str, mode: str, seed: int, root: Path, base: Path) -> LionConfig:
    """One arm's run of the loop: iteration 1 trains round 0 on the seed pool, each later iteration one
    round on new data; the last iteration's student is the one that counts."""
    student = StudentConfig(
        model_path=base,
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
        do_sample=False,
    )
    loop = LoopConfig(
        iterations=settings.rounds + 1,
        new_per_iteration=settings.new,
        min_words=1,
        seed=seed,
        generation_rounds=6,
        selection="paper" if arm == "lion" else "random",
    )
    return LionConfig(
        run_dir=root / f"{arm}-{mode}-{seed}",
        student=student,
        loop=loop,
        pools={"seed_path": root / f"seed-{seed}.jsonl"},
    )


def decontaminated(ask: Ask, banned: set[str]) -> Ask:
    """The generator's replies, with any that is a test item refused (it fails the post-filters)."""

    async def refuse_test_items(requests: list[GenerationRequest]) -> list[Completion]:
        replies = await ask(requests)
        return [Completion("", "stop", 0, 0) if r.content.strip().lower() in banned else r for r in replies]

    return refuse_test_items


def oracle_sampler(seed: int, names: tuple[str, ...] | None) -> Ask:
    """The imitation arm's 'generator': a fresh task of the seed distribution for each request (the
    parent is ignored), drawn from the request's variant, so the same request draws the same task."""

    async def draw(requests: list[GenerationRequest]) -> list[Completion]:
        tasks = [sample_tasks(1, Random(f"{seed}:{r.variant}"), names, LEVELS)[0] for r in requests]
        return [Completion(t.instruction, "stop", 0, 0) for t in tasks]

    return draw


def shared_finetune(store: Path, config: LionConfig) -> Callable[[FinetuneJob], TrainResult]:
    """Fine-tunes kept by training key in a store the arms share: round 0 (the same seed pool, base and
    settings in every arm of a seed) trains once, and the other arms copy it."""

    def finetune(job: FinetuneJob) -> TrainResult:
        trained = store / job.key
        with open(store / f"{job.key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the first arm trains; the others wait, then reuse
            result = run_finetune(job.base, job.data, trained, config.student, config.loop.seed, job.key)
        if not job.out.exists():
            shutil.copytree(trained, job.out)
        return replace(result, checkpoint=str(job.out))

    return finetune


def prepare_seed(settings: Settings, seed: int, banned: set[str], root: Path) -> Path:
    """The seed's pool (disjoint from the test set) and base checkpoint, made once for all its arms."""
    with open(root / f"seed-{seed}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pool, base = root / f"seed-{seed}.jsonl", root / f"base-{seed}"
        if not pool.exists():
            drawn = sample_tasks(settings.initial + len(banned), Random(seed), settings.families, LEVELS)
            tasks = [t for t in drawn if t.instruction.lower() not in banned][: settings.initial]
            write_jsonl(
                pool,
                [Instruction(id=f"seed-{k:05d}", instruction=t.instruction) for k, t in enumerate(tasks)],
            )
        if not base.exists():
            build_tiny_student(base, TinyStudentSpec(seed=seed))
    return base


def run_arm(job: tuple[str, str, int, Settings, str]) -> dict[str, Any]:
    """One arm × training mode × seed through the Lion loop body (lion_core.loop), with the arm's
    selection and generator; round 0 is shared by the arms of a seed."""
    import torch

    torch.set_num_threads(1)
    arm, mode, seed, settings, workdir = job
    started = time.perf_counter()
    root, tests = Path(workdir), test_set(settings)
    banned = {t.instruction.lower() for t in tests}
    config = run_config(settings, arm, mode, seed, root, prepare_seed(settings, seed, banned, root))
    later = config.model_copy(
        update={"student": config.student.model_copy(update={"max_steps": settings.steps})}
    )
    world = RoleSettings(max_level=settings.max_level)
    roles = Roles(*(WorldChatClient(role, world, seed) for role in ("teacher", "referee", "generator")))
    ask = oracle_sampler(seed, settings.families) if arm == "imitation" else asker(roles.generator)
    run = RunDir(config.run_dir)

    async def iterate(k: int) -> dict[str, Any]:
        round_config = config if k == 1 else later
        fx = replace(
            direct_effects(round_config, roles, heldout=lambda ckpt: accuracy(ckpt, tests, config)),
            generator=decontaminated(ask, banned),
            finetune=shared_finetune(root, round_config),
        )
        return (await run_iteration(fx, round_config, run, k)).summary

    summaries = asyncio.run(run_loop(config, iterate))
    rounds = summaries[:-1]  # the last iteration's discrimination and generation feed no student
    return {
        "arm": arm,
        "mode": mode,
        "seed": seed,
        "final": summaries[-1]["heldout"],
        "curve": [s["heldout"]["accuracy"] for s in summaries],
        "discrimination": [{"hard_share": s["hard_share"], "mean_gap": s["mean_gap"]} for s in rounds],
        "new_levels": [
            _level_counts(read_jsonl(run.iteration(k).file("generated"), Instruction))
            for k in range(1, len(rounds) + 1)
        ],
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
