"""One Lion iteration as a Prefect subflow: imitation → discrimination → generation (the paper's figure).

The body is lion_core.method.loop.run_iteration — the same code plain Python runs. This flow only injects
its effects as Prefect tasks: API calls fan out in batches (one task each, retried alone, cached),
the student's work is one cached task per step, the pure steps are named tasks. Files go to RUN/iter_K.
"""

from __future__ import annotations

import itertools
from functools import partial
from pathlib import Path
from typing import Any

from prefect import Task, flow, task
from prefect.cache_policies import NO_CACHE

from flows.fanout import api_fan_out, batch_progress
from lion_core.api.cache import ResponseCache
from lion_core.api.ledger import Ledger
from lion_core.chat import ChatClient, Completion
from lion_core.config import LionConfig
from lion_core.method.direct import build_roles
from lion_core.method.effects import Effects, Roles
from lion_core.method.generation import GenerationRequest
from lion_core.method.loop import final_imitation, run_iteration
from lion_core.run.report import hardest
from lion_core.run.rundir import RunDir, response_cache
from lion_core.student.checkpoint import fingerprint
from tasks.api import generator_batch, referee_batch, teacher_batch
from tasks.artifacts import iteration_artifacts
from tasks.student import answers_step, finetune_step, heldout_task, preference_step, score_step


def run_step(name: str, fn, *args: Any) -> Any:
    """A pure step of the method as a named Prefect task (never cached: it is cheap and exact; its
    result, which may hold whole pools, is not persisted: the step wrote its files)."""
    return task(fn, name=name, cache_policy=NO_CACHE, persist_result=False)(*args)


def task_effects(config: LionConfig, roles: Roles) -> Effects:
    """The method's effects as Prefect tasks: batched API fan-outs, cached student steps."""
    loop, ledger = config.loop, roles.ledger
    for client in (roles.teacher, roles.referee, roles.generator):  # mode: batch shows each batch's progress
        if hasattr(client, "on_progress"):
            client.on_progress = batch_progress(Path(config.run_dir).name)

    def api(task: Task, client: ChatClient, description: str, **options: Any):
        return partial(api_fan_out, config, task, client, description=description, ledger=ledger, **options)

    rounds = itertools.count(1)  # generation asks in rounds until N are kept: name each round's batches

    async def ask(requests: list[GenerationRequest]) -> list[Completion]:
        r = next(rounds)
        name = f"generator-round-{r}-batch-{{first}}"
        return await api(generator_batch, roles.generator, f"generator requests, round {r}", run_name=name)(
            requests
        )

    return Effects(
        teacher=api(
            teacher_batch, roles.teacher, "teacher answers, Train Pool", send_inputs=loop.send_inputs
        ),
        finetune=finetune_step,
        student=partial(answers_step, config),
        judge=api(
            referee_batch,
            roles.referee,
            "referee judgements, Cache Pool × 2 orders",
            tau=loop.tau,
            retries=loop.referee_retries,
            skip_identical=config.referee.skip_identical,
        ),
        generator=ask,
        step=run_step,
        heldout=heldout_effect(config),
        score=partial(score_step, config),
        prefer=preference_step,
        usage=lambda: ledger.scope_usage(ledger.scope) if ledger and ledger.scope else {},
    )


def heldout_effect(config: LionConfig):
    """Exact match on the configured held-out world set (None when there is none)."""
    path = config.evaluation.heldout_path
    if path is None:
        return None
    return lambda checkpoint: heldout_task(
        str(checkpoint), str(path), config.student, fingerprint(checkpoint)
    )


@flow(name="iteration", flow_run_name="{config.run_dir.name}-iteration-{k}")
async def iteration(config: LionConfig, k: int) -> dict[str, Any]:
    """Iteration k: imitation → discrimination → generation; writes RUN/iter_K and RUN/iter_{K+1} pools."""
    run = RunDir(config.run_dir)
    ledger = Ledger(run.ledger, scope=f"iter_{k}")
    roles = build_roles(config, ledger, ResponseCache(response_cache(config)))
    try:
        outcome = await run_iteration(task_effects(config, roles), config, run, k)
    except BaseException:
        ledger.save_quietly()  # a view: a full disk here must not hide what failed
        raise
    ledger.save()
    judged = outcome.discrimination
    iteration_artifacts(
        str(run.root), outcome.summary, hardest(judged.judgements, judged.teacher, judged.student)
    )
    return outcome.summary


@flow(name="final-imitation", flow_run_name="{config.run_dir.name}-final-imitation-{k}")
async def final_round(config: LionConfig, k: int) -> dict[str, Any]:
    """loop.final_imitation's round k: the teacher answers the last generated set, the student trains on
    it (imitation only); writes RUN/iter_K."""
    run = RunDir(config.run_dir)
    ledger = Ledger(run.ledger, scope=f"iter_{k}")
    roles = build_roles(config, ledger, ResponseCache(response_cache(config)))
    try:
        return await final_imitation(task_effects(config, roles), config, run, k)
    finally:
        ledger.save()
