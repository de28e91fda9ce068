"""flows/workspace.py: a deployment's pull step moves into the clone."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.paths import REPO


def test_the_pull_step_moves_into_the_clone_or_names_lion_repo(tmp_path: Path, monkeypatch) -> None:
    from flows.workspace import set_repository_directory

    monkeypatch.chdir(tmp_path)  # where a worker starts a flow run: a temporary directory
    assert set_repository_directory("") == {"directory": str(REPO)}  # $LION_REPO unset: this clone
    assert Path.cwd() == REPO
    assert set_repository_directory(str(REPO)) == {"directory": str(REPO)}
    with pytest.raises(FileNotFoundError, match=f"LION_REPO={tmp_path}: not a clone"):
        set_repository_directory(str(tmp_path))
