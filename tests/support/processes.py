"""Processes a test started, found by the spawner's mark in their environment (inherited by every
descendant, even one a dying parent left to PID 1): what a test checks is gone when it should be — the
student's vLLM engine and its children, say."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.support.spawn import MARKER, descends_from, processes


def mark_processes(monkeypatch: pytest.MonkeyPatch) -> str:
    """Put a fresh mark in this process's environment: everything it starts from now on carries it."""
    value = uuid.uuid4().hex
    monkeypatch.setenv(MARKER, value)
    return value


def marked_processes(mark: str) -> list[str]:
    """The running (not zombie) processes other than this one that carry the mark: pid and command."""
    return [f"{p.pid} {p.args}" for p in processes() if p.pid != os.getpid() and descends_from(p.pid, mark)]
