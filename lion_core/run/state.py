"""The run directory's health: damage found at start, before any request, and the space a run needs when
a write failed.

`check_run_state` opens the response cache (and money journal) as a database and runs SQLite's quick
integrity check; reads RUN/config.yaml and the first iteration's pools (read before anything rewrites
them); and compares every finished iteration's files with the content hashes its manifest recorded.
Damage the run cannot get past raises DamagedStateError — one line naming the file (and line), how to
recover and what that costs; damage it repairs itself (a file of a finished iteration that changed:
that iteration is replayed from the caches, as lion_core.run.resume does) is returned as a note.

`space_needed` says, after a failed write, what the run directory holds and the least it needs free.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import yaml

from lion_core.config import LionConfig
from lion_core.records import DamagedStateError, RecordError, read_instructions
from lion_core.run.resume import file_hash
from lion_core.run.rundir import RunDir, response_cache

QUICK_CHECK_OK = [("ok",)]
QUICK_CHECK_SHOWN = 3  # problems of a failed integrity check named in the error
_CHECKED: dict[Path, tuple[int, int]] = {}  # caches this process found intact: (size, mtime) then
BLOCK_BYTES = 512  # st_blocks counts 512-byte blocks
KILO = 1000  # sizes in kB, MB, GB as disks are sold
FREE = "nothing is paid again"


def check_run_state(config: LionConfig) -> list[str]:
    """Raise DamagedStateError for damage the run cannot get past (`refuse_damage`); one note line per
    damage it repairs itself by replaying (nothing is paid again). Reads only; call it holding the run
    directory's lock."""
    refuse_damage(config)
    note = replayed_note(RunDir(config.run_dir), config.loop.iterations)
    return [note] if note else []


def refuse_damage(config: LionConfig) -> None:
    """DamagedStateError when the response cache is not an intact database, RUN/config.yaml does not
    parse or the first iteration's pools do not."""
    run = RunDir(config.run_dir)
    check_cache(response_cache(config), run)
    check_recorded_config(run)
    check_first_pools(run)


def check_cache(path: Path, run: RunDir) -> None:
    """The response cache opens as a SQLite database and passes its quick integrity check (once per
    process while the file is unchanged)."""
    if not path.is_file():
        return
    stamp = (path.stat().st_size, path.stat().st_mtime_ns)
    if _CHECKED.get(path) == stamp:
        return
    try:
        db = sqlite3.connect(path, timeout=30)
        try:
            problems = db.execute("PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as err:
        raise damaged_cache(path, run, str(err)) from None
    if problems != QUICK_CHECK_OK:
        raise damaged_cache(path, run, "; ".join(str(p[0]) for p in problems[:QUICK_CHECK_SHOWN]))
    _CHECKED[path] = stamp


def damaged_cache(path: Path, run: RunDir, why: str) -> DamagedStateError:
    """What a damaged response cache costs: finished iterations are kept, the replies of unfinished ones
    are bought again; the spend RUN/ledger.json recorded goes on counting against the budget."""
    recorded = ledger_totals(run)
    spend = (
        f"; the spend ledger.json recorded ({recorded}) goes on counting against the budget"
        if recorded
        else "; the budget no longer counts the spend it recorded"
    )
    return DamagedStateError(
        f"{path}: the response cache (and money journal) is damaged ({why}); move it away "
        f"(mv {path} {path}.damaged) and re-run: finished iterations are not replayed, the replies of "
        f"unfinished ones are bought again{spend}"
    )


def ledger_totals(run: RunDir) -> str | None:
    """'N requests, T tokens, $U' from RUN/ledger.json (None when it is not there or does not parse)."""
    try:
        ledger = json.loads(run.ledger.read_text(encoding="utf-8"))
        requests = sum(role.get("requests", 0) for role in ledger["roles"].values())
        total = ledger["total"]
        return f"{requests:,} requests, {total['tokens']:,} tokens, ${total['cost_usd']:,.2f}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def check_recorded_config(run: RunDir) -> None:
    """RUN/config.yaml (the last run's config, which tells whether the seeds changed) parses."""
    if not run.config.is_file():
        return
    try:
        yaml.safe_load(run.config.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        detail = " ".join(str(err).split())
        raise DamagedStateError(
            f"{run.config}: does not parse ({detail}); it records the config the run started with: move it "
            f"away (mv {run.config} {run.config}.damaged) and re-run: the run writes it again from CONFIG "
            "(nothing is paid again)"
        ) from None


def check_first_pools(run: RunDir) -> None:
    """The first iteration's pools, read before anything rewrites them, parse."""
    first = run.iteration(1)
    for name in ("train_pool", "cache_pool"):
        path = first.file(name)
        if not path.is_file():
            continue
        try:
            read_instructions(path, "jsonl")
        except RecordError as err:
            pools = f"{first.file('train_pool')} and {first.file('cache_pool')}"
            raise DamagedStateError(
                f"{err}; it is the run's first pool, built from pools.seed_path and read before anything "
                f"rewrites it: remove {pools} to build them again from the seeds (nothing is paid again "
                "if the seed file is unchanged)"
            ) from None


def replayed_note(run: RunDir, iterations: int) -> str | None:
    """The first finished iteration whose files differ from its manifest, as the note of its replay."""
    for k in range(1, iterations + 1):
        try:
            manifest = json.loads(run.iteration(k).manifest.read_text(encoding="utf-8"))
            files: dict[str, str] = manifest["files"]
        except FileNotFoundError:
            return None  # not finished: this one and the rest run anyway
        except (OSError, ValueError, KeyError, TypeError):
            where = run.iteration(k).manifest
            return f"{where}: does not parse: iteration {k} on is replayed from the caches ({FREE})"
        changed = [why for name, digest in files.items() if (why := differs(run, k, name, digest))]
        if changed:
            more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
            return (
                f"{changed[0]}{more}, unlike what iteration {k} wrote: iteration {k} on is replayed from "
                f"the caches ({FREE})"
            )
    return None


def differs(run: RunDir, k: int, name: str, digest: str) -> str | None:
    """How a file recorded in iteration k's manifest differs now ('PATH: missing', 'PATH:LINE: does not
    parse', 'PATH: changed'), or None (the checkpoint, recorded by its identity, is the resume's to
    check)."""
    path = run.root / name
    if path == run.iteration(k).student:
        return None
    if not path.is_file():
        return f"{path}: missing"
    if file_hash(path) == digest:
        return None
    torn = first_bad_line(path) if path.suffix in (".jsonl", ".json") else None
    return f"{path}:{torn}: does not parse" if torn else f"{path}: changed"


def first_bad_line(path: Path) -> int | None:
    """The first line of a JSON Lines file (or the JSON file) that does not parse, or None."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return 1
    rows: list[tuple[int, str]] = list(enumerate(text.splitlines(), start=1))
    if path.suffix == ".json":
        rows = [(1, text)]
    for number, row in rows:
        if not row.strip():
            continue
        try:
            json.loads(row)
        except ValueError:
            return number
    return None


# ----------------------------------------------------------------------------- space


@dataclass(frozen=True)
class Space:
    """What a run directory holds after a failed write, and what it needs at least."""

    written: int  # bytes the run directory (and a shared response cache) holds
    finished: int  # iterations finished
    iterations: int  # iterations of the run
    free: int  # bytes free on its file system now

    @property
    def per_iteration(self) -> int:
        """What it wrote per finished iteration (or so far, before the first finished)."""
        return self.written // max(self.finished, 1)

    @property
    def needed(self) -> int:
        """The least free space to finish: as much per iteration left as it wrote per iteration so far
        (later iterations write more: their pools are larger)."""
        return self.per_iteration * max(self.iterations - self.finished, 1)


def space_needed(config: LionConfig) -> Space:
    """The run directory's Space (files counted by their size on disk)."""
    run = RunDir(config.run_dir)
    written = tree_bytes(run.root)
    cache = response_cache(config)
    if cache.is_file() and run.root.resolve() not in cache.resolve().parents:
        written += cache.stat().st_size
    finished = 0
    while finished < config.loop.iterations and run.iteration(finished + 1).manifest.is_file():
        finished += 1
    existing = next((p for p in (run.root, *run.root.parents) if p.exists()), Path("/"))
    return Space(written, finished, config.loop.iterations, shutil.disk_usage(existing).free)


def tree_bytes(root: Path) -> int:
    """Bytes the files under `root` take on disk (0 when it is not there)."""
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * BLOCK_BYTES
            except OSError:
                continue
    return total


def human(size: float) -> str:
    """A byte count as people read it: 512 B, 3.2 MB, 1.5 GB."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < KILO or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= KILO
    return f"{size:,.1f} TB"


def space_note(config: LionConfig, errno_code: int | None, resume: str) -> str:
    """What the one line of a failed write says after what happened: for a full disk or quota, what the
    run holds and the least it needs free; for a failing or read-only disk, what to do; then how to
    resume and what that re-buys."""
    import errno

    again = (
        f"re-run the same command to resume ({resume}): replies that arrived but could not be written are "
        "counted in ledger.json at their worst case and asked again"
    )
    if errno_code == errno.EIO:
        return f"the disk failed: check it (dmesg), then {again}"
    if errno_code == errno.EROFS:
        return (
            f"the file system is read-only: remount it read-write (or move the run directory), then {again}"
        )
    space = space_needed(config)
    done = f"after {space.finished} of {space.iterations} iterations"
    return (
        f"{config.run_dir} holds {human(space.written)} {done}: free at least {human(space.needed)} "
        f"({human(space.free)} free now) and {again}"
    )
