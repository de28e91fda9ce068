"""lion_core/run/report.py: reports as the Prefect UI shows them (plots embedded, no dead links, plain
table cells; the per-iteration artifact of tasks/artifacts.py too) and the loss curve of every
iteration."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from lion_core.records import write_jsonl
from lion_core.run.report import publish_report, table_rows
from lion_core.run.rundir import RunDir, write_json
from tasks.artifacts import iteration_markdown

LINK = re.compile(r"\]\(([^)]*)\)")  # the target of every markdown link and image
PNG_MAGIC = b"\x89PNG"


def summary(k: int) -> dict:
    return {
        "iteration": k,
        "train_pool": 10,
        "cache_pool": 10 * k,
        "hard": 6,
        "easy": 4,
        "unscorable": 0,
        "hard_share": 0.6 / k,
        "mean_gap": 2.0 / k,
        "generated": 10,
        "novelty_rejections": 3,
        "gap_histogram": {"[-9.0, -3.0)": 0, "[1.0, 3.0)": 6},
        "postfilter_rejections": {"too_short": 2, "blacklisted": 1},
        "order_disagreement": 0.1,
        "heldout": {"accuracy": 0.5, "per_family": {"reverse": 0.5}, "per_level": {"1": 0.5}},
        "notes": [],
    }


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    run = RunDir(tmp_path / "runs" / "demo")
    for k in (1, 2):
        write_json(run.iteration(k).summary, summary(k))
        write_jsonl(run.iteration(k).file("train_pool"), [])
    return run


def targets(markdown: str) -> list[str]:
    return LINK.findall(markdown)


def test_the_ui_report_embeds_its_plots_and_links_nothing_relative_or_file(run: RunDir) -> None:
    path, markdown = publish_report(run)
    images = targets(markdown)
    assert len(images) == len(list(run.plots.glob("*.png"))) == 4  # hard share, gap, held-out ×2
    for target in images:
        assert target.startswith("data:image/png;base64,")
        assert base64.b64decode(target.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "file://" not in markdown
    assert "`iter_1/train_pool.jsonl`" in markdown  # files are named, with the run directory's path
    assert str(run.root.resolve()) in markdown
    on_disk = path.read_text()  # RUN/report.md links relative to itself, which a file viewer resolves
    assert all((run.root / t).exists() for t in targets(on_disk))


def test_the_iteration_report_has_plain_cells_and_no_links(run: RunDir) -> None:
    markdown = iteration_markdown(run, summary(1))
    assert targets(markdown) == [] and "file://" not in markdown
    assert "{" not in markdown  # no Python dict printed
    assert "| too_short | 2 |" in markdown and "| [1.0, 3.0) | 6 |" in markdown
    assert "demo" in markdown.splitlines()[0]  # says which run it belongs to


def test_table_rows_hold_plain_values() -> None:
    for row in table_rows([summary(1), summary(2)]):
        assert all(isinstance(v, (int, float, str)) for v in row.values())


def trained_summary(k: int, losses: list[float]) -> dict[str, Any]:
    """A summary.json with the fine-tune's losses."""
    return {
        "iteration": k,
        "train_pool": 10,
        "cache_pool": 10,
        "hard": 5,
        "easy": 5,
        "unscorable": 0,
        "hard_share": 0.5,
        "mean_gap": 1.0,
        "train": {"steps": len(losses), "losses": losses},
        "heldout": None,
    }


def test_the_report_plots_the_loss_curve_of_every_iteration(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "runs" / "demo")
    write_json(run.iteration(1).summary, trained_summary(1, [3.0, 2.0, 1.5]))
    write_json(run.iteration(2).summary, trained_summary(2, [2.5, 1.2]))
    path, markdown = publish_report(run)
    curve = run.plots / "train_loss.png"
    assert curve.read_bytes().startswith(b"\x89PNG")
    assert "![train_loss](plots/train_loss.png)" in path.read_text()
    assert "![train_loss](data:image/png;base64," in markdown  # embedded in the UI's report


def test_no_loss_curve_without_losses(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "runs" / "old")
    write_json(run.iteration(1).summary, {**trained_summary(1, []), "train": {"steps": 0}})
    publish_report(run)
    assert not (run.plots / "train_loss.png").exists()
