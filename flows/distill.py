"""The top flow: Lion's adversarial loop over iterations, stopping early at equilibrium.

Run as:  lion run configs/openai.yaml      (or `lion demo` on the offline world)

The config model is the flow's only parameter, so the Prefect UI renders it as a form. Task results
persist under RUN/.prefect-results and replies in the response cache: re-running the same command on
the same run directory resumes where it stopped and pays for nothing twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.fanout import in_run_dir
from flows.iteration import iteration
from lion_core.config import LionConfig, dump_config, load_config
from lion_core.ledger import BudgetExceededError
from lion_core.pools import initial_pools, write_pools
from lion_core.records import read_instructions
from lion_core.rundir import RunDir, preflight
from tasks.artifacts import run_report


def prepare_first_pools(config: LionConfig, run: RunDir) -> None:
    """RUN/iter_1 pools from the seed file (once; a resumed run keeps them)."""
    first = run.iteration(1)
    if (first.root / "cache_pool.jsonl").exists():
        return
    seed = read_instructions(config.pools.seed_path, config.pools.format)
    if config.pools.max_seed is not None:
        seed = seed[: config.pools.max_seed]
    write_pools(first.root, initial_pools(seed))


@flow(name="distill")
async def distill(config: LionConfig) -> list[dict[str, Any]]:
    """Iterations of imitation → discrimination → generation; the report after each."""
    logger = get_run_logger()
    preflight(config)
    run = RunDir(config.run_dir)
    dump_config(config, run.config)
    prepare_first_pools(config, run)
    summaries = []
    try:
        for k in range(1, config.loop.iterations + 1):
            summaries.append(await in_run_dir(config, iteration)(config, k))
            run_report(str(run.root))
            logger.info("iteration %d: hard share %.1f%%", k, 100 * summaries[-1]["hard_share"])
            if summaries[-1]["stopped"]:
                logger.info("stopping early: %s", summaries[-1]["stopped"])
                break
    except BudgetExceededError as err:
        logger.error("stopped cleanly before exceeding the budget: %s", err)
        run_report(str(run.root))
        raise
    return summaries


@flow(name="distill-from-file")
async def distill_from_file(config_path: str, run_dir: str | None = None) -> list[dict[str, Any]]:
    """The distill flow with its config read from a YAML file (for deployments and schedules)."""
    config = load_config(config_path)
    if run_dir is not None:
        config.run_dir = Path(run_dir)
    return await distill(config)
