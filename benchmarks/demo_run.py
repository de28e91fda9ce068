"""Run as: .venv/bin/python benchmarks/demo_run.py [--iterations 3]

The demo (configs/demo.yaml, 3 iterations) against one offline world server: (a) the loop body
(lion_core.method.loop.run_loop/run_iteration) with direct calls, no Prefect, and (b) the same body as the
Prefect `distill` flow with its effects as tasks, on the embedded server (its start-up included),
alternately, twice each (this machine's timings vary by up to 1.5x; the fastest counts);
then (c) the last flow again on its run directory.
Reports Prefect's share of the demo's wall time, 1 − (a)/(b) — with the embedded server's start-up
measured apart by an empty flow in a fresh process — and the paid calls: teacher requests of the full
run against distinct teacher prompts, and of the re-run (goal 0).
Writes benchmarks/results/demo_run.json.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import markdown, save

from flows.demo import demo_config, prepare_world_files, world_server
from flows.distill import distill
from lion_core.api.cache import ResponseCache
from lion_core.api.ledger import Ledger
from lion_core.method.direct import build_roles
from lion_core.method.direct import distill as distill_plain
from lion_core.run.rundir import RunDir, response_cache
from lion_core.world.evaluation import evaluate_on_world, read_world_set


def plain(config) -> float:
    """The same loop body without Prefect: the iterations, the held-out evaluation and the report."""
    started = time.perf_counter()
    run = RunDir(config.run_dir)
    roles = build_roles(config, Ledger(run.ledger), ResponseCache(response_cache(config)))
    tasks = read_world_set(config.evaluation.heldout_path)
    asyncio.run(
        distill_plain(config, roles, lambda ckpt: evaluate_on_world(ckpt, tasks, config.student).to_dict())
    )
    return time.perf_counter() - started


def timed_flow(config) -> float:
    started = time.perf_counter()
    asyncio.run(distill(config))
    return time.perf_counter() - started


def startup_seconds() -> float:
    """Wall time of an empty flow in a new process: the embedded Prefect server's start-up."""
    code = (
        "import time; from prefect import flow; t = time.perf_counter(); "
        "flow(name='empty')(lambda: None)(); print(time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="(a) and (b) alternate; the fastest counts.")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"a": [], "b": []}
    with tempfile.TemporaryDirectory() as tmp:
        probe = demo_config(Path(tmp) / "probe", args.iterations, 0, 0)
        with world_server(probe).start() as server:
            for repeat in range(args.repeats):
                for name, run in (("a", plain), ("b", timed_flow)):
                    config = demo_config(Path(tmp) / f"{name}{repeat}", args.iterations, 0, server.port)
                    prepare_world_files(config)
                    before = server.stats.received["teacher"]
                    times[name].append(run(config))
                    teacher = server.stats.received["teacher"] - before
            sent = server.stats.requests
            rerun_s = timed_flow(config)  # the last (b) run, again on its run directory
            rerun_requests = server.stats.requests - sent
    plain_s, flow_s = min(times["a"]), min(times["b"])
    startup = startup_seconds()
    share, share_after_startup = 1 - plain_s / flow_s, 1 - plain_s / (flow_s - startup)
    rows = [
        {"run": "(a) plain Python loop", "wall s (each repeat)": " / ".join(f"{t:.1f}" for t in times["a"])},
        {
            "run": "(b) Prefect distill flow",
            "wall s (each repeat)": " / ".join(f"{t:.1f}" for t in times["b"]),
        },
        {"run": "(c) re-run of (b)", "wall s (each repeat)": f"{rerun_s:.1f}"},
    ]
    print(markdown(rows))
    print(
        f"Prefect's share of the demo's wall time: {share:.1%} (fastest of each; {startup:.1f} s is the"
        f" embedded server's start-up; {share_after_startup:.1%} without it). Teacher requests of a full"
        f" run: {teacher}; of the re-run: {rerun_requests} (all roles)."
    )
    save(
        "demo_run",
        ".venv/bin/python benchmarks/demo_run.py",
        rows,
        prefect_share=share,
        startup_s=startup,
        prefect_share_without_startup=share_after_startup,
        teacher_requests_full_run=teacher,
        rerun_requests_all_roles=rerun_requests,
        iterations=args.iterations,
    )


if __name__ == "__main__":
    main()
