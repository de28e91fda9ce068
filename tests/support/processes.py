"""Processes the tests started, found by a mark in their environment (inherited by every descendant,
even one that a dying parent left to init): what a test checks is gone when it should be."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

MARK = "LION_TEST_PROCESS_MARK"


def mark_processes(monkeypatch: pytest.MonkeyPatch) -> str:
    """Put a fresh mark in this process's environment: everything it starts from now on carries it."""
    value = uuid.uuid4().hex
    monkeypatch.setenv(MARK, value)
    return value


def marked_processes(value: str) -> list[int]:
    """Running (not zombie) processes other than this one whose environment holds the mark (Linux)."""
    needle = f"{MARK}={value}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and not _zombie(entry):
                found.append(pid)
        except OSError:  # ended while we looked, or not ours to read
            continue
    return found


def _zombie(entry: Path) -> bool:
    return (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
