"""Lion as plain Python, no Prefect: the method's effects as direct calls through the role clients, and
the whole run (`distill`) through the one body of the method (lion_core.method.loop)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from lion_core.api.build import build_client
from lion_core.api.cache import ResponseCache
from lion_core.api.ledger import Ledger
from lion_core.config import LionConfig, dump_config
from lion_core.method import referee, teacher
from lion_core.method.effects import Effects, JudgeItem, Roles
from lion_core.method.generation import asker
from lion_core.method.loop import final_imitation, run_iteration, run_loop
from lion_core.records import Judgement
from lion_core.run.report import write_report
from lion_core.run.rundir import RunDir, preflight
from lion_core.student.answers import answer_file
from lion_core.student.launch import run_finetune
from lion_core.student.preference import prefer
from lion_core.student.score import loss_file

ROLES = ("teacher", "referee", "generator")


def build_roles(config: LionConfig, ledger: Ledger, cache: ResponseCache) -> Roles:
    """One client per role from the config (keys from the environment; raises before any work). The
    referee's replies are served from the cache again only when they carry both score lines."""
    clients = {
        role: build_client(
            role,
            endpoint,
            ledger=ledger,
            cache=cache,
            budget=config.budget,
            accept=referee.readable if role == "referee" else None,
        )
        for role, endpoint in config.endpoints().items()
        if role in ROLES
    }
    return Roles(**clients, ledger=ledger)


def run_step(name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """A pure step called directly (the flow runs it as the task `name`)."""
    return fn(*args)


def direct_effects(
    config: LionConfig, roles: Roles, heldout: Callable[[Path], dict[str, Any]] | None = None
) -> Effects:
    """The effects as direct calls through the role clients (no Prefect)."""
    loop = config.loop

    async def judge(items: list[JudgeItem]) -> list[Judgement]:
        return await referee.judge_all(
            roles.referee,
            items,
            tau=loop.tau,
            retries=loop.referee_retries,
            skip_identical=config.referee.skip_identical,
        )

    def usage() -> dict[str, Any]:
        ledger = roles.ledger
        return ledger.scope_usage(ledger.scope) if ledger is not None and ledger.scope else {}

    return Effects(
        teacher=lambda items: teacher.answer_all(roles.teacher, items, send_inputs=loop.send_inputs),
        finetune=run_finetune,
        student=lambda checkpoint, questions, answers: answer_file(
            config.student, checkpoint, questions, answers, loop.seed, loop.send_inputs
        ),
        judge=judge,
        generator=asker(roles.generator),
        step=run_step,
        heldout=heldout,
        usage=usage,
        score=lambda checkpoint, answered, out: loss_file(config.student, checkpoint, answered, out),
        prefer=prefer,
    )


async def distill(
    config: LionConfig, roles: Roles, heldout: Callable[[Path], dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The whole run as plain Python (no Prefect) through the role clients: the pre-flight checks, the
    recorded config, the iterations, the report after each. The ledger, if any, is scoped per iteration
    and saved after each."""
    preflight(config)
    run, ledger = RunDir(config.run_dir), roles.ledger
    dump_config(config, run.config)
    fx = direct_effects(config, roles, heldout)

    async def scoped(k: int, body: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        if ledger is not None:
            ledger.scope = f"iter_{k}"
        try:
            return await body()
        finally:
            if ledger is not None:
                ledger.save()

    async def iterate(k: int) -> dict[str, Any]:
        return await scoped(k, lambda: summary_of(run_iteration(fx, config, run, k)))

    async def final(k: int) -> dict[str, Any]:
        return await scoped(k, lambda: final_imitation(fx, config, run, k))

    return await run_loop(config, iterate, lambda summary: write_report(run), final=final)


async def summary_of(outcome: Awaitable[Any]) -> dict[str, Any]:
    return (await outcome).summary
