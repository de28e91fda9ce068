"""Selection strategies: the pure rules (uniform, fresh, learnable, the probe sample) and a probing
strategy run through the loop's effects against the world, paid once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from random import Random

import pytest

from lion_core.api.cache import ResponseCache
from lion_core.api.ledger import Ledger
from lion_core.config import LionConfig, LoopConfig, StudentConfig
from lion_core.method.direct import build_roles, direct_effects
from lion_core.method.discrimination import make_judgement
from lion_core.method.loop import run_iteration
from lion_core.method.pools import initial_pools, write_pools
from lion_core.method.selection import (
    SELECTIONS,
    Evidence,
    Probe,
    lineage_roots,
    needs_probes,
    probe_sample,
    selection,
)
from lion_core.records import Instruction, read_jsonl
from lion_core.run.rundir import RunDir
from lion_core.world.families import sample_tasks
from lion_core.world.server import WorldServer

TAU = 1.0
WRONG, RIGHT = (1.0, 1.0), (9.0, 9.0)


def items(n: int, prefix: str = "s") -> list[Instruction]:
    return [
        Instruction(id=f"{prefix}{i}", instruction=t.instruction)
        for i, t in enumerate(sample_tasks(n, Random(n)))
    ]


def verdict(item_id: str, student: tuple[float, float]) -> object:
    return make_judgement(item_id, RIGHT, student, tau=TAU)


def probe(parent: Instruction, student: tuple[float, float]) -> Probe:
    sibling = Instruction(id=f"probe-{parent.id}", instruction=f"{parent.instruction} x", parent_id=parent.id)
    return Probe(parent_id=parent.id, sibling=sibling, judgement=verdict(sibling.id, student))


def test_every_config_choice_is_a_registered_strategy_and_only_fresh_ones_probe() -> None:
    choices = LoopConfig.model_fields["selection"].annotation.__args__
    assert set(choices) == set(SELECTIONS)
    assert [name for name in choices if needs_probes(name)] == ["fresh", "learnable"]


def test_uniform_ignores_the_referee_and_draws_at_the_generation_ratio() -> None:
    pool = items(400)
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


def test_fresh_labels_by_the_sibling_and_leaves_unprobed_items_out() -> None:
    pool = items(4)
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
    seeds = items(3)
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
    seeds = items(60)
    generated = [i.model_copy(update={"id": f"h{n}", "origin": "hard"}) for n, i in enumerate(items(40, "h"))]
    pool = seeds + generated
    sample = probe_sample(pool, 20, seed=0, k=2)
    assert sample == probe_sample(pool, 20, seed=0, k=2) != probe_sample(pool, 20, seed=0, k=3)
    assert sum(i.origin == "seed" for i in sample) == 12 and sum(i.origin == "hard" for i in sample) == 8
    assert probe_sample(pool, None, 0, 1) == pool


def fresh_config(world: WorldServer, student: Path, run_dir: Path) -> LionConfig:
    endpoint = {"base_url": world.url, "concurrency": 16}
    return LionConfig(
        run_dir=run_dir,
        teacher=endpoint,
        referee=endpoint,
        generator={**endpoint, "temperature": 1.0},
        student=StudentConfig(
            model_path=student,
            finetune="full",
            prompt_template="compact",
            learning_rate=3e-3,
            max_steps=20,
            train_batch_size=16,
            gradient_accumulation_steps=1,
            max_length=64,
            max_new_tokens=12,
        ),
        loop=LoopConfig(new_per_iteration=20, min_words=1, seed=0, selection="fresh"),
    )


@pytest.mark.slow
def test_fresh_probes_through_the_effects_and_pays_each_call_once(
    world: WorldServer, tiny_student_path: Path, tmp_path: Path
) -> None:
    config = fresh_config(world, tiny_student_path, tmp_path)
    run, pool = RunDir(tmp_path), items(40)
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


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def probing_config(run_dir: Path, port: int) -> LionConfig:
    from test_flows import small_config

    return small_config(run_dir, port, iterations=2, selection="learnable", learnable_patience=1)


def plain_probing_run(run_dir: Path) -> list[dict]:
    from flows.demo import prepare_world_files, world_server
    from lion_core.method.direct import distill
    from lion_core.run.rundir import response_cache
    from lion_core.world.evaluation import evaluate_on_world, read_world_set

    with world_server(probing_config(run_dir, 0)).start() as server:
        config = probing_config(run_dir, server.port)
        prepare_world_files(config)
        roles = build_roles(config, Ledger(RunDir(run_dir).ledger), ResponseCache(response_cache(config)))
        tasks = read_world_set(config.evaluation.heldout_path)
        return asyncio.run(
            distill(config, roles, lambda ckpt: evaluate_on_world(ckpt, tasks, config.student).to_dict())
        )


@pytest.mark.slow
def test_a_probing_strategy_runs_through_the_flow_like_the_paper_and_pays_once(
    harness, tmp_path: Path
) -> None:
    from test_flows import run_distill, without_timings

    from flows.demo import prepare_world_files, world_server

    with world_server(probing_config(tmp_path / "run", 0)).start() as server:
        config = probing_config(tmp_path / "run", server.port)
        prepare_world_files(config)
        summaries = run_distill(config)
        run = RunDir(config.run_dir)
        for k in (1, 2):
            assert read_jsonl(run.iteration(k).probes, Probe), k
            assert summaries[k - 1]["selection"]["selection"] == "learnable"
        sent = server.stats.requests
        assert [s["hard"] for s in run_distill(config)] == [s["hard"] for s in summaries]
        assert server.stats.requests == sent  # the probes' requests are cached like every other
    plain = plain_probing_run(tmp_path / "plain")
    # one body, with its probes: every iteration identical, summaries and probes byte for byte
    assert without_timings(plain) == without_timings(summaries)
    for k in (1, 2):
        flow_file = run.iteration(k).probes
        assert RunDir(tmp_path / "plain").iteration(k).probes.read_bytes() == flow_file.read_bytes(), k
