"""The `lion` command line: clear one-line errors and non-zero exit codes on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import EXIT_BAD_INPUT, app

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_run_without_the_key_fails_before_any_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = CliRunner().invoke(
        app, ["run", str(CONFIGS / "openai.yaml"), "--run-dir", str(tmp_path / "run")]
    )
    assert result.exit_code == EXIT_BAD_INPUT
    assert "OPENAI_API_KEY" in result.output
    assert not (tmp_path / "run").exists()


def test_run_with_a_bad_config_names_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("loop:\n  tau: high\n")
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "bad.yaml:2: field 'loop.tau'" in " ".join(result.output.split())


def test_report_of_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "no finished iteration" in result.output


def test_eval_with_nothing_to_do_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", str(CONFIGS / "demo.yaml"), "--candidate", str(tmp_path)])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "nothing to evaluate" in result.output


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    for command in ("demo", "run", "report", "eval", "world"):
        assert command in result.output
