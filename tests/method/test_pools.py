"""lion_core/method/pools.py: the Train Pool is replaced, the Cache Pool grows."""

from __future__ import annotations

import pytest

from lion_core.method.pools import initial_pools, next_pools
from tests.support.world import world_instructions


def test_pools_replace_the_train_pool_and_grow_the_cache_pool() -> None:
    pools = initial_pools(world_instructions(5))
    new = world_instructions(3, "new")
    after = next_pools(pools, new)
    assert after.train_pool == new
    assert after.cache_pool == pools.cache_pool + new
    with pytest.raises(ValueError, match="already in the Cache Pool"):
        next_pools(after, new[:1])
