"""Run as: make scale   (or .venv/bin/python benchmarks/scale.py [--sizes 2000 10000 52000])

The paper-shaped pipeline end to end at growing seed pools, through the real `lion run` path (the
Prefect `distill` flow on the embedded Prefect server) in a subprocess, against the offline world
server in a process of its own (no added latency): 3 iterations, paper selection, hard/easy ratio 1,
N = new_per_iteration scaled like the paper (6,000 new per iteration at a 52K seed pool, ~11.5%),
`loop.batch_size` 64 as configs/openai.yaml. The student is the world's tiny character-level model with
a few dozen optimizer steps per round (lion_core/world/demo.yaml otherwise), so the figures are those
of the orchestration, the roles' requests and the run directory, not of a real fine-tune. The seed pool
is drawn with `lion world sample --n SIZE`; the held-out set (90 tasks, another seed; it may share a
few instructions with the seed pool: it times the held-out stage, nothing more) with `--seed 1`.

Per size: wall time of the run and of a second `lion run` of the finished run directory (resume); the
wall time per stage summed over iterations (RUN/iter_K/summary.json `stage_seconds`) and per item;
requests per role (the ledger's `usage`, and the world server's own counters); peak RSS of the
`lion run` process (VmHWM, polled) and of its child processes (the embedded Prefect server, summed);
the run directory's size; the load average. Writes benchmarks/results/scale.json and scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import REPO, RESULTS, free_port, markdown, save, world_process, world_stats

from flows.demo import DEMO_CONFIG
from lion_core.config import LionConfig, dump_config, load_config
from lion_core.records import atomic_write_text

ROLES = ("teacher", "referee", "generator")
STAGES = ("imitation", "discrimination", "generation", "heldout")
PAPER_SEED_POOL = 52_000
PAPER_NEW_PER_ITERATION = 6_000
DEFAULT_SIZES = (2_000, 10_000, 52_000)
ITERATIONS = 3
MAX_STEPS = 30  # optimizer steps per round: the tiny student costs the same at every size
BATCH_SIZE = 64  # requests per fan-out task, as configs/openai.yaml
HELDOUT_SIZE = 90
SEED, HELDOUT_SEED = 0, 1
POLL_S = 0.5  # VmHWM is the kernel's high-water mark: polling misses only the last half second
RUN_LIMIT_S = 4 * 3600
MS, KIB, MIB = 1000, 1024, 1024**2
TAIL_CHARS = 2000
WORK = REPO / "runs" / "scale"


def new_per_iteration(size: int) -> int:
    """N at this seed pool, in the paper's proportion (6,000 at 52,000)."""
    return max(1, round(size * PAPER_NEW_PER_ITERATION / PAPER_SEED_POOL))


def lion(*args: str) -> list[str]:
    return [sys.executable, "-m", "lion_cli", *args]


def draw(path: Path, n: int, seed: int) -> float:
    """`lion world sample --n n --seed seed > path`; its seconds. CalledProcessError when it fails."""
    started = time.perf_counter()
    with path.open("w", encoding="utf-8") as out:
        subprocess.run(
            lion("world", "sample", "--n", str(n), "--seed", str(seed)),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            check=True,
        )
    return time.perf_counter() - started


def scale_config(folder: Path, size: int, url: str, student: Path, args: argparse.Namespace) -> Path:
    """demo.yaml pointed at this size's files and the world at `url`; written to folder/config.yaml."""
    data = load_config(Path(str(DEMO_CONFIG))).model_dump()
    for endpoint in (*(data[role] for role in ROLES), data["evaluation"]["judge"]):
        endpoint["base_url"] = f"{url}/v1"
    data["run_dir"] = folder / "run"
    data["student"].update(model_path=student, max_steps=args.max_steps)
    data["pools"]["seed_path"] = folder / "seed.jsonl"
    data["evaluation"]["heldout_path"] = folder / "heldout.jsonl"
    data["world"].update(seed_size=size, heldout_size=HELDOUT_SIZE)
    data["loop"].update(
        iterations=args.iterations,
        new_per_iteration=new_per_iteration(size),
        batch_size=BATCH_SIZE,
        selection="paper",
        hard_easy_ratio=1.0,
        seed=SEED,
    )
    path = folder / "config.yaml"
    dump_config(LionConfig.model_validate(data), path)
    return path


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def high_water_kib(pid: int) -> int:
    """The peak resident set size of a live process so far (VmHWM, KiB); 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def timed_run(config: Path, log: Path) -> dict[str, Any]:
    """One `lion run CONFIG` with its output in `log`: exit code, wall time, peak RSS (MiB) of the
    process itself and the sum of its child processes' peaks."""
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"}
    peaks: dict[int, int] = {}
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(lion("run", str(config)), cwd=REPO, env=env, stdout=out, stderr=out)
        while process.poll() is None and time.perf_counter() - started < RUN_LIMIT_S:
            for pid in (process.pid, *children(process.pid)):
                peaks[pid] = max(peaks.get(pid, 0), high_water_kib(pid))
            time.sleep(POLL_S)
        if process.poll() is None:
            process.kill()
        returncode = process.wait()
    own = peaks.pop(process.pid, 0)
    tail = log.read_text(encoding="utf-8", errors="replace")[-TAIL_CHARS:]
    return {
        "exit": returncode,
        "wall_s": round(time.perf_counter() - started, 1),
        "rss_peak_mib": round(own * KIB / MIB, 1),
        "children_rss_peak_mib": round(sum(peaks.values()) * KIB / MIB, 1),
        "output_tail": tail.replace(f"{REPO}/", ""),  # paths relative to the repository, as in a clone
    }


def read_summaries(run_dir: Path) -> list[dict[str, Any]]:
    paths = sorted(run_dir.glob("iter_*/summary.json"), key=lambda p: int(p.parent.name.split("_")[1]))
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


def stage_figures(summaries: list[dict[str, Any]], heldout_items: int) -> dict[str, Any]:
    """Seconds per stage over the iterations, and per unit of work: a Train Pool item (teacher answer +
    its share of the fine-tune), a Cache Pool item (student answer + two referee orders), a kept new
    instruction, a held-out item."""
    seconds = {s: round(sum(x.get("stage_seconds", {}).get(s, 0.0) for x in summaries), 1) for s in STAGES}
    units = {
        "imitation": sum(x["train_pool"] for x in summaries),
        "discrimination": sum(x["cache_pool"] for x in summaries),
        "generation": sum(x.get("generated", 0) for x in summaries),
        "heldout": heldout_items * sum(1 for x in summaries if x.get("heldout")),
    }
    per_item = {s: round(MS * seconds[s] / units[s], 2) if units[s] else None for s in STAGES}
    return {"stage_s": seconds, "stage_units": units, "stage_ms_per_unit": per_item}


def usage_figures(summaries: list[dict[str, Any]], served: dict[str, int]) -> dict[str, Any]:
    """Requests per role summed over iterations (the ledger), cache hits, and the server's count."""
    requests = {r: sum(int(x["usage"].get(r, {}).get("requests", 0)) for x in summaries) for r in ROLES}
    hits = sum(int(u.get("cache_hits", 0)) for x in summaries for u in x["usage"].values())
    return {"requests": requests, "cache_hits": hits, "server_received": served}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def received(url: str) -> dict[str, int]:
    return dict(world_stats(url)["received"])


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {role: after.get(role, 0) - before.get(role, 0) for role in sorted(set(after) | set(before))}


def prepare(folder: Path, size: int) -> float:
    """A fresh folder with this size's seed pool and the held-out set; seconds of the seed draw."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    draw(folder / "heldout.jsonl", HELDOUT_SIZE, HELDOUT_SEED)
    return draw(folder / "seed.jsonl", size, SEED)


def measure(size: int, url: str, student: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One size: draw the pool, run, read the summaries, resume; every figure of the row."""
    folder = args.work_dir / str(size)
    row: dict[str, Any] = {"seed_pool": size, "new_per_iteration": new_per_iteration(size)}
    try:
        row["sample_s"] = round(prepare(folder, size), 1)
    except subprocess.CalledProcessError as err:
        return {**row, "error": f"lion world sample --n {size} failed: {' '.join(err.stderr.split())}"}
    config, run_dir = scale_config(folder, size, url, student, args), folder / "run"
    load_before, before = os.getloadavg(), received(url)
    first = timed_run(config, folder / "run.log")
    load_after, after = os.getloadavg(), received(url)
    summaries = read_summaries(run_dir)  # before the resume, which rewrites stage_seconds
    size_bytes = dir_bytes(run_dir)
    resumed = timed_run(config, folder / "resume.log")
    final_pool = summaries[-1]["cache_pool"] + summaries[-1].get("generated", 0) if summaries else 0
    return {
        **row,
        "iterations": len(summaries),
        "final_cache_pool": final_pool,
        "run": first,
        "resume": {**resumed, "server_received": delta(received(url), after)},
        **stage_figures(summaries, HELDOUT_SIZE),
        **usage_figures(summaries, delta(after, before)),
        "run_dir_bytes": size_bytes,
        "run_dir_bytes_per_cache_item": round(size_bytes / final_pool) if final_pool else None,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }


def per_item(ms: float | None) -> str:
    return "—" if ms is None else f"{ms:.1f}"


def size_cells(row: dict[str, Any]) -> dict[str, str]:
    return {"seed pool": f"{row['seed_pool']:,}", "N": f"{row['new_per_iteration']:,}"}


def time_row(row: dict[str, Any]) -> dict[str, Any]:
    """The wall-time table's row of one size."""
    if "error" in row:
        return {**size_cells(row), "run": row["error"]}
    s, ms = row["stage_s"], row["stage_ms_per_unit"]
    return {
        **size_cells(row),
        "final cache pool": f"{row['final_cache_pool']:,}",
        "run s (exit)": f"{row['run']['wall_s']:.0f} ({row['run']['exit']})",
        "resume s (exit)": f"{row['resume']['wall_s']:.0f} ({row['resume']['exit']})",
        **{f"{stage} s (ms/item)": f"{s[stage]:.1f} ({per_item(ms[stage])})" for stage in STAGES},
        "load avg 1 min (before / after)": f"{row['loadavg_before'][0]:.1f} / {row['loadavg_after'][0]:.1f}",
    }


def resource_row(row: dict[str, Any]) -> dict[str, Any]:
    """The requests/memory/disk table's row of one size."""
    if "error" in row:
        return {"seed pool": f"{row['seed_pool']:,}", "error": row["error"]}
    ledger, server = row["requests"], row["server_received"]
    return {
        "seed pool": f"{row['seed_pool']:,}",
        **{f"{role} req. (server)": f"{ledger[role]:,} ({server.get(role, 0):,})" for role in ROLES},
        "resume req.": f"{sum(row['resume']['server_received'].values()):,}",
        "peak RSS lion run MiB": row["run"]["rss_peak_mib"],
        "children MiB": row["run"]["children_rss_peak_mib"],
        "run dir MiB": f"{row['run_dir_bytes'] / MIB:.1f}",
        "KiB / cache item": f"{row['run_dir_bytes_per_cache_item'] / KIB:.1f}",
    }


def write_markdown(rows: list[dict[str, Any]], name: str, command: str) -> Path:
    text = "\n\n".join(
        [
            f"Command: `{command}`",
            "### Wall time (stage seconds summed over iterations; ms per unit of work)",
            markdown([time_row(r) for r in rows]),
            "### Requests (ledger, and the world server's own count), memory, disk",
            markdown([resource_row(r) for r in rows]),
        ]
    )
    path = RESULTS / f"{name}.md"
    atomic_write_text(path, text + "\n")
    return path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="Seed pools.")
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    parser.add_argument("--max-steps", type=int, default=MAX_STEPS, help="Student steps per round.")
    parser.add_argument("--work-dir", type=Path, default=WORK, help="Run directories (replaced).")
    parser.add_argument("--name", default="scale", help="Results: benchmarks/results/NAME.{json,md}.")
    return parser.parse_args()


def merged(name: str, row: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of benchmarks/results/NAME.json with this size's row replaced (or added): a run of some
    sizes keeps the others' figures."""
    path = RESULTS / f"{name}.json"
    rows = json.loads(path.read_text(encoding="utf-8"))["rows"] if path.exists() else []
    kept = [r for r in rows if r["seed_pool"] != row["seed_pool"]]
    return sorted([*kept, row], key=lambda r: r["seed_pool"])


def main() -> None:
    args = parse_args()
    command = "make scale   (some sizes: .venv/bin/python benchmarks/scale.py --sizes 2000 10000)"
    student = args.work_dir / "tiny-student"
    if not (student / "config.json").exists():
        subprocess.run(lion("world", "student", "--out", str(student)), cwd=REPO, check=True)
    with world_process(free_port()) as url:
        for size in args.sizes:
            started = time.perf_counter()
            row = measure(size, url, student, args)
            row.update(size_wall_s=round(time.perf_counter() - started, 1), max_steps=args.max_steps)
            rows = merged(args.name, {**row, "measured": time.strftime("%Y-%m-%d %H:%M")})
            print(f"size {size}: {row['size_wall_s']:.0f} s in all", flush=True)
            save(args.name, command, rows, iterations=args.iterations, max_steps=args.max_steps)
            print(write_markdown(rows, args.name, command).read_text(encoding="utf-8"), flush=True)


if __name__ == "__main__":
    main()
