"""One Lion iteration as a Prefect subflow: imitation → discrimination → generation (the paper's figure).

Each stage is a short function of named tasks; API calls fan out in batches (one task each, retried
alone), the student's work is one cached task per step. Files go to RUN/iter_K/ (see lion_core.rundir).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow

from flows.fanout import batch_task, fan_out
from lion_core.config import LionConfig
from lion_core.discrimination import Split
from lion_core.generation import GenerationRequest, GenerationResult
from lion_core.ledger import Ledger
from lion_core.llm import Completion, ResponseCache
from lion_core.loop import (
    Roles,
    answers_for,
    build_roles,
    cache_path,
    generate_new,
    stop_after_discrimination,
    stop_after_generation,
    training_answers,
)
from lion_core.pools import Pools, read_pools
from lion_core.records import Judgement, Response, read_jsonl, write_jsonl
from lion_core.report import hardest
from lion_core.rundir import RunDir, write_json
from lion_core.student.checkpoint import fingerprint, has_key, training_key
from lion_core.student.data import sft_pairs
from lion_core.student.train import TrainResult
from lion_core.teacher import cut_answers_note
from tasks.api import endpoint_id, generator_batch, referee_batch, teacher_batch
from tasks.artifacts import iteration_artifacts
from tasks.stages import split_task, update_pools_task
from tasks.student import finetune_task, heldout_task, student_answers_task


def earlier_answers(run: RunDir, k: int) -> list[Response]:
    """The teacher's answers paid for in earlier iterations (they cover the previous Cache Pool)."""
    return read_jsonl(run.iteration(k - 1).file("teacher"), Response) if k > 1 else []


async def imitation(
    config: LionConfig, roles: Roles, run: RunDir, k: int, pools: Pools, known: list[Response]
) -> tuple[list[Response], TrainResult]:
    """The teacher answers the Train Pool; the student is fine-tuned on the round's data."""
    teacher = roles.teacher
    answers = await fan_out(
        lambda first, batch: batch_task(config, teacher_batch)(teacher, endpoint_id(teacher), batch, first),
        pools.train_pool,
        config.loop.batch_size,
        "teacher answers, Train Pool",
        roles.ledger,
    )
    data = run.iteration(k).root / "sft.jsonl"
    pairs = sft_pairs(config.student.prompt_template, training_answers(config, pools, answers, known))
    write_jsonl(data, [{"prompt": p.prompt, "response": p.response} for p in pairs])
    base = config.student.model_path if k == 1 else run.iteration(k - 1).student
    key = training_key(base, data, config.student, config.loop.seed)
    out = run.iteration(k).student
    args = (str(base), str(data), str(out), config.student, config.loop.seed, key)
    result = finetune_task(*args)
    if not has_key(out, key):  # a cached result whose checkpoint was removed: train again
        result = finetune_task.with_options(refresh_cache=True)(*args)
    return answers, TrainResult(**result)


async def discrimination(
    config: LionConfig, roles: Roles, run: RunDir, k: int, pools: Pools, teacher_answers: list[Response]
) -> tuple[list[Response], list[Judgement], Split]:
    """The student answers the Cache Pool; the referee judges both orders; the pool splits hard/easy."""
    it, referee = run.iteration(k), roles.referee
    write_jsonl(it.file("teacher"), teacher_answers)
    student_out = student_answers_task(str(it.student), pools.cache_pool, config.student, config.loop.seed)
    write_jsonl(it.file("student"), student_out)
    items = [
        (i.id, i.text, t.output, s.output) for i, t, s in zip(pools.cache_pool, teacher_answers, student_out)
    ]
    loop = config.loop
    judgements = await fan_out(
        lambda first, batch: batch_task(config, referee_batch)(
            referee, endpoint_id(referee), batch, loop.tau, loop.referee_retries, first
        ),
        items,
        loop.batch_size,
        "referee judgements, Cache Pool × 2 orders",
        roles.ledger,
    )
    split = split_task(pools.cache_pool, judgements)
    write_jsonl(it.file("judgements"), judgements)
    write_jsonl(it.file("hard"), split.hard)
    write_jsonl(it.file("easy"), split.easy)
    return student_out, judgements, split


async def generation(
    config: LionConfig, roles: Roles, run: RunDir, k: int, pools: Pools, split: Split
) -> GenerationResult:
    """N new instructions from hard and easy parents, novel against the Cache Pool; pools updated."""
    generator, loop = roles.generator, config.loop

    async def ask(requests: list[GenerationRequest]) -> list[Completion]:
        return await fan_out(
            lambda first, batch: batch_task(config, generator_batch)(
                generator, endpoint_id(generator), batch, first
            ),
            requests,
            loop.batch_size,
            "generator requests",
            roles.ledger,
        )

    result = await generate_new(ask, config, k, pools.cache_pool, split)
    write_jsonl(run.iteration(k).file("generated"), result.kept)
    if result.kept:  # else the loop stops here: no empty Train Pool for an iteration k + 1
        update_pools_task(pools, result.kept, str(run.iteration(k + 1).root))
    return result


def summarize(
    k: int,
    pools: Pools,
    split: Split,
    gen: GenerationResult | None,
    notes: list[str],
    train: TrainResult,
    usage: dict,
    heldout: dict | None,
    stopped: str | None,
    seconds: float,
) -> dict[str, Any]:
    """The iteration's statistics (RUN/iter_K/summary.json; the report is rendered from these)."""
    return {
        "iteration": k,
        "train_pool": len(pools.train_pool),
        "cache_pool": len(pools.cache_pool),
        **{
            key: split.stats[key]
            for key in ("hard", "easy", "unscorable", "mean_gap", "order_disagreement", "gap_histogram")
        },
        "hard_share": split.hard_share,
        **(
            {}
            if gen is None
            else {
                "generated": len(gen.kept),
                "requested": gen.requested,
                "novelty_rejections": gen.novelty_rejections,
                "postfilter_rejections": dict(gen.postfilter_rejections),
            }
        ),
        "notes": notes,
        "train": {
            "steps": train.steps,
            "examples": train.examples,
            "seconds": round(train.seconds, 2),
            "loss_first": train.losses[0] if train.losses else None,
            "loss_last": train.losses[-1] if train.losses else None,
        },
        "usage": usage,
        "heldout": heldout,
        "stopped": stopped,
        "seconds": round(seconds, 2),
    }


@flow(name="iteration", flow_run_name="iteration-{k}")
async def iteration(config: LionConfig, k: int) -> dict[str, Any]:
    """Iteration k: imitation → discrimination → generation; writes RUN/iter_K and RUN/iter_{K+1} pools."""
    started = time.perf_counter()
    run = RunDir(config.run_dir)
    pools = read_pools(run.iteration(k).root)
    ledger = Ledger(run.ledger, scope=f"iter_{k}")
    roles = build_roles(config, ledger, ResponseCache(cache_path(config)))
    try:
        known = earlier_answers(run, k)
        answers, train = await imitation(config, roles, run, k, pools, known)
        teacher_answers = answers_for(pools.cache_pool, known + answers)
        student_out, judgements, split = await discrimination(config, roles, run, k, pools, teacher_answers)
        stopped = stop_after_discrimination(config, split)
        gen = None if stopped else await generation(config, roles, run, k, pools, split)
        stopped = stopped or stop_after_generation(gen)
    finally:
        ledger.save()
    heldout = None
    if config.evaluation.heldout_path is not None:
        heldout = heldout_task(
            str(run.iteration(k).student),
            str(config.evaluation.heldout_path),
            config.student,
            fingerprint(run.iteration(k).student),
        )
    summary = summarize(
        k,
        pools,
        split,
        gen,
        cut_answers_note(answers, config.teacher.max_tokens) + (gen.notes if gen else []),
        train,
        ledger.scope_usage(f"iter_{k}"),
        heldout,
        stopped,
        time.perf_counter() - started,
    )
    write_json(run.iteration(k).summary, summary)
    iteration_artifacts(str(run.root), summary, hardest(judgements, teacher_answers, student_out))
    return summary
