"""Train Pool and Cache Pool: their updates, seeded sampling, and their per-iteration files.

The Cache Pool starts equal to the initial Train Pool and only grows; after each iteration the Train
Pool is replaced by the kept new instructions and the Cache Pool is enlarged by them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from random import Random
from typing import TypeVar

from lion_core.records import Instruction, Response, read_instructions, write_jsonl
from lion_core.run.rundir import IterationDir

T = TypeVar("T")


@dataclass(frozen=True)
class Pools:
    """The two pools of one iteration."""

    train_pool: list[Instruction]
    cache_pool: list[Instruction]


def initial_pools(seed: Sequence[Instruction]) -> Pools:
    """Iteration 1: the Cache Pool is the initial Train Pool."""
    return Pools(list(seed), list(seed))


def next_pools(pools: Pools, generated: Sequence[Instruction]) -> Pools:
    """Train Pool ← the new instructions; Cache Pool ← Cache Pool + the new instructions."""
    known = {item.id for item in pools.cache_pool}
    clash = [item.id for item in generated if item.id in known]
    if clash:
        raise ValueError(f"new instruction ids already in the Cache Pool: {clash[:3]}")
    return Pools(list(generated), [*pools.cache_pool, *generated])


def sample(items: Sequence[T], n: int, rng: Random) -> list[T]:
    """n items, each used once before any is used again (seeded shuffles); [] when items is empty."""
    if not items:
        return []
    out: list[T] = []
    while len(out) < n:
        order = list(items)
        rng.shuffle(order)
        out.extend(order[: n - len(out)])
    return out


def write_pools(folder: IterationDir, pools: Pools) -> None:
    """iter_K/train_pool.jsonl and iter_K/cache_pool.jsonl, each written atomically."""
    write_jsonl(folder.file("train_pool"), pools.train_pool)
    write_jsonl(folder.file("cache_pool"), pools.cache_pool)


def read_pools(folder: IterationDir) -> Pools:
    return Pools(
        read_instructions(folder.file("train_pool"), "jsonl"),
        read_instructions(folder.file("cache_pool"), "jsonl"),
    )


def answers_for(pool: list[Instruction], known: list[Response]) -> list[Response]:
    """The known answers to a pool's instructions, in pool order (KeyError names a missing one)."""
    by_id = {r.id: r for r in known}
    missing = [i.id for i in pool if i.id not in by_id]
    if missing:
        raise KeyError(f"no teacher answer for {len(missing)} Cache Pool instructions, e.g. {missing[:3]}")
    return [by_id[i.id] for i in pool]
