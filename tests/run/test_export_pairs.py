"""`lion export --format preference`: the referee's verdicts leave the run as prompt/chosen/rejected pairs."""

from __future__ import annotations

from pathlib import Path

import datasets
from typer.testing import CliRunner

from lion_cli.main import app
from lion_cli.process import EXIT_BAD_INPUT
from lion_core.records import PreferencePair, write_jsonl
from lion_core.run.export_pairs import export_pairs
from lion_core.run.rundir import RunDir, write_json


def pair(k: int, n: int, label: str) -> PreferencePair:
    return PreferencePair(
        id=f"i{n}",
        iteration=k,
        prompt=f"Reverse {n}",
        chosen=f"{n}"[::-1],
        rejected="?",
        margin=3.0 if label == "hard" else 0.5,
        label=label,
        source="referee",
    )


def finished(run: RunDir, k: int, pairs: list[PreferencePair]) -> None:
    write_jsonl(run.iteration(k).pairs, pairs)
    write_json(run.iteration(k).summary, {"iteration": k})


def test_pairs_of_every_iteration_export_in_the_layout_preference_trainers_read(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    finished(run, 1, [pair(1, 10, "hard"), pair(1, 11, "easy")])
    finished(run, 2, [pair(2, 12, "hard")])
    exported = export_pairs(run.root, tmp_path / "out")
    assert (exported.rows, exported.hard, exported.per_iteration) == (3, 2, {1: 2, 2: 1})
    loaded = datasets.load_from_disk(str(tmp_path / "out" / "preference"))
    assert (
        loaded[0]["prompt"] == "Reverse 10" and loaded[0]["chosen"] == "01" and loaded[0]["rejected"] == "?"
    )
    assert {"prompt", "chosen", "rejected", "margin", "label", "iteration"} <= set(loaded.column_names)
    assert (tmp_path / "out" / "data" / "preference.parquet").exists()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "chosen" in card and "3 (iteration 1: 2, iteration 2: 1)" in card


def test_the_cli_exports_pairs_and_refuses_a_run_without_any(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    finished(run, 1, [pair(1, 10, "hard")])
    result = CliRunner().invoke(app, ["export", str(run.root), "--format", "preference"])
    assert result.exit_code == 0, result.output
    assert "exported 1 preference pairs (1 hard)" in result.output
    assert (run.preference_export / "preference").is_dir()
    empty = RunDir(tmp_path / "empty")
    write_json(empty.iteration(1).summary, {"iteration": 1})
    refused = CliRunner().invoke(app, ["export", str(empty.root), "--format", "preference"])
    assert refused.exit_code == EXIT_BAD_INPUT and "no preference pairs" in refused.output
    wrong = CliRunner().invoke(app, ["export", str(run.root), "--format", "jsonl"])
    assert wrong.exit_code == EXIT_BAD_INPUT and "one of instructions, preference" in wrong.output
