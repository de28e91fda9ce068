"""lion_core/method/selection.py: the named strategies' pure rules (paper, random, uniform, fresh,
learnable, the probe sample) and a probing strategy run through the loop's effects against the world,
paid once."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from lion_core.api.cache import ResponseCache
from lion_core.api.ledger import Ledger
from lion_core.config import LionConfig, LoopConfig
from lion_core.method.direct import build_roles, direct_effects
from lion_core.method.discrimination import make_judgement
from lion_core.method.loop import run_iteration
from lion_core.method.pools import initial_pools, write_pools
from lion_core.method.selection import (
    SELECTIONS,
    Evidence,
    Probe,
    lineage_roots,
    needs_losses,
    needs_probes,
    needs_referee,
    probe_sample,
    selection,
)
from lion_core.records import Instruction, read_jsonl
from lion_core.run.rundir import RunDir
from lion_core.world.server import WorldServer
from tests.support.configs import world_config
from tests.support.world import world_instructions

TAU = 1.0
WRONG, RIGHT = (1.0, 1.0), (9.0, 9.0)


def verdict(item_id: str, student: tuple[float, float]) -> object:
    return make_judgement(item_id, RIGHT, student, tau=TAU)


def probe(parent: Instruction, student: tuple[float, float]) -> Probe:
    sibling = Instruction(id=f"probe-{parent.id}", instruction=f"{parent.instruction} x", parent_id=parent.id)
    return Probe(parent_id=parent.id, sibling=sibling, judgement=verdict(sibling.id, student))


def test_every_config_choice_is_a_registered_strategy_and_only_fresh_ones_probe() -> None:
    choices = LoopConfig.model_fields["selection"].annotation.__args__
    assert set(choices) == set(SELECTIONS)
    assert [name for name in choices if needs_probes(name)] == ["fresh", "learnable"]


def test_selection_is_a_named_step_paper_by_default_and_random_keeps_the_referees_count() -> None:
    pool = world_instructions(40)
    judgements = [
        make_judgement(item.id, (9, 9), (1, 1) if n % 4 == 0 else (9, 9), tau=1.0)
        for n, item in enumerate(pool)
    ]
    judgements[1] = make_judgement(pool[1].id, (9, None), (1, None), tau=1.0, reason="order 2: no scores")
    assert LionConfig().loop.selection == "paper"
    paper = selection("paper", 0)(pool, judgements)
    assert [i.id for i in paper.hard] == [i.id for n, i in enumerate(pool) if n % 4 == 0]
    drawn = selection("random", 0)(pool, judgements)
    assert len(drawn.hard) == len(paper.hard) and len(drawn.easy) == len(paper.easy)
    assert drawn.unscorable == paper.unscorable == [pool[1]]
    assert {i.id for i in drawn.hard} != {i.id for i in paper.hard}
    assert selection("random", 0)(pool, judgements) == drawn  # seeded: a resumed run draws the same
    with pytest.raises(KeyError, match="unknown selection 'best'"):
        selection("best", 0)
    with pytest.raises(ValueError, match="selection"):
        LionConfig(loop={"selection": "best"})


def test_uniform_ignores_the_referee_and_draws_at_the_generation_ratio() -> None:
    pool = world_instructions(400, seed=400)
    all_hard = [verdict(i.id, WRONG) for i in pool]
    all_easy = [verdict(i.id, RIGHT) for i in pool]
    drawn = selection("uniform", 0)(pool, all_hard)
    assert drawn == selection("uniform", 0)(pool, all_hard)  # seeded: a resumed run draws the same
    other = selection("uniform", 0)(pool, all_easy)
    assert (other.hard, other.easy) == (drawn.hard, drawn.easy)  # whatever the referee said
    assert drawn.stats["hard"] == len(drawn.hard)
    assert 0.4 < drawn.hard_share < 0.6  # r = 1: half the parents on each side
    two_to_one = selection("uniform", 0, LoopConfig(hard_easy_ratio=2.0))(pool, all_easy)
    assert 0.6 < two_to_one.hard_share < 0.73


def test_progress_calls_hard_what_the_fine_tune_taught_most_and_needs_no_referee() -> None:
    pool = world_instructions(6, seed=6)
    # (loss before, loss after) the iteration's fine-tune: drops 2.0, 0.1, 1.5, 0.0, nan, 0.5
    losses = dict(
        zip(
            (i.id for i in pool),
            [(3.0, 1.0), (0.2, 0.1), (2.5, 1.0), (4.0, 4.0), (1.0, math.nan), (1.5, 1.0)],
        )
    )
    chosen = selection("progress", 0)(pool, [], Evidence(losses=losses))
    # the top half of the 5 scored, rounded half up: 3, in pool order
    assert [i.id for i in chosen.hard] == [pool[0].id, pool[2].id, pool[5].id]
    assert [i.id for i in chosen.easy] == [pool[1].id, pool[3].id]
    assert chosen.unscorable == [pool[4]] and chosen.stats["selection"] == "progress"
    assert chosen.stats["mean_loss_drop"] == pytest.approx((2.0 + 0.1 + 1.5 + 0.0 + 0.5) / 5)
    assert not needs_referee("progress") and needs_losses("progress") and not needs_losses("paper")
    assert not needs_referee("uniform") and needs_referee("paper") and needs_referee("fresh")


def test_fresh_labels_by_the_sibling_and_leaves_unprobed_items_out() -> None:
    pool = world_instructions(4, seed=4)
    memorised = [verdict(i.id, RIGHT) for i in pool]  # the student answers what it was trained on
    probes = [probe(pool[0], WRONG), probe(pool[1], RIGHT), probe(pool[2], WRONG)]
    result = selection("fresh", 0)(pool, memorised, Evidence(probes))
    assert [i.id for i in result.hard] == [pool[0].id, pool[2].id]
    assert [i.id for i in result.easy] == [pool[1].id]
    assert [i.id for i in result.unscorable] == [pool[3].id]
    assert result.stats["probed"] == 3 and result.stats["unprobed"] == 1
    assert result.stats["cache_pool_hard"] == 0 and result.stats["agreement_with_paper"] == pytest.approx(
        1 / 3
    )


def test_learnable_quarantines_lineages_that_stay_hard_without_progress() -> None:
    seeds = world_instructions(3, seed=3)
    stuck, moving, new = seeds
    child = Instruction(id="c1", instruction="Copy abcdefgh", origin="hard", iteration=1, parent_id=stuck.id)
    pool = [*seeds, child]
    judgements = [verdict(i.id, RIGHT) for i in pool]
    earlier = [probe(stuck, WRONG), probe(moving, (2.0, 2.0))]
    now = [probe(stuck, WRONG), probe(child, WRONG), probe(moving, (6.0, 6.0)), probe(new, WRONG)]
    select = selection("learnable", 0, LoopConfig(learnable_patience=2, learnable_min_progress=0.5))
    result = select(pool, judgements, Evidence(now, [earlier]))
    assert lineage_roots(pool)[child.id] == stuck.id
    # the stuck lineage (its child included) is quarantined; the moving one and the new one are not
    assert [i.id for i in result.hard] == [moving.id, new.id]
    assert result.stats["quarantined"] == 2 and result.stats["quarantined_lineages"] == 1
    assert select(pool, judgements, Evidence(now)).stats["quarantined"] == 0  # no history: fresh


def test_the_probe_sample_is_seeded_and_stratified_by_origin() -> None:
    seeds = world_instructions(60, seed=60)
    generated = [
        i.model_copy(update={"id": f"h{n}", "origin": "hard"})
        for n, i in enumerate(world_instructions(40, "h", seed=40))
    ]
    pool = seeds + generated
    sample = probe_sample(pool, 20, seed=0, k=2)
    assert sample == probe_sample(pool, 20, seed=0, k=2) != probe_sample(pool, 20, seed=0, k=3)
    assert sum(i.origin == "seed" for i in sample) == 12 and sum(i.origin == "hard" for i in sample) == 8
    assert probe_sample(pool, None, 0, 1) == pool


@pytest.mark.slow
def test_fresh_probes_through_the_effects_and_pays_each_call_once(
    world: WorldServer, tiny_student_path: Path, tmp_path: Path
) -> None:
    config = world_config(
        world, tiny_student_path, tmp_path, max_steps=20, new_per_iteration=20, selection="fresh"
    )
    run, pool = RunDir(tmp_path), world_instructions(40, seed=40)
    write_pools(run.iteration(1), initial_pools(pool))

    def iterate() -> object:
        roles = build_roles(config, Ledger(tmp_path / "ledger.json"), ResponseCache(tmp_path / "c.sqlite"))
        return asyncio.run(run_iteration(direct_effects(config, roles), config, run, 1))

    outcome = iterate()
    probes = read_jsonl(run.iteration(1).probes, Probe)
    parents = {i.id for i in pool}
    assert 0.8 * len(pool) <= len(probes) <= len(pool)  # a few siblings fail the post-filters
    assert all(
        p.parent_id in parents and p.sibling.instruction.lower() not in {i.instruction.lower() for i in pool}
        for p in probes
    )
    labels = {p.parent_id: p.judgement.label for p in probes}
    assert all(labels[i.id] == "hard" for i in outcome.discrimination.split.hard)
    summary = json.loads(run.iteration(1).summary.read_text())
    assert summary["selection"]["selection"] == "fresh" and summary["selection"]["probed"] == len(probes)
    # one generator request per probed item on top of generation's; two referee orders per sibling
    assert world.stats.received["generator"] >= len(pool) + summary["requested"]
    assert world.stats.received["teacher"] >= len(pool) + len(probes)
    paid = dict(world.stats.received)
    again = iterate()  # the same iteration again: every call of the strategy is replayed, none re-sent
    assert dict(world.stats.received) == paid
    assert [i.id for i in again.discrimination.split.hard] == [
        i.id for i in outcome.discrimination.split.hard
    ]
