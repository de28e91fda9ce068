"""Run as: make replication   (or .venv/bin/python benchmarks/replication.py [--seeds 6] [--quick|--smoke])
        (--quick: a few-minute CI smoke at small sizes and 2 seeds; its numbers mean nothing)

The miniature replication of Lion's claim on the offline world, built to be able to tell: does choosing
which instructions to multiply — or using the referee's verdicts as preference pairs — make a better
student than plain imitation, at equal training data and at equal API spend? Every arm runs the
method's one body, lion_core.method.loop (the code `lion run` runs), and differs only in what it
configures (selection, referee.sample, the preference stage) or, for the privileged oracle, in the
selection step the loop injects. The arms, the primary metric and the hypotheses are declared in
benchmarks/replication_protocol.py, written to <name>.protocol.md before any run starts.

Equal data: the same initial pool and round-0 student per seed (trained once, shared by the arms),
exactly N new teacher-answered instructions per round in every arm but imitation@lion (generation runs
until N are kept; the report checks it), the same optimizer steps per round, the same seeds. Every new
instruction passes the same filters (post-filters, ROUGE-L < 0.7 novelty, decontamination against the
test set). Equal spend: tokens the world bills, priced at gpt-4o-mini list prices; imitation@lion buys
more new data with lion's spend. The test covers every level the generator can produce (1–3) of every
family; the keyed plugin family `code` is always loaded (`--world-plugin` adds more).
Writes benchmarks/results/<name>.protocol.md (first), <name>.json and <name>.md.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from random import Random
from typing import Any

import agreement
from common import RESULTS, machine
from replication_protocol import ARM, ARMS, DEFAULT_ARMS, LEVELS, PROTOCOL, REFERENCE, SEEDS
from replication_report import paired, render, spend, usd

from lion_core.chat import Completion
from lion_core.config import LionConfig, LoopConfig, PreferenceSettings, StudentConfig
from lion_core.method.direct import direct_effects
from lion_core.method.effects import Roles
from lion_core.method.generation import Ask, GenerationRequest, asker
from lion_core.method.loop import run_iteration, run_loop
from lion_core.method.selection import selection
from lion_core.records import Instruction, atomic_write_text, read_jsonl, write_jsonl
from lion_core.run.rundir import RunDir
from lion_core.student.data import student_prompts
from lion_core.student.generate import answer
from lion_core.student.launch import FinetuneJob, run_finetune
from lion_core.student.train import TrainResult
from lion_core.world.client import WorldChatClient
from lion_core.world.evaluation import score_world
from lion_core.world.families import Task, families, identify, load_plugins, sample_tasks
from lion_core.world.roles import RoleSettings
from lion_core.world.student import TinyStudentSpec, build_tiny_student

TEST_SEED = 12345
PLUGINS = ("lion_core.world.keyed",)
QUICK_SEEDS = 2


@dataclass(frozen=True)
class Settings:
    """Sizes of one run (chosen so that the full benchmark takes about 20 minutes on 2 cores)."""

    initial: int = 500
    new: int = 400
    rounds: int = 3
    first_steps: int = 400
    steps: int = 150
    test_per_cell: int = 20
    batch_size: int = 32
    learning_rate: float = 3e-3
    families: tuple[str, ...] | None = None  # None: every registered family
    max_level: int | None = None  # cap of the generator's levels (None: the families' top level, 3)
    frontier: tuple[str, ...] = ()  # the calibration's frontier cells (the oracle arm's parents)


QUICK = Settings(initial=200, new=100, rounds=2, first_steps=120, steps=40, test_per_cell=6)
SMOKE = Settings(initial=60, new=18, rounds=1, first_steps=8, steps=4, test_per_cell=2)


def cell(task: Task) -> str:
    return f"{task.family}@L{task.level}"


def accuracy(checkpoint: Path, tests: list[Task], config: LionConfig) -> dict[str, Any]:
    """Exact match of a checkpoint on the test set: overall (= macro over cells), per family, level and
    cell, and the per-item hits (for the item-level SE of paired differences)."""
    texts = student_prompts(
        "compact", [Instruction(id=str(i), instruction=t.instruction) for i, t in enumerate(tests)]
    )
    outputs = answer(checkpoint, texts, config.student)
    score = score_world(tests, outputs).to_dict()
    score["hits"] = [int(o.strip() == t.answer) for t, o in zip(tests, outputs)]
    return score


def test_set(settings: Settings) -> list[Task]:
    """The fixed held-out set: test_per_cell tasks for every family × level."""
    rng = Random(TEST_SEED)
    return [
        t
        for f in families(settings.families)
        for level in LEVELS
        if level <= f.max_level
        for t in sample_tasks(settings.test_per_cell, rng, [f.name], [level])
    ]


def student_config(settings: Settings, base: Path, mode: str) -> StudentConfig:
    """The tiny student's recipe of every arm (greedy answers, compact prompt)."""
    return StudentConfig(
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


def run_config(settings: Settings, arm: str, mode: str, seed: int, root: Path, base: Path) -> LionConfig:
    """One arm's run of the loop: iteration 1 trains round 0 on the seed pool, each later iteration one
    round on new data; the last iteration's student is the one that counts. Generation runs until N
    are kept (bounded by the patience), so every arm trains on the same number of new items."""
    loop = LoopConfig(
        iterations=settings.rounds + 1,
        new_per_iteration=settings.new,
        min_words=1,
        seed=seed,
        selection=ARM[arm].selection,
    )
    student = student_config(settings, base, mode)
    if ARM[arm].preference:
        student = student.model_copy(update={"objective": "sft+dpo", "preference": preference(settings)})
    return LionConfig(
        run_dir=root / f"{arm}-{mode}-{seed}",
        student=student,
        loop=loop,
        referee={"sample": ARM[arm].sample},
        pools={"seed_path": root / f"seed-{seed}.jsonl"},
    )


def preference(settings: Settings) -> PreferenceSettings:
    """The preference arms' stage, declared before the runs (not tuned): DPO on the round's hard pairs,
    at most N of them, one pass at the fine-tune's batch, a tenth of its learning rate, TRL's beta."""
    return PreferenceSettings(
        pairs="hard",
        max_pairs=settings.new,
        beta=0.1,
        learning_rate=settings.learning_rate / 10,
        epochs=1.0,
        train_batch_size=settings.batch_size,
    )


def decontaminated(ask: Ask, banned: set[str]) -> Ask:
    """The generator's replies, with any that is a test item refused (it fails the post-filters)."""

    async def refuse_test_items(requests: list[GenerationRequest]) -> list[Completion]:
        replies = await ask(requests)
        return [Completion("", "stop", 0, 0) if r.content.strip().lower() in banned else r for r in replies]

    return refuse_test_items


def frontier_step(step: Callable[..., Any], frontier: frozenset[str], seed: int, loop: LoopConfig):
    """The oracle arm's selection step: parents drawn only from the cells the calibration marks frontier
    (privileged: no user knows them), uniformly at the generation ratio; the rest are no parents."""
    uniform = selection("uniform", seed, loop)

    def select(pool: list[Instruction], judgements: list, evidence: Any = None) -> Any:
        chosen = [i for i in pool if agreement.cell(i) in frontier] or pool
        drawn = uniform(chosen, [], evidence)
        return replace(drawn, unscorable=[i for i in pool if i not in chosen])

    def run_step(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        return step(name, fn, *((select, *args[1:]) if name == "discrimination" else args))

    return run_step


def shared_finetune(store: Path, config: LionConfig) -> Callable[[FinetuneJob], TrainResult]:
    """Fine-tunes kept by training key in a store the arms share: round 0 (the same seed pool, base and
    settings in every arm of a seed) trains once, and the other arms copy it."""

    def finetune(job: FinetuneJob) -> TrainResult:
        trained = store / job.key
        with open(store / f"{job.key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the first arm trains; the others wait, then reuse
            result = run_finetune(replace(job, out=trained))
        if not job.out.exists():
            shutil.copytree(trained, job.out)
        return replace(result, checkpoint=str(job.out))

    return finetune


def seed_pool(settings: Settings, seed: int, banned: set[str]) -> list[Task]:
    """The seed's initial pool: uniform over families × levels, disjoint from the test set."""
    drawn = sample_tasks(settings.initial + len(banned), Random(seed), settings.families, LEVELS)
    return [t for t in drawn if t.instruction.lower() not in banned][: settings.initial]


def prepare_seed(settings: Settings, seed: int, banned: set[str], root: Path) -> Path:
    """The seed's pool (disjoint from the test set) and base checkpoint, made once for all its arms."""
    with open(root / f"seed-{seed}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pool, base = root / f"seed-{seed}.jsonl", root / f"base-{seed}"
        if not pool.exists():
            tasks = seed_pool(settings, seed, banned)
            write_jsonl(
                pool,
                [Instruction(id=f"seed-{k:05d}", instruction=t.instruction) for k, t in enumerate(tasks)],
            )
        if not base.exists():
            build_tiny_student(base, TinyStudentSpec(seed=seed))
    return base


def run_arm(job: tuple[str, str, int, Settings, str]) -> dict[str, Any]:
    """One arm × training mode × seed through the Lion loop body (lion_core.method.loop), with the arm's
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
    ask = asker(roles.generator)
    run = RunDir(config.run_dir)

    billed: list[dict[str, list[int]]] = []  # per iteration: role → [input, output] tokens

    async def iterate(k: int) -> dict[str, Any]:
        round_config = config if k == 1 else later
        fx = replace(
            direct_effects(round_config, roles, heldout=lambda ckpt: accuracy(ckpt, tests, config)),
            generator=decontaminated(ask, banned),
            finetune=shared_finetune(root, round_config),
        )
        if ARM[arm].frontier:
            fx = replace(fx, step=frontier_step(fx.step, frozenset(settings.frontier), seed, config.loop))
        before = tokens_of(roles)
        summary = (await run_iteration(fx, round_config, run, k)).summary
        billed.append({r: [a - b for a, b in zip(now, before[r])] for r, now in tokens_of(roles).items()})
        return summary

    summaries = asyncio.run(run_loop(config, iterate))
    rounds = summaries[:-1]  # the last iteration's discrimination and generation feed no student
    replayed = agreement.replay_run(run.root, config.loop, len(rounds), summaries) if arm == "lion" else None
    return {
        "arm": arm,
        "mode": mode,
        "seed": seed,
        "final": summaries[-1]["heldout"],
        "curve": [s["heldout"]["accuracy"] for s in summaries],
        "cells": [s["heldout"]["per_family_level"] for s in summaries],
        "discrimination": [
            {
                "hard_share": s["hard_share"],
                "mean_gap": s["mean_gap"],
                "judged": s["judged"],
                "cache_pool": s["cache_pool"],
                **s["selection"],
            }
            for s in rounds
        ],
        "new": [s["generated"] for s in rounds],
        "new_cells": [
            _cell_counts(read_jsonl(run.iteration(k).file("generated"), Instruction))
            for k in range(1, len(rounds) + 1)
        ],
        "requests": {role: getattr(roles, role).requests for role in ("teacher", "referee", "generator")},
        "tokens": billed,
        "new_per_round": settings.new,
        "replay": replayed,
        "seconds": round(time.perf_counter() - started, 1),
    }


def tokens_of(roles: Roles) -> dict[str, list[int]]:
    """role → [input, output] tokens the in-process world billed so far."""
    return {
        role: [getattr(roles, role).input_tokens, getattr(roles, role).output_tokens]
        for role in ("teacher", "referee", "generator")
    }


def matched_new(imitation: dict[str, Any], target: dict[str, Any]) -> int:
    """New instructions per round that bring imitation's spend to `target`'s: the seed pool's teacher
    answers (iteration 1) are a fixed cost, every other dollar scales with the new data per round."""
    fixed = usd(imitation["tokens"][0], ("teacher",))
    per_round = (spend(imitation) - fixed) / imitation["new_per_round"]
    return max(imitation["new_per_round"], round((spend(target) - fixed) / per_round))


def _cell_counts(items: list[Instruction]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        found = identify(item.instruction)
        key = f"{found[0].name}@L{found[0].level_of(found[1])}" if found else "other"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="The miniature replication of Lion on the offline world.")
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help=f"seeds (default {SEEDS}; {QUICK_SEEDS} with --quick or --smoke)",
    )
    parser.add_argument("--modes", default="cumulative", help="cumulative and/or train_pool")
    parser.add_argument("--processes", type=int, default=2, help="runs in parallel (one CPU thread each)")
    parser.add_argument("--quick", action="store_true", help="a few-minute run for CI (small sizes)")
    parser.add_argument("--smoke", action="store_true", help="a seconds-long run that checks the machinery")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where <name>.json and <name>.md go")
    parser.add_argument("--name", default="replication", help="file name of the results")
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS), help="a subset of " + ",".join(ARMS))
    parser.add_argument("--families", default=None, help="an ablation: only these families (comma-separated)")
    parser.add_argument("--max-level", type=int, default=None, help="an ablation: cap the generator's level")
    parser.add_argument(
        "--world-plugin",
        action="append",
        default=[],
        help=f"a module that registers task families, in addition to {','.join(PLUGINS)} (repeatable; "
        "'none': the built-in families only)",
    )
    parser.add_argument("--report-only", action="store_true", help="re-render <name>.md from <name>.json")
    args = parser.parse_args(argv)
    if args.report_only:
        return render(args.out, args.name)
    load_plugins(plugins_of(args.world_plugin))  # sets LION_WORLD_PLUGINS: the spawned workers import them
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARM]
    if unknown:
        parser.error(f"unknown arms {unknown}; one of {', '.join(ARMS)}")
    settings = replace(
        SMOKE if args.smoke else QUICK if args.quick else Settings(),
        families=tuple(args.families.split(",")) if args.families else None,
        max_level=args.max_level,
        frontier=frontier_cells(args.out, arms),
    )
    seeds = args.seeds or (QUICK_SEEDS if args.quick or args.smoke else SEEDS)
    modes = [m for m in args.modes.split(",") if m]
    atomic_write_text(args.out / f"{args.name}.protocol.md", PROTOCOL)  # declared before any run
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, get_context("spawn").Pool(args.processes) as pool:
        first = [a for a in arms if not ARM[a].matches]
        jobs = [(arm, mode, seed, settings, tmp) for mode in modes for seed in range(seeds) for arm in first]
        runs = pool.map(run_arm, jobs, chunksize=1)
        runs += pool.map(run_arm, matched_jobs(runs, arms, settings, tmp), chunksize=1)
    wall = time.perf_counter() - started
    command = "benchmarks/replication.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {
        "command": command,
        "wall_s": round(wall, 1),
        "machine": machine(),
        "settings": asdict(settings),
        "plugins": os.environ.get("LION_WORLD_PLUGINS", ""),
        "protocol": PROTOCOL,
        "seeds": seeds,
        "modes": modes,
        "paired": {mode: [paired([r for r in runs if r["mode"] == mode], a) for a in arms] for mode in modes},
        "runs": runs,
    }
    atomic_write_text(args.out / f"{args.name}.json", json.dumps(report, indent=1) + "\n")
    return render(args.out, args.name)


def plugins_of(asked: list[str]) -> list[str]:
    """The world plugins to load: the defaults and those asked for ('none' drops the defaults)."""
    base = [] if "none" in asked else list(PLUGINS)
    return [*base, *(p for p in asked if p != "none" and p not in base)]


def frontier_cells(out: Path, arms: list[str]) -> tuple[str, ...]:
    """The calibration's frontier cells (out/calibration.json), which the oracle arm needs."""
    path = out / "calibration.json"
    if not path.exists():
        if any(ARM[a].frontier for a in arms):
            raise SystemExit(
                f"{path}: no calibration; the oracle arm needs it (run benchmarks/calibration.py)"
            )
        return ()
    return tuple(row["cell"] for row in json.loads(path.read_text())["cells"] if row["class"] == "frontier")


def matched_jobs(
    runs: list[dict[str, Any]], arms: list[str], settings: Settings, workdir: str
) -> list[tuple[str, str, int, Settings, str]]:
    """The matched-spend imitation arms' jobs: per seed and mode, imitation with the new data per round
    that costs what the matched arm paid (both must have run)."""
    by = {(r["arm"], r["mode"], r["seed"]): r for r in runs}
    jobs = []
    for arm in (a for a in arms if ARM[a].matches):
        for (name, mode, seed), target in sorted(by.items()):
            imitation = by.get((REFERENCE, mode, seed))
            if name == ARM[arm].matches and imitation is not None:
                new = matched_new(imitation, target)
                jobs.append((arm, mode, seed, replace(settings, new=new), workdir))
    return jobs


if __name__ == "__main__":
    main()
