"""Run by benchmarks/reliability.py (make reliability): `lion run` when the machine misbehaves (issue 22).

- disk full: the run directory on a small tmpfs (where this machine lets us mount one) that fills in
  the response cache during the teacher's fan-out, at the first checkpoint's save, or during the
  referee's fan-out; the exit, what it prints, whether a file is torn; the tmpfs grown, the same
  command resumes: what it asks again;
- damage: a finished run's response cache overwritten (a bad copy) or cut short, its first pool
  torn, a file of its finished iteration torn, its ledger.json torn: each refused in one line before any
  request, or repaired by a replay that pays nothing; then the way out the line names, followed;
- SIGTERM: to `lion` alone at the referee's fan-out (docker stop, Kubernetes): seconds to stop, exit,
  the line, what was left running, what was in flight; resumed;
- group kills: SIGKILL to `lion`'s whole process group (a job scheduler) at the teacher, referee and
  generator stages: processes and temporary databases left behind; resumed;
- concurrent: three `lion run` on three run directories with one PREFECT_HOME, started seconds apart.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import REPO
from probe_kit import (
    CONCURRENCY,
    LATENCY_MS,
    ORPHAN_WAIT_S,
    WAIT_S,
    alive,
    journal_rows,
    ledger_against_server,
    probe_config,
    rebought,
    wait_until,
)

from flows.demo import prepare_world_files, world_server
from lion_cli.process import DATABASE_FOLDER_PREFIX
from lion_core.config import LionConfig, dump_config
from lion_core.run.rundir import RunDir
from lion_core.world.server import WorldServer

MARK = "LION_MACHINE_PROBE"  # in the environment of every process a probed `lion` starts
# tmpfs sizes that fill at the named stage: the response cache in the teacher's fan-out, the first
# checkpoint's save, the response cache in the referee's fan-out
DISK_SIZES = {"teacher": "300k", "checkpoint": "3m", "referee": "5m"}
GROWN_SIZE = "64m"  # the tmpfs after space was freed
STAGGER_S = 2.0  # between the starts of the concurrent runs
CONCURRENT_RUNS = 3
TERM_AT = ("referee", 40)  # SIGTERM once the referee received this many requests
GROUP_KILLS = [("teacher", 20), ("referee", 40), ("generator", 10)]
TEMP_DATABASES = f"{DATABASE_FOLDER_PREFIX}*"  # the embedded servers' temporary database folders


# ----------------------------------------------------------------------------- running lion


def start(config_path: Path, marker: str, own_group: bool = True, env: dict[str, str] | None = None):
    """`lion run CONFIG` as a terminal starts it (its own process group), its processes marked."""
    environment = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING", **(env or {}), MARK: marker}
    return subprocess.Popen(
        [sys.executable, "-m", "lion_cli", "run", str(config_path)],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=own_group,
    )


def marked(marker: str) -> list[int]:
    """Pids of running processes (not zombies) whose environment carries the marker."""
    found = []
    needle = f"{MARK}={marker}".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            carries = needle in environ.read_bytes().split(b"\0")
        except OSError:
            continue
        if carries and alive(int(environ.parent.name)):
            found.append(int(environ.parent.name))
    return found


def left_behind(marker: str) -> int:
    """How many processes of a `lion` that ended still run after ORPHAN_WAIT_S (then stopped)."""
    wait_until(lambda: not marked(marker), limit_s=ORPHAN_WAIT_S)
    left = marked(marker)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return len(left)


def temp_databases(folder: Path) -> set[str]:
    """The embedded servers' database folders in `folder` (the probed runs' TMPDIR)."""
    return {p.name for p in folder.glob(TEMP_DATABASES)}


def ended(process: subprocess.Popen) -> dict[str, Any]:
    """A finished run's exit, its output's lines, whether a traceback shows, its last line."""
    out, err = process.communicate(timeout=WAIT_S)
    text = (out + err).strip()
    return {
        "exit": process.returncode,
        "lines": len(text.splitlines()),
        "traceback": "Traceback" in text,
        "message": " ".join(text.splitlines()[-1].split()) if text else "",
    }


def nothing_torn(run: Path) -> bool:
    """Every JSON and JSONL file of the run parses, and no temp file or half-saved checkpoint is left."""
    for file in run.rglob("*.json*"):
        if ".prefect-results" in file.parts or file.name.endswith(".progress.jsonl"):
            continue
        text = file.read_text()
        rows = text.splitlines() if file.suffix == ".jsonl" else [text]
        try:
            [json.loads(row) for row in rows if row.strip()]
        except ValueError:
            return False
    return not list(run.rglob("*.tmp"))


def world_files_outside(config: LionConfig, folder: Path) -> LionConfig:
    """The config with the demo's world files (tiny student, seeds, held-out set) in `folder`, made
    there: the run directory holds only what the run writes."""
    data = config.model_dump()
    data["student"]["model_path"] = folder / "tiny-student"
    data["pools"]["seed_path"] = folder / "seed.jsonl"
    data["evaluation"]["heldout_path"] = folder / "heldout.jsonl"
    moved = LionConfig.model_validate(data)
    prepare_world_files(moved)
    return moved


def config_at(folder: Path, run_dir: Path, server: WorldServer, world: Path | None = None) -> Path:
    """FOLDER/config.yaml: the probe's one-iteration run in `run_dir`, its world files in `world`
    (default FOLDER/world; runs that share them share the base checkpoint's identity)."""
    config = world_files_outside(probe_config(run_dir, server.port, 1), world or folder / "world")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    dump_config(config, path)
    return path


def loaded(path: Path) -> LionConfig:
    from lion_core.config import load_config

    return load_config(path)


# ----------------------------------------------------------------------------- disk full


def mount_tmpfs(folder: Path, size: str) -> str | None:
    """A tmpfs of `size` on `folder`; why not, when this machine does not allow it."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as err:
        return " ".join((getattr(err, "stderr", "") or str(err)).split()) or "mount failed"
    return None


def probe_disk_full(folder: Path, stage: str) -> dict[str, Any]:
    """A run whose run directory fills at `stage` (DISK_SIZES), then resumed with space freed."""
    run_dir = folder / "run"
    refused = mount_tmpfs(run_dir, DISK_SIZES[stage])
    if refused is not None:
        return {"stage": stage, "skipped": f"cannot mount a tmpfs here: {refused}"}
    try:
        with world_server(probe_config(run_dir, 0)).start() as server:
            server.faults.latency_ms = LATENCY_MS
            path = config_at(folder, run_dir, server)
            marker = uuid.uuid4().hex
            full = ended(start(path, marker))
            full.update(nothing_torn=nothing_torn(run_dir), left=left_behind(marker))
            subprocess.run(["mount", "-o", f"remount,size={GROWN_SIZE}", str(run_dir)], check=True)
            resumed = ended(start(path, marker))
            config = loaded(path)
            rows = journal_rows(config)
            return {
                "stage": stage,
                "size": DISK_SIZES[stage],
                "full": full,
                "resumed_exit": resumed["exit"],
                "rebought": dict(rebought(rows)),
                "unrecorded": sum(state == "unrecorded" for _, _, state in rows),
                **ledger_against_server(config, server),
            }
    finally:
        subprocess.run(["umount", "-l", str(run_dir)], check=False)


# ----------------------------------------------------------------------------- damage


def damage_cases() -> list[tuple[str, Callable[[RunDir], None], Callable[[RunDir], None] | None]]:
    """(what, damage it, follow the way out the line names, or None when the run repairs it itself)."""

    def bad_copy(run: RunDir) -> None:
        for extra in ("-wal", "-shm"):
            Path(f"{run.responses}{extra}").unlink(missing_ok=True)
        run.responses.write_bytes(b"not a database: a bad copy of one " * 2000)

    def cut_short(run: RunDir) -> None:
        data = run.responses.read_bytes()
        run.responses.write_bytes(data[: len(data) // 2])

    def move_cache_away(run: RunDir) -> None:
        run.responses.rename(run.root / "responses.sqlite.damaged")

    def tear(file: Callable[[RunDir], Path]) -> Callable[[RunDir], None]:
        def torn(run: RunDir) -> None:
            text = file(run).read_text()
            file(run).write_text(text[: len(text) * 2 // 3])

        return torn

    def rebuild_first_pools(run: RunDir) -> None:
        for name in ("train_pool", "cache_pool"):
            run.iteration(1).file(name).unlink()

    return [
        ("cache not a database (a bad copy)", bad_copy, move_cache_away),
        ("cache cut short (a copy that stopped half way)", cut_short, move_cache_away),
        ("first pool torn", tear(lambda run: run.iteration(1).file("train_pool")), rebuild_first_pools),
        (
            "teacher answers of a finished iteration torn",
            tear(lambda run: run.iteration(1).file("teacher")),
            None,
        ),
        ("ledger.json torn", tear(lambda run: run.ledger), None),
    ]


def checkpoint_wal(run: RunDir) -> None:
    """Fold the response cache's write-ahead log into it (as a finished run's last connection would)."""
    import sqlite3

    db = sqlite3.connect(run.responses)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def probe_damage(folder: Path) -> dict[str, Any]:
    """A finished run, copied once per case, damaged, re-run; then its way out followed, re-run."""
    with world_server(probe_config(folder / "base", 0)).start() as server:
        server.faults.latency_ms = LATENCY_MS
        base, world = folder / "base", folder / "world"
        first = ended(start(config_at(folder / "setup", base, server, world), uuid.uuid4().hex))
        checkpoint_wal(RunDir(base))
        rows = [
            damage_case(folder / f"case-{n}", base, world, server, case)
            for n, case in enumerate(damage_cases())
        ]
        return {"finished_run_exit": first["exit"], "cases": rows}


def damage_case(folder: Path, base: Path, world: Path, server: WorldServer, case) -> dict[str, Any]:
    what, damage, way_out = case
    run_dir = folder / "run"
    shutil.copytree(base, run_dir, ignore=shutil.ignore_patterns(".lock"))
    path = config_at(folder, run_dir, server, world)
    damage(RunDir(run_dir))
    marker, sent = uuid.uuid4().hex, server.stats.requests
    damaged = ended(start(path, marker))
    row = {"case": what, **damaged, "requests_sent": server.stats.requests - sent}
    if way_out is not None:
        way_out(RunDir(run_dir))
        sent = server.stats.requests
        row["after_way_out_exit"] = ended(start(path, marker))["exit"]
        row["after_way_out_requests"] = server.stats.requests - sent
    row["left"] = left_behind(marker)
    return row


# ----------------------------------------------------------------------------- SIGTERM, group kills


def probe_sigterm(folder: Path) -> dict[str, Any]:
    """SIGTERM to `lion` alone mid fan-out; then the same command resumes."""
    role, count = TERM_AT
    with world_server(probe_config(folder / "run", 0)).start() as server:
        server.faults.latency_ms = LATENCY_MS
        path = config_at(folder, folder / "run", server)
        marker = uuid.uuid4().hex
        process = start(path, marker)
        reached = wait_until(lambda: server.stats.received[role] >= count, process)
        sent_at = time.monotonic()
        if reached:
            os.kill(process.pid, signal.SIGTERM)
        stopped = ended(process)
        stopped.update(seconds=round(time.monotonic() - sent_at, 1), left=left_behind(marker))
        config = loaded(path)
        ledger = json.loads(RunDir(config.run_dir).ledger.read_text())
        unrecorded = sum(r.get("unrecorded", 0) for r in ledger["roles"].values())
        unsettled = sum(r.get("unsettled", 0) for r in ledger["roles"].values())
        resumed = ended(start(path, marker))
        return {
            "at": f"{role} request {count}",
            "signalled": reached,
            "stop": stopped,
            "unrecorded_after_stop": unrecorded,
            "unsettled_after_stop": unsettled,
            "resumed_exit": resumed["exit"],
            "rebought": dict(rebought(journal_rows(config))),
            **ledger_against_server(config, server),
        }


def probe_group_kills(folder: Path, kills: list[tuple[str, int]] = GROUP_KILLS) -> dict[str, Any]:
    """SIGKILL to the whole process group at each of `kills` (role, its requests received first), resumed
    each time; what is left running."""
    temp = folder / "tmp"  # the runs' TMPDIR: their databases, apart from anything else on the machine
    temp.mkdir()
    with world_server(probe_config(folder / "run", 0)).start() as server:
        server.faults.latency_ms = LATENCY_MS
        path = config_at(folder, folder / "run", server)
        killed = [group_kill(server, path, role, count, temp) for role, count in kills]
        resumed = ended(start(path, uuid.uuid4().hex, env={"TMPDIR": str(temp)}))
        config = loaded(path)
        return {
            "kills": killed,
            "processes_left": sum(k["left"] for k in killed),
            "temp_databases_left": len(temp_databases(temp)),
            "resumed_exit": resumed["exit"],
            "rebought": dict(rebought(journal_rows(config))),
            "bound_per_kill": CONCURRENCY,
            **ledger_against_server(config, server),
        }


def group_kill(server: WorldServer, path: Path, role: str, count: int, temp: Path) -> dict[str, Any]:
    """One `lion run` (TMPDIR `temp`), its process group SIGKILLed once `role` received `count` more
    requests."""
    marker, before = uuid.uuid4().hex, server.stats.received[role]
    process = start(path, marker, env={"TMPDIR": str(temp)})
    reached = wait_until(lambda: server.stats.received[role] - before >= count, process)
    if reached:
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    return {"role": role, "killed": reached, "left": left_behind(marker)}


# ----------------------------------------------------------------------------- several runs at once


def probe_concurrent(folder: Path, runs: int = CONCURRENT_RUNS) -> dict[str, Any]:
    """`runs` runs on their own run directories, one PREFECT_HOME, started STAGGER_S apart."""
    home = folder / "prefect-home"
    home.mkdir(parents=True)
    with world_server(probe_config(folder / "run-0", 0)).start() as server:
        server.faults.latency_ms = LATENCY_MS
        paths = [config_at(folder / f"run-{n}", folder / f"run-{n}" / "run", server) for n in range(runs)]
        started = time.monotonic()
        processes = []
        for path in paths:
            processes.append(start(path, uuid.uuid4().hex, env={"PREFECT_HOME": str(home)}))
            time.sleep(STAGGER_S)
        outputs = [process.communicate(timeout=WAIT_S) for process in processes]
        texts = [out + err for out, err in outputs]
        return {
            "runs": runs,
            "exits": [process.returncode for process in processes],
            "database_locked": sum("database is locked" in text for text in texts),
            "tracebacks": sum("Traceback" in text for text in texts),
            "wall_s": round(time.monotonic() - started),
            "finished": sum(RunDir(loaded(p).run_dir).iteration(1).summary.exists() for p in paths),
            "shared_home_database": (home / "prefect.db").exists(),
        }


def machine_probes(root: Path) -> dict[str, Any]:
    """Every probe of this module, each in a folder of its own under `root`."""
    for name in (*(f"disk-{stage}" for stage in DISK_SIZES), "damage", "sigterm", "group", "concurrent"):
        (root / name).mkdir()
    results = {
        "disk_full": [probe_disk_full(root / f"disk-{stage}", stage) for stage in DISK_SIZES],
        "damage": probe_damage(root / "damage"),
    }
    print(f"disk full and damage: {[d.get('full', d).get('exit') for d in results['disk_full']]}", flush=True)
    results["sigterm"] = probe_sigterm(root / "sigterm")
    results["group_kills"] = probe_group_kills(root / "group")
    results["concurrent"] = probe_concurrent(root / "concurrent")
    return results


def disk_row(result: dict[str, Any]) -> dict[str, str]:
    if "skipped" in result:
        return {"probe": f"disk full ({result['stage']})", "figure": result["skipped"]}
    full = result["full"]
    return {
        "probe": f"disk full ({result['stage']}, {result['size']} tmpfs)",
        "figure": f"exit {full['exit']}, {full['lines']} line, traceback: {full['traceback']}, nothing torn: "
        f"{full['nothing_torn']}, processes left {full['left']}; space freed, resumed: exit "
        f"{result['resumed_exit']}, asked again {result['rebought']} ({result['unrecorded']} unrecorded); "
        f"ledger {result['ledger_tokens']} ≤ server {result['served_tokens']} ≤ worst case "
        f"{result['ledger_worst_case_tokens']}",
    }


def damage_row(case: dict[str, Any]) -> dict[str, str]:
    way_out = ""
    if "after_way_out_exit" in case:  # the line's advice, followed
        way_out = f"; the way out followed: exit {case['after_way_out_exit']}, "
        way_out += f"{case['after_way_out_requests']} requests"
    return {
        "probe": f"damage: {case['case']}",
        "figure": f"exit {case['exit']}, {case['lines']} lines, traceback: {case['traceback']}, "
        f"{case['requests_sent']} requests sent{way_out}",
    }


def machine_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """The summary table's rows of the machine probes."""
    term, group, both = results["sigterm"], results["group_kills"], results["concurrent"]
    stop = term["stop"]
    return [
        *(disk_row(d) for d in results["disk_full"]),
        *(damage_row(c) for c in results["damage"]["cases"]),
        {
            "probe": f"SIGTERM at {term['at']}",
            "figure": f"exit {stop['exit']} after {stop['seconds']} s, {stop['lines']} line, traceback: "
            f"{stop['traceback']}, processes left {stop['left']}; {term['unrecorded_after_stop']} requests "
            f"journaled unrecorded, {term['unsettled_after_stop']} unsettled; resumed: exit "
            f"{term['resumed_exit']}, asked again {term['rebought']}",
        },
        {
            "probe": f"{len(group['kills'])} SIGKILLs of the process group",
            "figure": f"processes left {group['processes_left']}, temporary databases left "
            f"{group['temp_databases_left']}; resumed: exit {group['resumed_exit']}, asked again "
            f"{group['rebought']} (bound {group['bound_per_kill']} per kill per role)",
        },
        {
            "probe": f"{both['runs']} runs at once, one PREFECT_HOME",
            "figure": f"exits {both['exits']}, {both['finished']} finished, 'database is locked' in "
            f"{both['database_locked']}, tracebacks in {both['tracebacks']}, {both['wall_s']} s",
        },
    ]
