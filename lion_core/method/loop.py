"""The one body of the Lion method: imitation → discrimination → generation → pools, over iterations.

Every stage receives its effects — teacher answers, fine-tune, student answers, referee judgements,
generator requests, named pure steps — as injected callables (`Effects`). The Prefect flow passes
batched, cached, retried tasks (flows/iteration.py); plain Python passes direct calls
(lion_core.method.direct); tests and benchmarks run this same body. Each iteration writes its files into
RUN/iter_K (lion_core.run.rundir) and its statistics into RUN/iter_K/summary.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from lion_core.config import LionConfig
from lion_core.method import sampling
from lion_core.method.decontamination import counted, decontaminated
from lion_core.method.discrimination import Split, second_order_changes
from lion_core.method.effects import Effects
from lion_core.method.generation import Ask, GenerationResult, generate
from lion_core.method.judging import judge_items, judged_items, recorded_losses, score_losses
from lion_core.method.novelty import NoveltyIndex
from lion_core.method.pairs import judged_pairs
from lion_core.method.pools import Pools, answers_for, initial_pools, next_pools, read_pools, write_pools
from lion_core.method.preference import preference_stage
from lion_core.method.probing import probe, recorded_evidence
from lion_core.method.selection import Evidence, needs_losses, needs_probes, needs_referee, selection
from lion_core.method.summary import Discrimination, IterationOutcome, final_imitation_summary, summarize
from lion_core.method.teacher import cut_answers_note
from lion_core.records import Instruction, Judgement, Response, read_instructions, read_jsonl, write_jsonl
from lion_core.run.resume import finished_summary, record_finished
from lion_core.run.rundir import IterationDir, RunDir, write_json
from lion_core.student.checkpoint import training_key
from lion_core.student.data import sft_pairs
from lion_core.student.launch import FinetuneJob
from lion_core.student.train import TrainResult


def training_answers(
    config: LionConfig, pools: Pools, new: list[Response], known: list[Response]
) -> list[Response]:
    """The round's data: the Train Pool's answers (the paper), or the whole Cache Pool's (everything
    taught so far: guards against forgetting)."""
    if config.student.train_data == "cumulative":
        return answers_for(pools.cache_pool, [*known, *new])
    return new


def base_checkpoint(config: LionConfig, run: RunDir, k: int) -> Path:
    """What iteration k fine-tunes: the configured student first, then the previous iteration's."""
    return Path(config.student.model_path) if k == 1 else run.iteration(k - 1).final_student


def earlier_answers(run: RunDir, k: int) -> list[Response]:
    """The teacher's answers paid for in earlier iterations (they cover the previous Cache Pool)."""
    return read_jsonl(run.iteration(k - 1).file("teacher"), Response) if k > 1 else []


async def imitation(
    fx: Effects, config: LionConfig, run: RunDir, k: int, pools: Pools, known: list[Response]
) -> tuple[list[Response], TrainResult]:
    """The teacher answers the Train Pool; the student is fine-tuned on the round's data, keyed by
    (base checkpoint, data hash, hyper-parameters, seed)."""
    answers = await fx.teacher(pools.train_pool)
    folder = run.iteration(k)
    round_data = training_answers(config, pools, answers, known)
    pairs = sft_pairs(config.student.prompt_template, round_data, send_inputs=config.loop.send_inputs)
    write_jsonl(folder.sft, [{"prompt": p.prompt, "response": p.response} for p in pairs])
    base = base_checkpoint(config, run, k)
    key = training_key(base, folder.sft, config.student, config.loop.seed)
    return answers, fx.finetune(
        FinetuneJob(base, folder.sft, folder.student, config.student, config.loop.seed, key)
    )


async def discrimination(
    fx: Effects, config: LionConfig, run: RunDir, k: int, pools: Pools, teacher_answers: list[Response]
) -> Discrimination:
    """The student answers the Cache Pool; the referee judges both orders; the selection step splits
    the pool into hard and easy. The teacher's answers are the ones already paid for (earlier iterations
    and this Train Pool): the Cache Pool is never re-sent to the teacher. With `referee.sample` only a
    sample is answered and judged (lion_core.method.sampling); a selection that ignores the referee
    (`uniform`, the imitation baseline) has nothing answered or judged."""
    folder, name = run.iteration(k), config.loop.selection
    write_jsonl(folder.file("teacher"), teacher_answers)
    judged = judged_items(config, run, k, pools.cache_pool) if needs_referee(name) else []
    sampled = config.referee.sample is not None and bool(judged)
    if sampled:
        write_jsonl(folder.judged_pool, judged)
    questions = folder.judged_pool if sampled else folder.file("cache_pool")
    student_out = fx.student(folder.student, questions, folder.file("student")) if judged else []
    teacher_judged = answers_for(judged, teacher_answers)
    items = judge_items(config, judged, teacher_judged, student_out)
    judgements = await fx.judge(items) if items else []
    write_jsonl(folder.file("judgements"), judgements)
    write_jsonl(folder.pairs, judged_pairs(judged, teacher_judged, student_out, judgements, k))
    if needs_probes(name):
        await probe(fx, config, run, k, pools.cache_pool, judged)
    if needs_losses(name):
        score_losses(fx, config, run.iteration(k), base_checkpoint(config, run, k))
    select = selection(name, config.loop.seed, config.loop)
    split = fx.step("discrimination", split_files, select, run, k, needs_probes(name), sampled)
    estimate = None
    if sampled:
        estimate = sampling.estimate(pools.cache_pool, split, config.referee.sample.confidence)
    changes = second_order_changes(judgements, config.loop.tau)
    return Discrimination(teacher_answers, student_out, judgements, split, estimate, changes)


def split_files(select: Callable[..., Split], run: RunDir, k: int, probed: bool, sampled: bool) -> Split:
    """The selection step on iteration k's files: the judged pool (the Cache Pool, or the judged sample
    when `sampled`) with its judgements (and, when `probed`, the probes so far; the student's losses when
    they were scored) in, hard and easy out."""
    folder = run.iteration(k)
    evidence = recorded_evidence(run, k) if probed else Evidence()
    if folder.losses_after.exists():
        evidence = replace(evidence, losses=recorded_losses(folder))
    items = read_jsonl(folder.judged_pool if sampled else folder.file("cache_pool"), Instruction)
    split = select(items, read_jsonl(folder.file("judgements"), Judgement), evidence)
    write_jsonl(folder.file("hard"), split.hard)
    write_jsonl(folder.file("easy"), split.easy)
    return split


async def generation(
    fx: Effects, config: LionConfig, run: RunDir, k: int, pools: Pools, split: Split
) -> tuple[GenerationResult, Pools | None]:
    """N new instructions from hard and easy parents, novel against the Cache Pool's instructions
    (without their inputs: a new instruction has none, and the original compares instructions alone);
    the next iteration's pools, written when any is kept (else None: the loop stops here, with no empty
    Train Pool for an iteration k + 1)."""
    result = await new_instructions(fx.generator, config, k, pools.cache_pool, split)
    write_jsonl(run.iteration(k).file("generated"), result.kept)
    if not result.kept:
        return result, None
    return result, fx.step("update-pools", update_pools, run.iteration(k), run.iteration(k + 1))


async def new_instructions(
    ask: Ask, config: LionConfig, k: int, cache_pool: list[Instruction], split: Split
) -> GenerationResult:
    """Generation's filters and rounds around the generator requests `ask` sends."""
    index = NoveltyIndex(config.loop.rouge_threshold, texts=[i.instruction for i in cache_pool])
    guard = decontaminated(index, config.decontamination)  # the index itself when decontamination is off
    return counted(await generate(ask, split.hard, split.easy, guard, config.loop, iteration=k), guard)


def update_pools(folder: IterationDir, following: IterationDir) -> Pools:
    """Train Pool ← generated; Cache Pool ← Cache Pool + generated: from one iteration's files to the
    next iteration's pools."""
    updated = next_pools(read_pools(folder), read_jsonl(folder.file("generated"), Instruction))
    write_pools(following, updated)
    return updated


def stop_after_discrimination(
    config: LionConfig, split: Split, hard_share: float | None = None
) -> str | None:
    """Why the loop stops before generation, or None: no scorable verdict to learn from, or
    equilibrium (the referee can no longer tell teacher and student apart) by `hard_share` (the Cache
    Pool's, estimated from a judged sample; default the split's)."""
    if not split.hard and not split.easy:
        return (
            f"no scorable judgements: all {len(split.unscorable)} Cache Pool instructions are unscorable "
            "(the reasons are in judgements.jsonl)"
        )
    bound, share = config.loop.equilibrium_hard_share, split.hard_share if hard_share is None else hard_share
    if bound and share < bound:
        return f"equilibrium: hard share {share:.1%} < {bound:.1%}"
    return None


def stop_after_generation(generation: GenerationResult | None) -> str | None:
    """Why the loop stops after generation, or None: no new instruction survived the filters."""
    if generation is None or generation.kept:
        return None
    return f"no new instruction kept: {generation.requested} requested, none passed the filters"


async def run_iteration(fx: Effects, config: LionConfig, run: RunDir, k: int) -> IterationOutcome:
    """Iteration k from its pools in RUN/iter_K: imitation → discrimination → generation; writes
    RUN/iter_K (files, checkpoint, summary.json) and, unless the loop stops, RUN/iter_{K+1}'s pools."""
    started = clock = time.perf_counter()
    stages: dict[str, float] = {}

    def lap(stage: str) -> None:
        nonlocal clock
        stages[stage] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()

    pools, known = read_pools(run.iteration(k)), earlier_answers(run, k)
    answers, train = await imitation(fx, config, run, k, pools, known)
    lap("imitation")
    judged = await discrimination(
        fx, config, run, k, pools, answers_for(pools.cache_pool, [*known, *answers])
    )
    pairs, preferred = preference_stage(fx, config, run.iteration(k), k, pools.cache_pool, judged)
    lap("discrimination")
    stopped = stop_after_discrimination(config, judged.split, judged.hard_share)
    gen, after = (None, None) if stopped else await generation(fx, config, run, k, pools, judged.split)
    stopped = stopped or stop_after_generation(gen)
    lap("generation")
    heldout = fx.heldout(run.iteration(k).final_student) if fx.heldout else None
    lap("heldout")
    notes = cut_answers_note(answers, config.teacher.max_tokens) + (gen.notes if gen else [])
    outcome = IterationOutcome(k, pools, train, judged, gen, after, stopped, notes, pairs, preferred)
    outcome.summary = summarize(outcome, fx.usage(), heldout)
    outcome.summary["seconds"] = recorded_seconds(run, k) or round(time.perf_counter() - started, 2)
    outcome.summary["stage_seconds"] = stages  # this run's wall time per stage (a replay is fast)
    write_json(run.iteration(k).summary, outcome.summary)
    record_finished(config, run, k)
    return outcome


async def final_imitation(fx: Effects, config: LionConfig, run: RunDir, k: int) -> dict[str, Any]:
    """`loop.final_imitation`: after the last iteration, round k = iterations + 1 is imitation alone —
    the teacher answers the last generated set (its Train Pool) and the student trains on it, so that
    every generated instruction is trained on (the paper's 70K: 52K + 3 × 6K). No discrimination, no
    generation; its own summary row (`final_imitation: true`)."""
    started = time.perf_counter()
    folder = run.iteration(k)
    pools, known = read_pools(folder), earlier_answers(run, k)
    answers, train = await imitation(fx, config, run, k, pools, known)
    write_jsonl(folder.file("teacher"), answers_for(pools.cache_pool, [*known, *answers]))
    heldout = fx.heldout(folder.student) if fx.heldout else None
    notes = cut_answers_note(answers, config.teacher.max_tokens)
    summary = dict(final_imitation_summary(k, pools, train, notes, fx.usage(), heldout))
    summary["seconds"] = recorded_seconds(run, k) or round(time.perf_counter() - started, 2)
    write_json(folder.summary, summary)
    record_finished(config, run, k, final=True)
    return summary


def wants_final_round(config: LionConfig, summaries: list[dict[str, Any]]) -> bool:
    """A final imitation round follows when asked for and every iteration ran (the last one generated
    the set it trains on; a loop that stopped early has none)."""
    return (
        config.loop.final_imitation
        and len(summaries) == config.loop.iterations
        and not summaries[-1]["stopped"]
    )


def recorded_seconds(run: RunDir, k: int) -> float | None:
    """The wall time of iteration k as the run that first finished it recorded (None before): a re-run
    replays a finished iteration from the caches, and its few seconds are not what the iteration took."""
    path = run.iteration(k).summary
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("seconds") if path.exists() else None
    except (OSError, ValueError, AttributeError):
        return None


def prepare_first_pools(config: LionConfig, run: RunDir) -> None:
    """RUN/iter_1 pools from the seed file (once; a resumed run keeps them)."""
    first = run.iteration(1)
    if first.file("cache_pool").exists():
        return
    seed = read_instructions(config.pools.seed_path, config.pools.format)
    if config.pools.max_seed is not None:
        seed = seed[: config.pools.max_seed]
    write_pools(first, initial_pools(seed))


async def run_loop(
    config: LionConfig,
    iterate: Callable[[int], Awaitable[dict[str, Any]]],
    after: Callable[[dict[str, Any]], None] | None = None,
    skipped: Callable[[int], None] | None = None,
    final: Callable[[int], Awaitable[dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Iterations 1..N through `iterate(k)` (which returns the iteration's summary), stopping early
    when one says why it stops, then `loop.final_imitation`'s round N + 1 through `final(k)`;
    `after(summary)` runs after each (reports, logs). Rounds that finished with the same inputs are not
    replayed (lion_core.run.resume): their summaries are read, and `skipped(k)` is told."""
    run = RunDir(config.run_dir)
    prepare_first_pools(config, run)
    summaries: list[dict[str, Any]] = []
    replaying = False  # once an iteration runs, every later one starts from new inputs
    for k in range(1, config.loop.iterations + 1):
        done = None if replaying else finished_summary(config, run, k)
        replaying = done is None
        if done is not None and skipped is not None:
            skipped(k)
        summaries.append(done if done is not None else await iterate(k))
        if after is not None:
            after(summaries[-1])
        if summaries[-1]["stopped"]:
            break
    if final is not None and wants_final_round(config, summaries):
        k = len(summaries) + 1
        done = None if replaying else finished_summary(config, run, k, final=True)
        if done is not None and skipped is not None:
            skipped(k)
        summaries.append(done if done is not None else await final(k))
        if after is not None:
            after(summaries[-1])
    return summaries
