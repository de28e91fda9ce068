"""Instruction, Response and Judgement records; validated readers and atomic JSONL writers.

Readers accept Alpaca JSON (a list of {instruction, input, output}), JSONL (ours or Alpaca-shaped),
self-instruct (`instruction`, `instances`) and FastChat question files (`question_id`, `category`,
`turns`). Every problem is one `RecordError` naming file, line and field; writers replace a file
atomically (temp file, fsync, rename), so a reader never sees half a file. A write that fails (a full
disk, a quota, an I/O error, a read-only file system) is one `StateWriteError` naming the file, and
`write_failure` recognises one in whatever another writer raised (SQLite, safetensors, torch).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Origin = Literal["seed", "hard", "easy"]
Label = Literal["hard", "easy", "unscorable"]
Format = Literal["auto", "alpaca", "jsonl", "self_instruct", "fastchat"]


class RecordError(ValueError):
    """Bad input: the message names the file, the line and the field."""


class DamagedStateError(RecordError):
    """A file of the run's state is damaged (not a database, torn, changed): the message names it and
    says how to recover and what that costs."""


# The errors of a write that a re-run can get past once the disk is fixed: full, over quota, failing,
# read-only. Their strerror, and SQLite's words for the same, recognise them in other writers' errors.
WRITE_ERRNOS = {
    errno.ENOSPC: "No space left on device",
    errno.EDQUOT: "Disk quota exceeded",
    errno.EIO: "Input/output error",
    errno.EROFS: "Read-only file system",
}
SQLITE_WRITE_ERRORS = {
    "database or disk is full": errno.ENOSPC,
    "disk i/o error": errno.EIO,
    "attempt to write a readonly database": errno.EROFS,
}
OS_ERROR_CODE = "os error {}"  # how Rust writers (safetensors) name an errno in their messages


class StateWriteError(OSError):
    """The run's state could not be written: `errno` says why (WRITE_ERRNOS), `filename` which file.
    Nothing was half-written (atomic writes, SQLite transactions); re-running resumes."""


def _write_errno(err: BaseException) -> int | None:
    """The WRITE_ERRNOS code behind one exception (not its causes), or None."""
    if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
        return err.errno
    if isinstance(err, sqlite3.OperationalError):
        text = str(err).lower()
        return next((code for words, code in SQLITE_WRITE_ERRORS.items() if words in text), None)
    text = str(err)
    for code, words in WRITE_ERRNOS.items():
        if words in text or OS_ERROR_CODE.format(code) in text:
            return code
    return None


def write_failure(err: BaseException, path: str | Path | None = None) -> StateWriteError | None:
    """`err`, or an exception it was raised from or during, as a StateWriteError when it is a failed
    write (WRITE_ERRNOS; SQLite's and other writers' words for them) — naming `path` when the error does
    not name its file — else None."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StateWriteError):
            return current
        code = _write_errno(current)
        if code is not None:
            named = getattr(current, "filename", None) or (str(path) if path is not None else None)
            return StateWriteError(code, WRITE_ERRNOS[code], named)
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """A failed write in this block (see `write_failure`) raises StateWriteError naming `path`; other
    errors pass unchanged."""
    try:
        yield
    except Exception as err:
        failure = write_failure(err)
        if failure is None:
            raise
        raise StateWriteError(failure.errno, failure.strerror, str(path)) from err


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Instruction(_Record):
    """An instruction of the Train/Cache Pool, with its lineage."""

    id: str = Field(min_length=1, description="Unique id within a pool.")
    instruction: str = Field(min_length=1, description="The task text.")
    input: str = Field("", description="Optional input the task refers to.")
    origin: Origin = Field("seed", description="seed, or the kind of instruction it was generated from.")
    iteration: int = Field(0, ge=0, description="Iteration that generated it (0 for seeds).")
    parent_id: str | None = Field(None, description="The instruction it was generated from.")
    category: str | None = Field(None, description="Category of an evaluation question, if any.")

    @property
    def text(self) -> str:
        """Instruction and input as one text (what novelty is measured on)."""
        return f"{self.instruction}\n{self.input}" if self.input else self.instruction


class Response(_Record):
    """An answer to an instruction by one model (teacher, student, candidate)."""

    id: str = Field(min_length=1)
    instruction: str
    input: str = ""
    output: str
    model: str
    finish_reason: str = Field(
        "stop", description="Why the answer ended: stop, or length (cut by max_tokens)."
    )


class Judgement(_Record):
    """The referee's two-order verdict on one instruction."""

    id: str = Field(min_length=1)
    teacher_scores: list[float | None] = Field(description="Teacher's score in order 1 and order 2.")
    student_scores: list[float | None] = Field(description="Student's score in order 1 and order 2.")
    teacher_score: float | None = Field(description="Mean of teacher_scores; None if unscorable.")
    student_score: float | None = Field(description="Mean of student_scores; None if unscorable.")
    gap: float | None = Field(description="teacher_score − student_score; None if unscorable.")
    label: Label
    reason: str | None = Field(None, description="Why the item is unscorable.")


class PreferencePair(_Record):
    """One judged Cache Pool item as a preference pair: the teacher's answer preferred to the student's
    (RUN/iter_K/pairs.jsonl; `lion export --format preference`; the preference stage trains on them)."""

    id: str = Field(min_length=1, description="The Cache Pool item's id.")
    iteration: int = Field(ge=1, description="The iteration whose student gave the rejected answer.")
    prompt: str = Field(min_length=1, description="The instruction, and its input after a blank line.")
    chosen: str = Field(description="The teacher's answer.")
    rejected: str = Field(description="The student's answer.")
    margin: float | None = Field(
        description="The referee's two-order gap (teacher − student score); None without a referee."
    )
    label: Label | None = Field(description="The referee's label (hard or easy); None without a referee.")
    source: Literal["referee", "self"] = Field(
        description="referee: a scorable verdict with a positive gap; self: no referee, the student's own "
        "answer differs from the teacher's (SPIN-style)."
    )


class ItemLoss(_Record):
    """The student's mean token loss on the teacher's answer to one instruction (RUN/iter_K/losses_*)."""

    id: str = Field(min_length=1)
    loss: float | None = Field(
        description="Mean NLL of the answer's tokens; None when none fitted max_length."
    )


R = TypeVar("R", bound=BaseModel)
_UMASK = os.umask(0o022)  # read once (mkstemp makes 0600 files; written files get the usual mode)
os.umask(_UMASK)


# ----------------------------------------------------------------------------- writing


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to path atomically: temp file in the same directory, fsync, rename. A failed write
    leaves the file as it was (no temp file either) and raises StateWriteError naming `path`."""
    path = Path(path)
    with writing(path):
        _replace_with(path, text)


def _replace_with(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict[str, Any]]) -> None:
    """Write records as JSONL atomically."""
    lines = [
        json.dumps(r.model_dump(mode="json") if isinstance(r, BaseModel) else r, ensure_ascii=False)
        for r in records
    ]
    atomic_write_text(Path(path), "".join(line + "\n" for line in lines))


# ----------------------------------------------------------------------------- reading


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RecordError(f"{path}: is a directory, not a file of records") from None
    except OSError as err:  # unreadable: permissions, I/O errors
        raise RecordError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise RecordError(f"{path}:{line}: not UTF-8 (byte 0x{data[err.start]:02x})") from None
    if not text.strip():
        raise RecordError(f"{path}: empty file (no records)")
    return text


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise RecordError(f"{path}:{number}: invalid JSON: {err.msg} (column {err.colno})") from None


def _json_array_rows(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """Elements of a top-level JSON array with the line each starts on."""
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text.startswith("[", pos):
        raise RecordError(f"{path}:1: expected a JSON list of records")
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise RecordError(f"{path}:{len(text.splitlines())}: unterminated JSON list")
        if text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise RecordError(f"{path}:{err.lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
        yield line, value


def _validate(path: Path, line: int, cls: type[R], row: Any) -> R:
    if not isinstance(row, dict):
        raise RecordError(f"{path}:{line}: expected a JSON object, got {type(row).__name__}")
    try:
        return cls.model_validate(row)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "<record>"
        raise RecordError(f"{path}:{line}: field '{field}': {first['msg']}") from None


def _require(path: Path, line: int, row: dict[str, Any], field: str, *kinds: type) -> Any:
    if field not in row:
        raise RecordError(f"{path}:{line}: field '{field}': missing")
    if not isinstance(row[field], kinds):
        expected = " or ".join(kind.__name__ for kind in kinds)
        raise RecordError(
            f"{path}:{line}: field '{field}': expected {expected}, got {type(row[field]).__name__}"
        )
    return row[field]


def _from_self_instruct(path: Path, line: int, row: dict[str, Any]) -> dict[str, Any]:
    instances = _require(path, line, row, "instances", list)
    first = instances[0] if instances else {}
    return {
        "id": str(row.get("id", f"line-{line}")),
        "instruction": _require(path, line, row, "instruction", str),
        "input": first.get("input", "") if isinstance(first, dict) else "",
        "category": row.get("motivation_app") or row.get("name"),
    }


def _from_fastchat(path: Path, line: int, row: dict[str, Any]) -> dict[str, Any]:
    turns = _require(path, line, row, "turns", list)
    if not turns or not isinstance(turns[0], str):
        raise RecordError(f"{path}:{line}: field 'turns': expected a non-empty list of strings")
    qid = _require(path, line, row, "question_id", int, str)
    return {"id": str(qid), "instruction": turns[0], "category": row.get("category")}


def _from_plain(path: Path, line: int, row: dict[str, Any], index: int) -> dict[str, Any]:
    """Our own Instruction records, or Alpaca-shaped {instruction, input, output} rows."""
    if "id" in row and "origin" in row:
        return row
    return {
        "id": str(row["id"]) if "id" in row else f"seed-{index:06d}",
        "instruction": _require(path, line, row, "instruction", str),
        "input": row.get("input", ""),
    }


def _detect(path: Path, first: Any) -> Format:
    if path.suffix == ".json":
        return "alpaca"
    if isinstance(first, dict) and "turns" in first:
        return "fastchat"
    if isinstance(first, dict) and "instances" in first:
        return "self_instruct"
    return "jsonl"


def _check_length(path: Path, line: int, record: Instruction, max_chars: int | None) -> None:
    """Refuse a record whose instruction + input is longer than `max_chars`, naming the longer field."""
    size = len(record.instruction) + len(record.input)
    if max_chars is not None and size > max_chars:
        field = "input" if len(record.input) > len(record.instruction) else "instruction"
        raise RecordError(
            f"{path}:{line}: field '{field}': instruction + input is {size:,} characters, "
            f"more than the {max_chars:,} allowed (pools.max_text_chars)"
        )


def read_instructions(
    path: str | Path, format: Format = "auto", *, max_chars: int | None = None
) -> list[Instruction]:
    """Read an instruction file of any supported format into validated Instruction records; with
    `max_chars`, a record whose instruction + input is longer is refused (RecordError)."""
    path = Path(path)
    text = _decode(path)
    rows = list(
        _json_array_rows(path, text)
        if format == "alpaca" or path.suffix == ".json"
        else _jsonl_rows(path, text)
    )
    if not rows:
        raise RecordError(f"{path}: no records")
    fmt = _detect(path, rows[0][1]) if format == "auto" else format
    out: list[Instruction] = []
    seen: dict[str, int] = {}
    for index, (line, row) in enumerate(rows):
        if not isinstance(row, dict):
            raise RecordError(f"{path}:{line}: expected a JSON object, got {type(row).__name__}")
        if fmt == "fastchat":
            row = _from_fastchat(path, line, row)
        elif fmt == "self_instruct":
            row = _from_self_instruct(path, line, row)
        else:
            row = _from_plain(path, line, row, index)
        record = _validate(path, line, Instruction, row)
        _check_length(path, line, record, max_chars)
        if record.id in seen:
            raise RecordError(
                f"{path}:{line}: field 'id': duplicate id {record.id!r} (first on line {seen[record.id]})"
            )
        seen[record.id] = line
        out.append(record)
    return out


def read_jsonl(path: str | Path, cls: type[R], *, allow_empty: bool = True) -> list[R]:
    """Read our own JSONL records of one type (Response, Judgement, Instruction), validated."""
    path = Path(path)
    if allow_empty and path.exists() and path.stat().st_size == 0:
        return []
    text = _decode(path)
    return [_validate(path, line, cls, row) for line, row in _jsonl_rows(path, text)]
