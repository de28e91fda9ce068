"""lion_core/records.py: the readers of every instruction format and the atomic writers; bad input fails
clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lion_core.records import (
    Instruction,
    Judgement,
    RecordError,
    Response,
    read_instructions,
    read_jsonl,
    write_jsonl,
)


def test_fastchat_keeps_category_and_first_turn(public_data: Path) -> None:
    questions = read_instructions(public_data / "vicuna_bench_questions.jsonl")
    first = json.loads((public_data / "vicuna_bench_questions.jsonl").read_text().splitlines()[0])
    assert questions[0].id == str(first["question_id"])
    assert questions[0].instruction == first["turns"][0]
    assert questions[0].category == first["category"]


def test_self_instruct_takes_first_instance_input(public_data: Path) -> None:
    records = read_instructions(public_data / "seed_tasks.jsonl")
    raw = [json.loads(line) for line in (public_data / "seed_tasks.jsonl").read_text().splitlines()]
    with_input = next(i for i, r in enumerate(raw) if r["instances"][0]["input"])
    assert records[with_input].input == raw[with_input]["instances"][0]["input"]


def test_reads_alpaca_json(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.json"
    path.write_text(
        json.dumps(
            [
                {"instruction": "Say hi", "input": "", "output": "hi"},
                {"instruction": "Add", "input": "1 2", "output": "3"},
            ],
            indent=2,
        )
    )
    records = read_instructions(path)
    assert [(r.id, r.instruction, r.input) for r in records] == [
        ("seed-000000", "Say hi", ""),
        ("seed-000001", "Add", "1 2"),
    ]


def test_own_records_round_trip(tmp_path: Path) -> None:
    items = [Instruction(id="a", instruction="Reverse abc", origin="hard", iteration=1, parent_id="s1")]
    write_jsonl(tmp_path / "pool.jsonl", items)
    assert read_instructions(tmp_path / "pool.jsonl") == items
    judgement = Judgement(
        id="a",
        teacher_scores=[9, 9],
        student_scores=[2, 3],
        teacher_score=9,
        student_score=2.5,
        gap=6.5,
        label="hard",
    )
    write_jsonl(tmp_path / "j.jsonl", [judgement])
    assert read_jsonl(tmp_path / "j.jsonl", Judgement) == [judgement]


BAD_INPUTS = [
    # (file name, bytes, expected line, expected words in the message)
    ("bad.jsonl", b'{"instruction": "a"}\n{"instruction": \n', 2, "invalid JSON"),
    ("missing.jsonl", b'{"instruction": "a"}\n{"input": "x"}\n', 2, "field 'instruction': missing"),
    ("type.jsonl", b'{"instruction": "a"}\n{"instruction": 42}\n', 2, "field 'instruction'"),
    ("latin1.jsonl", b'{"instruction": "a"}\n{"instruction": "caf\xe9"}\n', 2, "not UTF-8"),
    ("empty.jsonl", b"", None, "empty file"),
    ("blank.jsonl", b"\n  \n\n", None, "empty file"),
    ("dup.jsonl", b'{"id": "x", "instruction": "a"}\n{"id": "x", "instruction": "b"}\n', 2, "duplicate id"),
    ("open.json", b'[\n {"instruction": "a"},\n {"instruction": "b"}\n', 3, "JSON"),
    ("object.json", b'{"instruction": "a"}', 1, "expected a JSON list"),
    ("strings.json", b'[\n "just text"\n]', 2, "expected a JSON object"),
    ("turns.jsonl", b'{"question_id": 1, "category": "x", "turns": []}\n', 1, "field 'turns'"),
    ("instances.jsonl", b'{"id": "t", "instruction": "a", "instances": "no"}\n', 1, "field 'instances'"),
    ("emptytext.jsonl", b'{"instruction": ""}\n', 1, "field 'instruction'"),
    ("origin.jsonl", b'{"id": "a", "instruction": "b", "origin": "alien"}\n', 1, "field 'origin'"),
]


@pytest.mark.parametrize(("name", "data", "line", "words"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_names_file_line_and_field(
    tmp_path: Path, name: str, data: bytes, line: int | None, words: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(RecordError) as caught:
        read_instructions(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    if line is not None:
        assert message.startswith(f"{path}:{line}:")
    assert words in message


def test_missing_file_is_a_record_error(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="no such file"):
        read_instructions(tmp_path / "nope.jsonl")


def test_judgement_with_bad_label_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "judgements.jsonl"
    row = {
        "id": "a",
        "teacher_scores": [1, 2],
        "student_scores": [1, 2],
        "teacher_score": 1.5,
        "student_score": 1.5,
        "gap": 0,
        "label": "medium",
    }
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(RecordError, match=r"judgements.jsonl:1: field 'label'"):
        read_jsonl(path, Judgement)


def test_failed_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "teacher.jsonl"
    old = [Response(id="1", instruction="i", output="o", model="m")]
    write_jsonl(path, old)

    def rows():
        yield {"id": "2"}
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert read_jsonl(path, Response) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher.jsonl"]


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    write_jsonl(tmp_path / "pool.jsonl", [Instruction(id="a", instruction="b")])
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "pool.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------ issue 22, item 1: a write that fails is named, not torn


def test_a_full_disk_names_the_file_and_leaves_it_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC simulated at fsync (the unit test runs anywhere; tests/e2e/test_damage.py fills a tmpfs)."""
    import errno
    import os

    from lion_core.records import StateWriteError

    path = tmp_path / "teacher.jsonl"
    old = [Response(id="1", instruction="i", output="o", model="m")]
    write_jsonl(path, old)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StateWriteError) as raised:
        write_jsonl(path, [Response(id="2", instruction="i", output="o", model="m")])
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(path)
    monkeypatch.undo()
    assert read_jsonl(path, Response) == old  # the old file whole, no temp file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher.jsonl"]


def test_other_writers_failed_writes_are_recognised_through_their_causes() -> None:
    import errno
    import sqlite3

    from lion_core.records import StateWriteError, write_failure

    safetensors = RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert write_failure(safetensors, "ckpt").errno == errno.ENOSPC
    assert write_failure(safetensors, "ckpt").filename == "ckpt"
    assert write_failure(sqlite3.OperationalError("database or disk is full")).errno == errno.ENOSPC
    assert write_failure(sqlite3.OperationalError("disk I/O error")).errno == errno.EIO
    quota = OSError(errno.EDQUOT, "Disk quota exceeded", "/runs/x/ledger.json")
    try:
        try:
            raise quota
        except OSError as err:
            raise ValueError("Prefect wrapped it") from err
    except ValueError as wrapped:
        found = write_failure(wrapped)
    assert isinstance(found, StateWriteError) and found.filename == "/runs/x/ledger.json"
    assert write_failure(ValueError("not a write")) is None
    assert write_failure(OSError(errno.ENOENT, "No such file or directory")) is None
