"""Run as: make reliability   (or .venv/bin/python benchmarks/reliability.py [--quick])

Reliability probes of `lion run`, as a user would try it, through the CLI and the offline world server:
- faults: a run under 20% 5xx, 10% 429, 5% timeouts, 10% malformed replies: nothing lost (the ledger
  equals what the server served), how many items end unscorable;
- kills: SIGKILL of the `lion` process (only it, not its group) at the teacher, referee and generator
  stages of both iterations, each time resumed with the same command: requests re-bought per kill
  (bound: the roles' concurrency), the ledger against the server's count, embedded Prefect servers
  left behind; and a second `lion run` on the same directory while one runs;
- budget: `budget.max_tokens`, one kill, resume: what the server served against the budget, and what
  the stop prints;
- bad input: each kind of hostile input must exit 2 with one line, no traceback, nothing written and
  nothing sent;
- the machine misbehaving (benchmarks/machine.py): a full disk, damaged state, SIGTERM, SIGKILLs of the
  whole process group, three runs at once.
Prints the figures and writes benchmarks/results/reliability.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from common import REPO, markdown, save
from machine import machine_probes, machine_rows
from probe_kit import (
    CONCURRENCY,
    LATENCY_MS,
    NEVER_RECORDED,
    ORPHAN_WAIT_S,
    ROLES,
    WAIT_S,
    alive,
    journal_rows,
    ledger_against_server,
    probe_config,
    rebought,
    wait_until,
)

from flows.demo import prepare_world_files, world_server
from lion_core.config import LionConfig, dump_config
from lion_core.run.rundir import RunDir
from lion_core.world.server import WorldServer

SERVER_MARK = "prefect.server.api.server"  # in the embedded Prefect server's command line
# Kill points: (role, requests that role must have received since this run started).
KILL_PLAN = [
    ("teacher", 20),
    ("referee", 40),
    ("generator", 10),
    ("teacher", 8),
    ("referee", 60),
    ("generator", 10),
]
FAULTS = {"share_5xx": 0.2, "share_429": 0.1, "share_timeout": 0.05, "share_malformed": 0.1}


def written(config: LionConfig, folder: Path) -> Path:
    prepare_world_files(config)
    path = folder / "config.yaml"
    dump_config(config, path)
    return path


def lion(config_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "lion_cli", "run", str(config_path)]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def prefect_servers(parent: int) -> list[int]:
    """Pids of embedded Prefect servers whose parent is `parent`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and SERVER_MARK in command:
            found.append(int(stat.parent.name))
    return found


def kill_at(server: WorldServer, config_path: Path, role: str, count: int) -> dict[str, Any]:
    """One `lion run`, SIGKILLed (the process alone) once `role` received `count` more requests."""
    start = server.stats.received[role]
    process = lion(config_path)
    reached = wait_until(lambda: server.stats.received[role] - start >= count, process)
    servers = prefect_servers(process.pid)
    if reached:
        os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    left = [pid for pid in servers if not wait_until(lambda p=pid: not alive(p), limit_s=ORPHAN_WAIT_S)]
    for pid in left:  # clean up what the probe found
        os.kill(pid, signal.SIGTERM)
    return {"role": role, "killed": reached, "prefect_servers_left": len(left)}


def in_flight(config: LionConfig) -> Counter:
    """Per role: journaled requests whose reply was never recorded."""
    return Counter(role for role, _, state in journal_rows(config) if state in NEVER_RECORDED)


def probe_second_run(folder: Path) -> dict[str, Any]:
    """A fresh run, and a second `lion run` on its directory started once the first sends requests."""
    with world_server(probe_config(folder / "run", 0)).start() as server:
        server.faults.latency_ms = LATENCY_MS
        return second_run_refused(server, written(probe_config(folder / "run", server.port, 1), folder))


def second_run_refused(server: WorldServer, config_path: Path) -> dict[str, Any]:
    """Both runs' exits and what the second printed."""
    first = lion(config_path)
    wait_until(lambda: server.stats.requests > 0, first)
    second = lion(config_path)
    out, err = second.communicate()
    first_out, first_err = first.communicate()
    line = " ".join((out + err).split())
    return {
        "second_exit": second.returncode,
        "second_names_pid": f"pid {first.pid}" in line,
        "second_lines": len((out + err).strip().splitlines()),
        "first_exit": first.returncode,
        "first_tail": (first_out + first_err)[-400:],
    }


def probe_kills(folder: Path, plan: list[tuple[str, int]], iterations: int) -> dict[str, Any]:
    with world_server(probe_config(folder / "run", 0)).start() as server:
        server.faults.latency_ms = LATENCY_MS
        config = probe_config(folder / "run", server.port, iterations)
        path = written(config, folder)
        kills = []
        for role, count in plan:
            before = in_flight(config)
            kills.append(kill_at(server, path, role, count))
            kills[-1]["in_flight_at_kill"] = dict(in_flight(config) - before)
        last = lion(path)
        tail = "".join(last.communicate())[-400:]
        rows = journal_rows(config)
        again = rebought(rows)
        return {
            "kills": kills,
            "kills_survived": sum(k["killed"] for k in kills) if last.returncode == 0 else 0,
            "resumed_exit": last.returncode,
            "resumed_tail": tail,
            "rebought": dict(again),
            "in_flight_per_kill_max": max(
                (n for k in kills for n in k["in_flight_at_kill"].values()), default=0
            ),
            "bound_per_kill": CONCURRENCY,
            "unsettled_at_kills": sum(state in NEVER_RECORDED for _, _, state in rows),
            "prefect_servers_left": sum(k["prefect_servers_left"] for k in kills),
            "teacher_repeated_at_server": server.stats.repeated_teacher_requests(),
            **ledger_against_server(config, server),
        }


def probe_faults(folder: Path) -> dict[str, Any]:
    with world_server(probe_config(folder / "run", 0)).start() as server:
        for knob, share in FAULTS.items():
            setattr(server.faults, knob, share)
        server.faults.hang_s = 1.0
        endpoint = {"timeout_s": 0.5, "max_retries": 12}
        config = probe_config(folder / "run", server.port, 1, **{role: endpoint for role in ROLES})
        process = lion(written(config, folder))
        out, err = process.communicate(timeout=WAIT_S)
        judgements = RunDir(config.run_dir).iteration(1).file("judgements")
        lines = judgements.read_text().splitlines() if judgements.exists() else []
        labels = Counter(json.loads(line)["label"] for line in lines)
        return {
            "exit": process.returncode,
            "tail": (out + err)[-300:] if process.returncode else "",
            "faults_injected": sum(server.stats.faults.values()),
            "requests": server.stats.requests,
            "unscorable_share": labels["unscorable"] / max(sum(labels.values()), 1),
            **ledger_against_server(config, server),
        }


def probe_budget(folder: Path, max_tokens: int) -> dict[str, Any]:
    with world_server(probe_config(folder / "run", 0)).start() as server:
        server.faults.latency_ms = LATENCY_MS
        config = probe_config(folder / "run", server.port, 2, budget={"max_tokens": max_tokens})
        path = written(config, folder)
        kill = kill_at(server, path, "referee", 40)
        process = lion(path)
        out, err = process.communicate(timeout=WAIT_S)
        served = server.stats.prompt_tokens + server.stats.completion_tokens
        return {
            "killed": kill["killed"],
            "max_tokens": max_tokens,
            "served_tokens": served,
            "within_budget": served <= max_tokens,
            "exit": process.returncode,
            "stop_lines": len((out + err).strip().splitlines()),
            "stop_output": " ".join((out + err).split())[-300:],
            "traceback": "Traceback" in out + err,
            **ledger_against_server(config, server),
        }


# ----------------------------------------------------------------------------- bad input


def _config_with(base: dict[str, Any], section: str | None, field: str, value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(base))
    if section is None:
        data[field] = value
    else:
        data.setdefault(section, {})[field] = value
    return data


Make = Callable[[Path], Path]  # make(case_folder) -> the config path of one hostile-input case


class Cases:
    """Makers of hostile-input cases: each writes what it needs into a case folder and returns the config
    path `lion run` is given (derived from `base`, the probe's good config)."""

    good = '{"instruction": "Reverse abc"}\n'

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base

    def config(self, data: dict[str, Any], own_run_dir: bool = True) -> Make:
        def make(case: Path) -> Path:
            path = case / "config.yaml"
            data_here = _config_with(data, None, "run_dir", str(case / "run")) if own_run_dir else data
            path.write_text(yaml.safe_dump(data_here))
            return path

        return make

    def field(self, section: str | None, name: str, value: Any) -> Make:
        return self.config(_config_with(self.base, section, name, value))

    def seed_text(self, text: str | bytes, suffix: str = ".jsonl") -> Make:
        def make(case: Path) -> Path:
            path = case / f"seed{suffix}"
            path.write_bytes(text if isinstance(text, bytes) else text.encode())
            return self.field("pools", "seed_path", str(path))(case)

        return make

    @staticmethod
    def raw(data: str | bytes, name: str = "config.yaml") -> Make:
        def make(case: Path) -> Path:
            (case / name).write_bytes(data if isinstance(data, bytes) else data.encode())
            return case / name

        return make

    def student_with(self, change: Callable[[Path], None]) -> Make:
        def make(case: Path) -> Path:
            student = case / "student"
            shutil.copytree(self.base["student"]["model_path"], student)
            change(student)
            return self.field("student", "model_path", str(student))(case)

        return make

    def run_dir_is_file(self, case: Path) -> Path:
        (case / "run").write_text("a file")
        return self.config(self.base)(case)

    def run_dir_under_a_file(self, case: Path) -> Path:
        (case / "file").write_text("a file")
        under = _config_with(self.base, None, "run_dir", str(case / "file" / "run"))
        return self.config(under, own_run_dir=False)(case)


def config_cases(c: Cases) -> list[tuple[str, Make]]:
    """Hostile values and hostile config files."""
    return [
        ("loop.tau: .nan", c.field("loop", "tau", float("nan"))),
        ("loop.tau: .inf", c.field("loop", "tau", float("inf"))),
        ("loop.hard_easy_ratio: .inf", c.field("loop", "hard_easy_ratio", float("inf"))),
        ("loop.rouge_threshold: .nan", c.field("loop", "rouge_threshold", float("nan"))),
        ("budget.max_usd: .inf", c.field("budget", "max_usd", float("inf"))),
        ("teacher.price_input_per_1k: .inf", c.field("teacher", "price_input_per_1k", float("inf"))),
        ("teacher.temperature: .nan", c.field("teacher", "temperature", float("nan"))),
        ("student.learning_rate: .inf", c.field("student", "learning_rate", float("inf"))),
        ("loop.tau: 'high'", c.field("loop", "tau", "high")),
        ("teacher.concurrency: 0", c.field("teacher", "concurrency", 0)),
        ("unknown field", c.field("loop", "taus", 1.0)),
        ("config is a directory", lambda case: case),
        ("config missing", lambda case: case / "missing.yaml"),
        ("config not YAML", c.raw("loop: [unclosed\n")),
        ("config not a mapping", c.raw("- a list\n")),
        ("config not UTF-8", c.raw(b"loop:\n  tau: \xff\n")),
    ]


def seed_cases(c: Cases) -> list[tuple[str, Make]]:
    """Hostile seed pools."""
    good, seed = c.good, c.base["pools"]["seed_path"]
    return [
        ("seed is a directory", lambda case: c.field("pools", "seed_path", str(case))(case)),
        ("seed missing", c.field("pools", "seed_path", str(Path(seed).parent / "no-such-seed.jsonl"))),
        ("seed empty", c.seed_text("")),
        ("seed invalid JSON line", c.seed_text(good + '{"instruction": "x"\n')),
        ("seed row not an object", c.seed_text(good + "[1, 2]\n")),
        ("seed row without instruction", c.seed_text(good + '{"input": "x"}\n')),
        (
            "seed duplicate id",
            c.seed_text('{"id": "a", "instruction": "x"}\n{"id": "a", "instruction": "y"}\n'),
        ),
        ("seed not UTF-8", c.seed_text(good.encode() + b'{"instruction": "\xff"}\n')),
        ("seed Alpaca JSON not a list", c.seed_text('{"instruction": "x"}', ".json")),
        ("seed 10 MB instruction", c.seed_text(good + json.dumps({"instruction": "x" * 10_000_000}) + "\n")),
    ]


def directory_cases(c: Cases) -> list[tuple[str, Make]]:
    """Hostile student checkpoints, run directories and held-out sets."""
    return [
        ("student missing", c.field("student", "model_path", "/no/such/student")),
        (
            "student corrupt config.json",
            c.student_with(lambda s: (s / "config.json").write_text('{"model_type": ')),
        ),
        ("student without tokenizer", c.student_with(lambda s: [p.unlink() for p in s.glob("tokenizer*")])),
        ("student config of unknown model", c.student_with(lambda s: (s / "config.json").write_text("{}"))),
        ("run_dir is a file", c.run_dir_is_file),
        ("run_dir under a file", c.run_dir_under_a_file),
        ("heldout missing", c.field("evaluation", "heldout_path", "/no/such/heldout.jsonl")),
    ]


def bad_inputs(base: dict[str, Any]) -> list[tuple[str, Make]]:
    """(kind, make(case_folder) -> config path) for every kind of hostile input probed."""
    cases = Cases(base)
    return config_cases(cases) + seed_cases(cases) + directory_cases(cases)


def probe_bad_inputs(folder: Path) -> dict[str, Any]:
    with world_server(probe_config(folder / "base", 0)).start() as server:
        config = probe_config(folder / "base", server.port, 1)
        prepare_world_files(config)
        base = config.model_dump(mode="json")
        rows = []
        for number, (kind, make) in enumerate(bad_inputs(base)):
            case = folder / f"case-{number:02d}"
            case.mkdir()
            path = make(case)
            made = sorted(p.name for p in case.iterdir())
            process = lion(path)
            out, err = process.communicate(timeout=WAIT_S)
            text = (out + err).strip()
            rows.append(
                {
                    "kind": kind,
                    "exit": process.returncode,
                    "lines": len(text.splitlines()),
                    "traceback": "Traceback" in text,
                    "written": sorted(p.name for p in case.iterdir()) != made,
                    "message": " ".join(text.split())[:160],
                }
            )
        refused = [
            r for r in rows if r["exit"] == 2 and r["lines"] == 1 and not r["traceback"] and not r["written"]
        ]
        return {
            "kinds": len(rows),
            "refused_cleanly": len(refused),
            "requests_sent": server.stats.requests,
            "rows": rows,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Three kills in one iteration.")
    args = parser.parse_args()
    plan, iterations = (KILL_PLAN[:3], 1) if args.quick else (KILL_PLAN, 2)
    with tempfile.TemporaryDirectory(prefix="lion-reliability-") as tmp:
        root = Path(tmp)
        for name in ("bad", "faults", "kills", "second", "budget"):
            (root / name).mkdir()
        bad = probe_bad_inputs(root / "bad")
        print(f"bad input: {bad['refused_cleanly']} of {bad['kinds']} refused cleanly", flush=True)
        faults = probe_faults(root / "faults")
        print(f"faults: exit {faults['exit']}, nothing lost: {faults['nothing_lost']}", flush=True)
        kills = probe_kills(root / "kills", plan, iterations)
        print(f"kills: {kills['kills_survived']} survived", flush=True)
        second = probe_second_run(root / "second")
        budget = probe_budget(root / "budget", max_tokens=60_000)
        (root / "machine").mkdir()
        machine = machine_probes(root / "machine")
    summary = [
        {
            "probe": "faults",
            "figure": f"{faults['faults_injected']} faults in {faults['requests']} requests; "
            f"exit {faults['exit']}; unscorable {100 * faults['unscorable_share']:.2f}%; "
            f"ledger {faults['ledger_tokens']} = server {faults['served_tokens']} tokens",
        },
        {
            "probe": "kills",
            "figure": f"{kills['kills_survived']} of {len(plan)} SIGKILLs survived; re-bought "
            f"{kills['rebought']} (in flight at a kill: at most {kills['in_flight_per_kill_max']} per role, "
            f"bound {CONCURRENCY}); "
            f"ledger {kills['ledger_tokens']} ≤ server {kills['served_tokens']} ≤ worst case "
            f"{kills['ledger_worst_case_tokens']}; Prefect servers left {kills['prefect_servers_left']}",
        },
        {
            "probe": "second run",
            "figure": f"exit {second['second_exit']}, {second['second_lines']} line, names the holder's "
            f"pid: {second['second_names_pid']}; first run exit {second['first_exit']}",
        },
        {
            "probe": "budget",
            "figure": f"max_tokens {budget['max_tokens']}, served {budget['served_tokens']} "
            f"after a kill (within: {budget['within_budget']}); exit {budget['exit']}, "
            f"{budget['stop_lines']} line(s), traceback: {budget['traceback']}",
        },
        {
            "probe": "bad input",
            "figure": f"{bad['refused_cleanly']} of {bad['kinds']} refused (exit 2, one line, "
            f"nothing written); {bad['requests_sent']} requests sent",
        },
        *machine_rows(machine),
    ]
    print(markdown(summary))
    for row in bad["rows"]:
        if not (row["exit"] == 2 and row["lines"] == 1 and not row["traceback"] and not row["written"]):
            print(f"not refused cleanly: {row}")
    path = save(
        "reliability",
        ".venv/bin/python benchmarks/reliability.py" + (" --quick" if args.quick else ""),
        summary,
        faults=faults,
        kills=kills,
        second_run=second,
        budget=budget,
        bad_inputs=bad,
        machine=machine,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
