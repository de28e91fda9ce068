"""Prefect tasks of the evaluation: FastChat-style review and reference batches, lm-evaluation-harness on
a checkpoint, and the published report (result.json, report.md with plots, and the same as Prefect
artifacts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

from lion_core.chat import ChatClient
from lion_core.evaluation.harness import run_harness
from lion_core.evaluation.protocols import ReviewItem, reference_answers, review_all
from lion_core.evaluation.report import embed_images, write_eval_report
from lion_core.records import Instruction, Judgement, Response
from lion_core.run.rundir import write_json
from tasks.api import api_task


@api_task(name="review-batch", task_run_name="review-batch-{first}")
async def review_batch(
    client: ChatClient, endpoint: str, items: list[ReviewItem], first: int
) -> list[Judgement]:
    """FastChat-style two-order reviews of one batch of (id, question, category, reference, candidate)."""
    return await review_all(client, items)


@api_task(name="reference-batch", task_run_name="reference-batch-{first}")
async def reference_batch(
    client: ChatClient, endpoint: str, items: list[Instruction], first: int
) -> list[Response]:
    """The vicuna protocol's reference answers to one batch of questions (FastChat's ChatGPT baseline:
    the bare question, its system prompt, T 1.0)."""
    return await reference_answers(client, items)


@task(name="lm-eval-harness", cache_policy=INPUTS + TASK_SOURCE, persist_result=True)
def harness_task(checkpoint: str, tasks: list[str], precision: str, fingerprint: str) -> dict:
    """lm-evaluation-harness on a checkpoint (zero-shot)."""
    return run_harness(Path(checkpoint), tasks, precision=precision)


@task(name="eval-report", cache_policy=NO_CACHE)
def publish(result: dict[str, Any], out: Path) -> None:
    """result.json, report.md with plots, and the same as Prefect artifacts."""
    write_json(out / "result.json", result)
    report = write_eval_report(result, out)
    create_markdown_artifact(
        embed_images(report.read_text(encoding="utf-8"), out),
        key="lion-eval-report",
        description=str(report.resolve()),
    )
    if "judge" in result:
        rows = [
            {"category": c, "relative %": round(v, 1)} for c, v in result["judge"]["per_category"].items()
        ]
        create_table_artifact(
            rows, key="lion-eval-relative", description=f"overall {result['judge']['overall']:.1f}%"
        )
