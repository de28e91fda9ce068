"""lion_core/data: the public instruction sets ship in the package, with their licence, and read whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from lion_core import data
from lion_core.records import read_instructions

PUBLIC_FILES = {
    "seed_tasks.jsonl": 175,
    "user_oriented_instructions.jsonl": 252,
    "vicuna_bench_questions.jsonl": 80,
    "mt_bench_questions.jsonl": 80,
}


@pytest.mark.parametrize(("name", "rows"), PUBLIC_FILES.items())
def test_reads_every_public_instruction_file(public_data: Path, name: str, rows: int) -> None:
    records = read_instructions(public_data / name)
    assert len(records) == rows
    assert len({r.id for r in records}) == rows
    assert all(r.instruction.strip() for r in records)


def test_the_public_sets_ship_in_the_package_with_their_licence() -> None:
    assert data.names() == sorted([*PUBLIC_FILES, "judge_prompts.jsonl"])
    readme = (data.path("seed_tasks.jsonl").parent / "README.md").read_text(encoding="utf-8")
    assert "Apache License, Version 2.0" in readme
    for name in data.names():
        assert f"`{name}`" in readme  # each file has its row: source, rows, licence
    with pytest.raises(
        ValueError, match=r"no packaged data file 'vicuna80\.jsonl' \(packaged: .*vicuna_bench"
    ):
        data.path("vicuna80.jsonl")
