"""What `lion` prints when its output is not a terminal (`make demo | tee`, a log file, CI)."""

from __future__ import annotations

import io

from rich.console import Console

from lion_cli import output
from tests.run.test_report import summary


def test_the_iteration_table_prints_every_heading_whole_when_not_on_a_terminal(monkeypatch) -> None:
    """The trial: with the order columns, the demo's table outgrew the 200 columns it was given and
    printed `deconta…`, `genera…`, `held-o…`."""
    captured = io.StringIO()
    monkeypatch.setattr(output, "console", Console(file=captured, width=output.NOT_A_TERMINAL_WIDTH))
    rows = [{**summary(k), "tokens": 596_343, "cache_pool": 2_000} for k in (1, 2, 3)]
    output.print_table(rows, "Lion — runs/demo")
    assert "…" not in captured.getvalue()
