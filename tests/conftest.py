"""Shared fixtures. Prefect settings are fixed before anything imports prefect."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="lion-prefect-home-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from lion_core.world.server import WorldServer

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public instruction data not found at {SHARED_DATA} (clone with ../shared beside it)")
    return SHARED_DATA


@pytest.fixture
def world():
    """A fresh offline world server on a free port."""
    with WorldServer(seed=0) as server:
        yield server


@pytest.fixture(scope="session")
def tiny_student_path(tmp_path_factory) -> Path:
    """A freshly built tiny student (shared by the session; tests copy it before training)."""
    from lion_core.world.student import build_tiny_student

    return build_tiny_student(tmp_path_factory.mktemp("tiny") / "student")
