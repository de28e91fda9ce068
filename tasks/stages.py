"""Prefect tasks for the pure stages: the hard/easy split and the pool update."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from lion_core.discrimination import Split, split
from lion_core.pools import Pools, next_pools, write_pools
from lion_core.records import Instruction, Judgement


@task(name="discrimination", cache_policy=NO_CACHE)
def split_task(cache_pool: list[Instruction], judgements: list[Judgement]) -> Split:
    """hard iff gap ≥ tau (labels carry tau); unscorable items counted and excluded."""
    return split(cache_pool, judgements)


@task(name="update-pools", cache_policy=NO_CACHE)
def update_pools_task(pools: Pools, generated: list[Instruction], next_dir: str) -> Pools:
    """Train Pool ← generated; Cache Pool ← Cache Pool + generated; written for the next iteration."""
    updated = next_pools(pools, generated)
    write_pools(Path(next_dir), updated)
    return updated
