"""What `lion` prints: one console, one-line errors, the per-iteration table, an evaluation's figures."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

# Wide when the output is not a terminal (logs, `make demo | tee`): the iteration table's 21 columns, every
# heading whole (tests/cli/test_output.py).
NOT_A_TERMINAL_WIDTH = 260
console = Console(width=None if sys.stdout.isatty() else NOT_A_TERMINAL_WIDTH)


def say_error(prefix: str, err: object) -> None:
    """One line on the console, however long (never wrapped, markup in the message printed as is)."""
    from rich.markup import escape

    console.print(f"[bold red]{prefix}:[/] {escape(' '.join(str(err).split()))}", soft_wrap=True)


def print_table(summaries: list[dict[str, Any]], title: str) -> None:
    """The per-iteration table (the same rows as the report and the Prefect artifact)."""
    from lion_core.run.report import table_rows

    rows = table_rows(summaries)
    table = Table(title=title)
    for column in rows[0] if rows else ["iter"]:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    if summaries and summaries[-1].get("stopped"):
        console.print(f"stopped after iteration {summaries[-1]['iteration']}: {summaries[-1]['stopped']}")


def print_eval(result: dict[str, Any]) -> None:
    """Headline figures of an evaluation."""
    if "judge" in result:
        judge = result["judge"]
        title = f"relative score of {result['candidate']} (candidate / reference, both orders)"
        table = Table(title=f"{title}, protocol {judge.get('protocol', 'lion')}")
        table.add_column("category")
        table.add_column("relative %", justify="right")
        for category, value in judge["per_category"].items():
            table.add_row(category, f"{value:.1f}")
        table.add_row("[bold]overall[/]", f"[bold]{judge['overall']:.1f}[/]")
        console.print(table)
        console.print(f"unscorable: {judge['unscorable']} of {judge['questions']}")
    if "world" in result:
        console.print(
            f"world exact match: {100 * result['world']['accuracy']:.1f}% "
            f"(teacher {100 * result['world_teacher']['accuracy']:.1f}%) per level "
            f"{ {k: round(100 * v, 1) for k, v in result['world']['per_level'].items()} } "
            f"on {result['world']['n']} tasks from {result['world_source']}"
        )
    for task, metrics in result.get("harness", {}).items():
        console.print(f"{task}: {metrics}")
    if "harness_error" in result:
        console.print(f"[bold red]harness:[/] {result['harness_error']}")
