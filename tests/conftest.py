"""Session-wide fixtures. Prefect settings are fixed before anything imports prefect. The helpers the
tests share are in tests/support/ (fakes, configs, spawn, world, paths)."""

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

from lion_core import data as packaged_data
from lion_core.world.server import WorldServer

pytest.register_assert_rewrite("tests.support")  # the shared helpers' asserts explain their failures too


@pytest.fixture
def public_data() -> Path:
    """The folder of the public instruction sets shipped in the package (lion_core/data): always there."""
    return packaged_data.path("vicuna_bench_questions.jsonl").parent


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
