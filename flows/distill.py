"""The top flow: Lion's adversarial loop over iterations, stopping early at equilibrium.

Run as:  lion run configs/openai.yaml      (or `lion demo` on the offline world)

The config model is the flow's only parameter, so the Prefect UI renders it as a form. The loop is
lion_core.method.loop.run_loop, each iteration the `iteration` subflow. Task results persist under
RUN/.prefect-results and replies in the response cache: re-running the same command on the same run
directory resumes where it stopped and pays for nothing twice — the way to retry any run, the UI's
Retry of a deployment run included (docs/prefect.md, "Retrying a run").

Before any work the flow takes the run directory's lock, asks each endpoint once and checks the run
directory for damage — as `lion run` does, so that a deployment run does too.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.fanout import in_run_dir
from flows.iteration import final_round, iteration
from lion_core.api.budget import BudgetExceededError
from lion_core.api.ledger import run_ledger
from lion_core.config import LionConfig, dump_config, load_config
from lion_core.method.loop import run_loop
from lion_core.records import RecordError
from lion_core.run.rundir import RunDir, RunLock, check_endpoints, preflight, response_cache
from lion_core.run.state import check_run_state
from tasks.artifacts import run_report

# How to retry a run, as its log says it: the same run directory resumes (CLI runs have no UI Retry).
RESUME_HINT = (
    "to retry this run after a failure or a stop, start it again on the same run directory: "
    "`lion run {config}` (or the same `lion demo`, or the deployment run's Retry); it resumes, paying "
    "nothing twice"
)


def run_name() -> str:
    """The flow run's name: the run directory's name (runs/demo → demo), so that runs of different run
    directories tell apart in the UI (a deployment's config may still be a plain mapping here)."""
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    config = parameters.get("config")
    if isinstance(config, LionConfig):
        return config.run_dir.name
    if isinstance(config, dict):
        return Path(str(config.get("run_dir", LionConfig().run_dir))).name
    return Path(str(parameters.get("run_dir") or parameters.get("config_path") or "lion")).stem


@flow(name="distill", flow_run_name=run_name)
async def distill(config: LionConfig) -> list[dict[str, Any]]:
    """Iterations of imitation → discrimination → generation (then loop.final_imitation's round); the
    report after each."""
    logger = get_run_logger()
    preflight(config)
    run = RunDir(config.run_dir)
    with RunLock(run):  # a deployment run's own; inside `lion run`, the command's
        check_endpoints(config)
        for note in check_run_state(config):
            logger.warning(note)
        settle_unrecorded(config)  # what a killed run left in flight
        dump_config(config, run.config)
        logger.info(RESUME_HINT.format(config=run.config))
        try:
            return await iterations(config, run)
        finally:
            settle_unrecorded(config, quietly=True)


def settle_unrecorded(config: LionConfig, quietly: bool = False) -> None:
    """Close the run's requests cut off in flight as `unrecorded`, at their worst case (the run's lock
    is held: nothing else of the run sends), and rewrite ledger.json. `quietly` on the way out of a
    failure: a full disk must not hide it (the next run settles them)."""
    try:
        ledger = run_ledger(RunDir(config.run_dir).ledger, response_cache(config))
        ledger.settle_unrecorded()
        ledger.save()
    except (OSError, sqlite3.Error, RecordError):
        if not quietly:
            raise


async def iterations(config: LionConfig, run: RunDir) -> list[dict[str, Any]]:
    """The loop's iterations as subflows, the report after each."""
    logger = get_run_logger()

    async def iterate(k: int) -> dict[str, Any]:
        return await in_run_dir(config, iteration)(config, k)

    async def final(k: int) -> dict[str, Any]:
        return await in_run_dir(config, final_round)(config, k)

    def after(summary: dict[str, Any]) -> None:
        run_report(str(run.root))
        if summary.get("final_imitation"):
            logger.info(
                "final imitation round %d: trained on %d", summary["iteration"], summary["train_pool"]
            )
        else:
            logger.info("iteration %d: hard share %.1f%%", summary["iteration"], 100 * summary["hard_share"])
        if summary["stopped"]:
            logger.info("stopping early: %s", summary["stopped"])

    try:
        return await run_loop(
            config,
            iterate,
            after,
            lambda k: logger.info("iteration %d finished earlier with the same inputs: not replayed", k),
            final,
        )
    except BudgetExceededError as err:
        logger.error("stopped cleanly before exceeding the budget: %s", err)
        run_report(str(run.root))
        raise


@flow(name="distill-from-file", flow_run_name=run_name)
async def distill_from_file(config_path: str, run_dir: str | None = None) -> list[dict[str, Any]]:
    """The distill flow with its config read from a YAML file (for deployments and schedules)."""
    config = load_config(config_path)
    if run_dir is not None:
        config.run_dir = Path(run_dir)
    return await distill(config)
