"""Run as: .venv/bin/python benchmarks/calibration.py [--quick]   (part of `make replication`)

The lab's positive control: which cells (family × level) of the offline world can the replication's
tiny student learn from more data? From the round-0 student of the replication (seed 0, the same
initial pool, base and recipe), one round of training (the replication's steps, cumulative data) on the
pool plus N items *of one family* (targeted, uniform over its levels; `--per cell`: of one cell), against
the pool plus N items *uniform over all cells*, for two doses N; each cell is read on its own test
tasks. Each cell is then, by measurement:

- learnt:       round-0 exact match ≥ LEARNT already;
- frontier:     targeted data raises the cell by ≥ MIN_GAIN over the uniform dose at the large dose;
- out of reach: neither (the keyed family `code` is out of reach by construction).

Writes benchmarks/results/calibration.json and calibration.md (a table per cell: round 0, uniform and
targeted at each dose, the class).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from multiprocessing import get_context
from pathlib import Path
from random import Random
from typing import Any

from common import RESULTS, machine
from replication import LEVELS, PLUGINS, QUICK, Settings, cell, seed_pool, student_config, test_set

from lion_core.records import atomic_write_text, write_jsonl
from lion_core.student.launch import FinetuneJob, run_finetune
from lion_core.world.families import Task, families, load_plugins, sample_task, sample_tasks
from lion_core.world.student import TinyStudentSpec, build_tiny_student

SEED = 0
CALIBRATION_TEST_SEED = 777  # its own test draw: more tasks per cell than the replication's test
TEST_PER_CELL = 50
LEARNT = 0.8  # a cell at or above this exact match after round 0 is learnt
DRAW_ATTEMPTS = 50  # draws per wanted task before a target is declared too small
MIN_GAIN = 0.1  # targeted data must beat uniform by this much (absolute) to call a cell a frontier


def sft_rows(tasks: list[Task]) -> list[dict[str, str]]:
    from lion_core import prompts

    return [{"prompt": prompts.student_prompt("compact", t.instruction), "response": t.answer} for t in tasks]


def cells_of(settings: Settings) -> list[tuple[str, int]]:
    return [(f.name, lv) for f in families(settings.families) for lv in LEVELS if lv <= f.max_level]


def targets_of(settings: Settings, per: str) -> list[str]:
    """The targeted doses' targets: family names, or cells (name@Llevel)."""
    if per == "family":
        return [f.name for f in families(settings.families)]
    return [f"{n}@L{lv}" for n, lv in cells_of(settings)]


def target_of(cell_key: str, per: str) -> str:
    """The target whose dose feeds a cell: its family, or the cell itself."""
    return cell_key.split("@")[0] if per == "family" else cell_key


def calibration_tests(settings: Settings, banned: set[str]) -> list[Task]:
    rng = Random(CALIBRATION_TEST_SEED)
    return [
        t
        for name, level in cells_of(settings)
        for t in sample_tasks(TEST_PER_CELL, rng, [name], [level])
        if t.instruction.lower() not in banned
    ]


def extra_tasks(settings: Settings, dose: int, target: str | None, seen: set[str], salt: str) -> list[Task]:
    """`dose` new tasks, all of `target` (a family, uniform over its levels, or a cell name@Llevel) or
    uniform over cells (None), unseen."""
    rng = Random(f"{SEED}:calibration:{salt}")
    if target is None:
        names, levels = settings.families, LEVELS
    elif "@L" not in target:
        names, levels = [target], LEVELS
    else:
        name, level = target.split("@L")
        names, levels = [name], (int(level),)
    grid = [(f, lv) for f in families(names) for lv in levels if lv <= f.max_level]
    fresh: dict[str, Task] = {}
    for attempt in range(DRAW_ATTEMPTS * dose):  # round-robin over the cells; a small cell runs dry
        family, level = grid[attempt % len(grid)]
        task = sample_task(family, rng, level)
        if task.instruction.lower() not in seen:
            fresh.setdefault(task.instruction.lower(), task)
        if len(fresh) == dose:
            return list(fresh.values())
    raise ValueError(f"only {len(fresh)} unseen tasks of {target or 'all cells'} for a dose of {dose}")


def score_cells(checkpoint: Path, tests: list[Task], settings: Settings) -> dict[str, float]:
    from lion_core import prompts
    from lion_core.student.generate import answer

    config = student_config(settings, checkpoint, "cumulative")
    outputs = answer(checkpoint, [prompts.student_prompt("compact", t.instruction) for t in tests], config)
    hits: dict[str, list[bool]] = {}
    for task, output in zip(tests, outputs):
        hits.setdefault(cell(task), []).append(output.strip() == task.answer)
    return {key: statistics.mean(v) for key, v in sorted(hits.items())}


def train(base: Path, rows: list[dict[str, str]], out: Path, settings: Settings, steps: int) -> Path:
    data = out.with_suffix(".jsonl")
    write_jsonl(data, rows)
    config = student_config(settings, base, "cumulative").model_copy(update={"max_steps": steps})
    run_finetune(FinetuneJob(base, data, out, config, SEED, out.name))
    return out


def round_zero(settings: Settings, root: Path) -> tuple[Path, list[Task], set[str]]:
    """The replication's seed-0 round-0 student, its pool, and every instruction it must not see again."""
    banned = {t.instruction.lower() for t in test_set(settings)}
    pool = seed_pool(settings, SEED, banned)
    base = build_tiny_student(root / "base", TinyStudentSpec(seed=SEED))
    checkpoint = train(base, sft_rows(pool), root / "round0", settings, settings.first_steps)
    return checkpoint, pool, banned | {t.instruction.lower() for t in pool}


def run_job(job: tuple[str | None, int, Settings, str]) -> dict[str, Any]:
    """One round from the round-0 student on the pool + `dose` items (of `target`, or uniform)."""
    import torch

    torch.set_num_threads(1)
    target, dose, settings, workdir = job
    root = Path(workdir)
    pool = json.loads((root / "pool.json").read_text())
    seen = set(json.loads((root / "seen.json").read_text()))
    tests = calibration_tests(settings, seen)
    extra = extra_tasks(settings, dose, target, seen, f"{target}:{dose}")
    out = root / f"{target or 'uniform'}-{dose}".replace("@", "_")
    checkpoint = train(root / "round0", pool + sft_rows(extra), out, settings, settings.steps)
    return {"target": target, "dose": dose, "cells": score_cells(checkpoint, tests, settings)}


def classify(before: float, targeted: float, uniform: float) -> str:
    if before >= LEARNT:
        return "learnt"
    return "frontier" if targeted - uniform >= MIN_GAIN else "out of reach"


def table(report: dict[str, Any]) -> str:
    doses = report["doses"]
    head = " | ".join(f"uniform +{d} | targeted +{d}" for d in doses)
    lines = [
        f"| cell | round 0 | {head} | targeted − uniform (+{doses[-1]}) | class |",
        "|---|---" + "|---" * (2 * len(doses) + 2) + "|",
    ]
    for row in report["cells"]:
        values = " | ".join(
            f"{100 * row['uniform'][str(d)]:.0f} | {100 * row['targeted'][str(d)]:.0f}" for d in doses
        )
        lines.append(
            f"| {row['cell']} | {100 * row['round0']:.0f} | {values} | "
            f"{100 * row['effect']:+.0f} | {row['class']} |"
        )
    counts = {
        c: sum(r["class"] == c for r in report["cells"]) for c in ("learnt", "frontier", "out of reach")
    }
    lines.append("")
    lines.append("Cells by class: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description="Per-cell learnability of the offline world (the lab's control)."
    )
    parser.add_argument("--quick", action="store_true", help="the replication's --quick sizes")
    parser.add_argument(
        "--doses", default=None, help="comma-separated N (default: a quarter of and one round's N)"
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--per",
        choices=("family", "cell"),
        default="family",
        help="what a targeted dose is made of: one family (uniform over its levels; 10 runs per dose, "
        "the default) or one cell (30 runs per dose)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="calibration")
    parser.add_argument("--world-plugin", action="append", default=None, help="as in replication.py")
    args = parser.parse_args(argv)
    plugins = [p for p in (args.world_plugin or PLUGINS) if p != "none"]
    load_plugins(plugins)
    settings = QUICK if args.quick else Settings()
    doses = [int(d) for d in args.doses.split(",")] if args.doses else [settings.new // 4, settings.new]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        import torch

        torch.set_num_threads(1)  # more threads on a shared 2-core machine only thrash
        checkpoint, pool, seen = round_zero(settings, root)
        before = score_cells(checkpoint, calibration_tests(settings, seen), settings)
        (root / "pool.json").write_text(json.dumps(sft_rows(pool)))
        (root / "seen.json").write_text(json.dumps(sorted(seen)))
        targets = [None, *targets_of(settings, args.per)]
        jobs = [(t, d, settings, tmp) for d in doses for t in targets]
        with get_context("spawn").Pool(args.processes) as workers:
            results = workers.map(run_job, jobs, chunksize=1)
    uniform = {r["dose"]: r["cells"] for r in results if r["target"] is None}
    targeted = {(r["target"], r["dose"]): r["cells"] for r in results if r["target"] is not None}
    cells = []
    for key in sorted(before):
        row = {
            "cell": key,
            "round0": before[key],
            "uniform": {str(d): uniform[d][key] for d in doses},
            "targeted": {str(d): targeted[(target_of(key, args.per), d)][key] for d in doses},
        }
        row["effect"] = row["targeted"][str(doses[-1])] - row["uniform"][str(doses[-1])]
        row["class"] = classify(before[key], row["targeted"][str(doses[-1])], row["uniform"][str(doses[-1])])
        cells.append(row)
    wall = time.perf_counter() - started
    command = "benchmarks/calibration.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {
        "command": command,
        "wall_s": round(wall, 1),
        "machine": machine(),
        "settings": asdict(replace(settings)),
        "doses": doses,
        "per": args.per,
        "test_per_cell": TEST_PER_CELL,
        "thresholds": {"learnt": LEARNT, "min_gain": MIN_GAIN},
        "cells": cells,
    }
    text = table(report)
    atomic_write_text(args.out / f"{args.name}.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(
        args.out / f"{args.name}.md",
        f"Command: `{command}` — wall time {wall / 60:.1f} min on {machine()['cpus']} CPUs; seed {SEED}, "
        f"{TEST_PER_CELL} test tasks per cell (exact match, %).\n\n{text}",
    )
    print(text)
    print(f"wall time: {wall / 60:.1f} min")
    return report


if __name__ == "__main__":
    main()
