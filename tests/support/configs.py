"""Configs the tests build: the tiny student at a rate it learns in tens of steps (and what it trains
on), the demo shrunk to seconds, a run against a world server, configs/demo.yaml made a test's own."""

from __future__ import annotations

from pathlib import Path
from random import Random
from typing import Any

import yaml

from lion_core import prompts
from lion_core.config import LionConfig, LoopConfig, StudentConfig, dump_config
from lion_core.student.data import SFTPair
from lion_core.world.families import sample_tasks
from tests.support.paths import CONFIGS

# ----------------------------------------------------------------------------- the tiny student

STYLE = "compact"  # the tiny student's prompt template: its inputs are one token per character
TINY_STUDENT: dict[str, Any] = dict(
    finetune="full",
    prompt_template=STYLE,
    learning_rate=3e-3,
    train_batch_size=16,
    gradient_accumulation_steps=1,
    max_length=64,
)


def tiny_student(base: Path, **overrides: Any) -> StudentConfig:
    """The tiny student of `base` (lion_core.world.student) at a rate it learns in tens of steps."""
    return StudentConfig(**{"model_path": base, **TINY_STUDENT, **overrides})


def greedy_student(base: Path, **overrides: Any) -> StudentConfig:
    """150 steps, greedy answers of up to 16 tokens: exact-match assertions compare one answer per prompt."""
    settings = dict(max_steps=150, infer_batch_size=64, max_new_tokens=16, do_sample=False)
    return tiny_student(base, **{**settings, **overrides})


# One fine-tune of 8 optimizer steps, each an accumulation of 2 micro-batches of 4 examples, logged every
# 3 steps, on a linear schedule with 2 warm-up steps: what the training-progress tests watch.
STEPS = 8
BATCH = 4
ACCUMULATION = 2
EVERY = 3
PEAK_LR = TINY_STUDENT["learning_rate"]


def watched_student(base: Path, **overrides: Any) -> StudentConfig:
    """The tiny student on the watched schedule (STEPS, BATCH, ACCUMULATION, EVERY), no tracker."""
    settings = dict(
        learning_rate=PEAK_LR,
        lr_scheduler="linear",
        warmup_ratio=0.25,
        max_steps=STEPS,
        train_batch_size=BATCH,
        gradient_accumulation_steps=ACCUMULATION,
        log_every_steps=EVERY,
        report_to="none",
    )
    return tiny_student(base, **{**settings, **overrides})


def tiny_pairs(tasks) -> list[SFTPair]:
    """World tasks as the tiny student's training pairs (its prompt, the oracle's answer)."""
    return [SFTPair(prompts.student_prompt(STYLE, t.instruction), t.answer) for t in tasks]


def length_pairs(n: int, seed: int = 0) -> list[SFTPair]:
    """`n` training pairs of the easy 'length' family, level 1."""
    return tiny_pairs(sample_tasks(n, Random(seed), ["length"], levels=(1,)))


# ----------------------------------------------------------------------------- whole runs


def world_config(
    world, student: Path, run_dir: Path, *, max_steps: int, new_per_iteration: int, **loop: Any
) -> LionConfig:
    """Every role on the world server `world`, the tiny student of `student` trained `max_steps` steps
    (answers of up to 12 tokens), instructions as short as world commands kept (loop.min_words 1)."""
    endpoint = {"base_url": world.url, "concurrency": 16}
    return LionConfig(
        run_dir=run_dir,
        teacher=endpoint,
        referee=endpoint,
        generator={**endpoint, "temperature": 1.0},
        student=tiny_student(student, max_steps=max_steps, max_new_tokens=12),
        loop=LoopConfig(new_per_iteration=new_per_iteration, min_words=1, seed=0, **loop),
    )


def small_demo(run_dir: Path, port: int, iterations: int = 2, max_steps: int = 20, **loop: Any) -> LionConfig:
    """The demo shrunk to seconds: 60 seeds, 24 new per iteration, `max_steps` training steps, against a
    world server on `port`; `loop` overrides the loop's settings."""
    from flows.demo import demo_config  # Prefect's flows: loaded only by the tests that run them

    data = demo_config(run_dir, iterations, 0, port).model_dump()
    data["world"].update(seed_size=60, heldout_size=36)
    data["student"].update(max_steps=max_steps, epochs=1)
    data["loop"].update({"new_per_iteration": 24, "batch_size": 16, "task_retry_delay_s": 0.2, **loop})
    return LionConfig.model_validate(data)


def config_file(config: LionConfig, folder: Path) -> Path:
    """The demo's world files made (tiny student, seed pool, held-out set) and FOLDER/config.yaml written,
    for `lion run`."""
    from flows.demo import prepare_world_files

    prepare_world_files(config)
    path = folder / "config.yaml"
    dump_config(config, path)
    return path


# ----------------------------------------------------------------------------- config files


def local_config(tmp_path: Path, **student_and_pools: str) -> Path:
    """configs/demo.yaml with a run directory, seed pool and student of this test's own."""
    data = yaml.safe_load((CONFIGS / "demo.yaml").read_text())
    data["run_dir"] = str(tmp_path / "run")
    data["evaluation"]["heldout_path"] = None
    data["pools"]["seed_path"] = student_and_pools.get("seed_path", str(tmp_path / "seed.jsonl"))
    data["student"]["model_path"] = student_and_pools.get("model_path", str(tmp_path))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def edited(config: Path, section: str, field: str, value: object) -> Path:
    """The config file with `section.field` set to `value` (written in place)."""
    data = yaml.safe_load(config.read_text())
    data.setdefault(section, {})[field] = value
    config.write_text(yaml.safe_dump(data))
    return config
