"""Prefect artifacts of a run: per-iteration table, hardest instructions, markdown report, progress."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import (
    acreate_progress_artifact,
    aupdate_progress_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE

from lion_core.run.report import count_table, file_names, markdown_table, publish_report, table_rows
from lion_core.run.rundir import RunDir


def iteration_markdown(run: RunDir, summary: dict[str, Any]) -> str:
    """The iteration's report: its table row, the split, generation notes, the paths of its files (named,
    not linked: the Prefect UI cannot open them, and browsers block file:// links)."""
    k = summary["iteration"]
    lines = [
        f"# Lion iteration {k} of `{run.root.name}`\n",
        markdown_table(table_rows([summary])),
        f"Order disagreement (position bias): {summary.get('order_disagreement', 0):.1%}\n",
        "## Gap histogram (teacher − student score)\n",
        count_table(summary.get("gap_histogram", {}), "gap"),
        "## Post-filter rejections of generated instructions\n",
        count_table(summary.get("postfilter_rejections", {}), "reason"),
        *(f"> {note}\n" for note in summary.get("notes", [])),
        f"## Files (in `{run.root.resolve()}`)\n",
        *(f"- `{name}`" for name in file_names(run, k)),
    ]
    return "\n".join(lines) + "\n"


@task(name="iteration-artifacts", cache_policy=NO_CACHE)
def iteration_artifacts(run_root: str, summary: dict[str, Any], hardest: list[dict[str, Any]]) -> None:
    """Table, hardest-instructions table and markdown report of one iteration, in the Prefect UI."""
    run = RunDir(Path(run_root))
    k = summary["iteration"]
    create_table_artifact(
        table_rows([summary]), key="lion-iteration", description=f"Lion iteration {k} of {run.root.name}"
    )
    create_table_artifact(
        hardest or [{"id": "-", "gap": "-", "instruction": "no scorable instruction"}],
        key="lion-hardest",
        description=f"{run.root.name}, iteration {k}: the hardest instructions (largest gap)",
    )
    create_markdown_artifact(
        iteration_markdown(run, summary),
        key="lion-iteration-report",
        description=f"Lion iteration {k} of {run.root.name}",
    )


@task(name="run-report", cache_policy=NO_CACHE)
def run_report(run_root: str) -> str:
    """RUN/report.md and plots for all iterations, also as a markdown artifact (plots embedded)."""
    run = RunDir(Path(run_root))
    path, markdown = publish_report(run)
    create_markdown_artifact(
        markdown, key="lion-run-report", description=f"Lion run report of {run.root.name}: {path.resolve()}"
    )
    return str(path)


class Progress:
    """A progress artifact for a long fan-out, advanced as batches finish."""

    def __init__(self, description: str, total: int) -> None:
        self.description = description
        self.total = max(1, total)
        self.done = 0
        self.artifact_id = None
        self._lock = asyncio.Lock()  # updates land in order, so the last one says 100%

    async def start(self) -> Progress:
        self.artifact_id = await acreate_progress_artifact(0.0, description=self.description)
        return self

    async def advance(self, n: int) -> None:
        self.done += n
        if self.artifact_id is None:
            return
        async with self._lock:
            await aupdate_progress_artifact(self.artifact_id, min(100.0, 100.0 * self.done / self.total))
