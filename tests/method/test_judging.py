"""What the referee judges each iteration, through the one body of the method in plain Python against
the offline world: the whole Cache Pool (the paper), a sample of it (`referee.sample`), or nothing at all
(the imitation baseline, `loop.selection: uniform`) — and the student answers only what is judged."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from random import Random

from lion_core.api.cache import ResponseCache
from lion_core.api.ledger import Ledger
from lion_core.config import LionConfig
from lion_core.method.direct import build_roles, distill
from lion_core.method.loop import base_checkpoint
from lion_core.records import Instruction, Judgement, PreferencePair, Response, read_jsonl, write_jsonl
from lion_core.run.rundir import RunDir
from lion_core.student.score import read_losses
from lion_core.world.families import sample_tasks
from lion_core.world.server import WorldServer


def config_for(world: WorldServer, tmp_path: Path, checkpoint: Path, **settings) -> LionConfig:
    """Two iterations of 20 new instructions on a pool of 120 world tasks, the tiny student barely trained."""
    seed = tmp_path / "seed.jsonl"
    tasks = sample_tasks(120, Random(3), levels=(1, 2))
    write_jsonl(seed, [Instruction(id=f"s{i}", instruction=t.instruction) for i, t in enumerate(tasks)])
    endpoint = {"base_url": world.url, "model": "world", "max_tokens": 64}
    loop = {"iterations": 2, "new_per_iteration": 20, "min_words": 1, "seed": 0, **settings.pop("loop", {})}
    student = {
        "model_path": checkpoint,
        "finetune": "full",
        "prompt_template": "compact",
        "max_steps": 2,
        "train_batch_size": 16,
        "max_length": 64,
        "max_new_tokens": 8,
        **settings.pop("student", {}),
    }
    return LionConfig(
        run_dir=tmp_path / "run",
        teacher=endpoint,
        referee={**endpoint, **settings.pop("referee", {})},
        generator=endpoint,
        student=student,
        pools={"seed_path": seed},
        loop=loop,
    )


def run(config: LionConfig) -> list[dict]:
    roles = build_roles(
        config, Ledger(RunDir(config.run_dir).ledger), ResponseCache(config.run_dir / "c.sqlite")
    )
    return asyncio.run(distill(config, roles))


def ids(path: Path, kind=Instruction) -> list[str]:
    return [r.id for r in read_jsonl(path, kind)]


def test_a_sampled_referee_judges_only_the_sample_and_the_student_answers_only_it(
    world: WorldServer, tmp_path: Path, tiny_student_path: Path
) -> None:
    sample = {"size": 30, "min_per_stratum": 10}
    config = config_for(
        world, tmp_path, tiny_student_path, referee={"sample": sample, "skip_identical": False}
    )
    summaries = run(config)
    folder = RunDir(config.run_dir)
    referee_requests = 0
    for k, summary in enumerate(summaries, start=1):
        it = folder.iteration(k)
        judged = ids(it.judged_pool)
        assert summary["judged"] == len(judged) < summary["cache_pool"]
        assert ids(it.file("student"), Response) == judged  # the student answered the sample alone
        assert ids(it.file("judgements"), Judgement) == judged
        assert set(ids(it.file("hard")) + ids(it.file("easy"))) <= set(judged)  # parents only from it
        parents = {i.parent_id for i in read_jsonl(it.file("generated"), Instruction)}
        assert parents <= set(judged)
        pairs = read_jsonl(it.pairs, PreferencePair)  # the verdicts, as free preference pairs
        verdicts = {j.id: j for j in read_jsonl(it.file("judgements"), Judgement)}
        assert {p.id for p in pairs} == {i for i, j in verdicts.items() if j.gap is not None and j.gap > 0}
        low, high = summary["hard_share_ci"]
        assert low <= summary["hard_share"] <= high
        referee_requests += summary["usage"]["referee"]["requests"]
    assert len(ids(folder.iteration(2).judged_pool)) == 20 + 30  # the newest generation whole + 30 older
    assert referee_requests >= 2 * sum(s["judged"] for s in summaries)  # two orders each (and repairs)
    sent = world.stats.requests
    again = run(config)  # a re-run draws the same sample and pays nothing
    assert world.stats.requests == sent and [s["judged"] for s in again] == [s["judged"] for s in summaries]


def test_the_imitation_baseline_calls_no_referee_and_leaves_the_cache_pool_unanswered(
    world: WorldServer, tmp_path: Path, tiny_student_path: Path
) -> None:
    config = config_for(world, tmp_path, tiny_student_path, loop={"selection": "uniform"})
    summaries = run(config)
    assert world.stats.received.get("referee", 0) == 0
    for k, summary in enumerate(summaries, start=1):
        it = RunDir(config.run_dir).iteration(k)
        assert not it.file("student").exists() and summary["judged"] == 0
        assert summary["hard"] + summary["easy"] == summary["cache_pool"]  # every item a candidate parent
        assert "referee" not in summary["usage"]
    assert json.loads(RunDir(config.run_dir).iteration(2).summary.read_text())["generated"] == 20


def test_progress_selects_on_the_students_own_loss_without_a_referee(
    world: WorldServer, tmp_path: Path, tiny_student_path: Path
) -> None:
    config = config_for(world, tmp_path, tiny_student_path, loop={"selection": "progress"})
    summaries = run(config)
    assert world.stats.received.get("referee", 0) == 0
    it = RunDir(config.run_dir).iteration(1)
    before, after = read_losses(it.losses_before), read_losses(it.losses_after)
    assert set(before) == set(after) == set(ids(it.file("cache_pool")))
    drop = {i: before[i] - after[i] for i in before}
    hard = ids(it.file("hard"))
    assert len(hard) == 60 and min(drop[i] for i in hard) >= max(drop[i] for i in ids(it.file("easy")))
    assert summaries[0]["selection"]["mean_loss_drop"] > 0  # the fine-tune taught something


PREFERENCE = {"objective": "sft+dpo", "preference": {"learning_rate": 3e-3, "max_steps": 3, "pairs": "all"}}


def test_the_preference_stage_trains_on_the_verdicts_and_the_next_iteration_continues_from_it(
    world: WorldServer, tmp_path: Path, tiny_student_path: Path
) -> None:
    config = config_for(world, tmp_path, tiny_student_path, student=PREFERENCE)
    summaries = run(config)
    folder = RunDir(config.run_dir)
    for k, summary in enumerate(summaries, start=1):
        it = folder.iteration(k)
        pairs = read_jsonl(it.pairs, PreferencePair)
        assert summary["preference"]["pairs"] == len(pairs) > 0 and summary["preference"]["steps"] == 3
        assert all(p.source == "referee" for p in pairs)
        assert it.final_student == it.preferred and (it.preferred / "config.json").exists()
    assert base_checkpoint(config, folder, 2) == folder.iteration(1).preferred  # iteration 2 began from it
    stamps = [(folder.iteration(k).preferred / "lion_fingerprint.json").stat().st_mtime_ns for k in (1, 2)]
    sent = world.stats.requests
    run(config)  # resumes: nothing paid, no stage trained again
    assert world.stats.requests == sent
    assert [
        (folder.iteration(k).preferred / "lion_fingerprint.json").stat().st_mtime_ns for k in (1, 2)
    ] == stamps


def test_without_a_referee_the_preference_stage_prefers_the_teacher_to_the_students_own_answers(
    world: WorldServer, tmp_path: Path, tiny_student_path: Path
) -> None:
    config = config_for(world, tmp_path, tiny_student_path, loop={"selection": "uniform"}, student=PREFERENCE)
    summaries = run(config)
    assert world.stats.received.get("referee", 0) == 0
    it = RunDir(config.run_dir).iteration(1)
    pairs = read_jsonl(it.pairs, PreferencePair)
    assert pairs and all(p.source == "self" and p.chosen != p.rejected for p in pairs)
    assert {p.id for p in pairs} <= set(ids(it.file("train_pool")))  # the student answered its Train Pool
    assert summaries[0]["preference"]["pairs"] == len(pairs)
