"""Run as: .venv/bin/python benchmarks/demo_run.py [--iterations 3]

The demo (configs/demo.yaml, 3 iterations) three times against one offline world server:
  (a) as plain Python (lion_core.loop, no Prefect), (b) as the Prefect `distill` flow on the embedded
  server (its start-up included), (c) the same flow again on (b)'s run directory.
Reports Prefect's share of the demo's wall time, 1 − (a)/(b), and the paid calls: teacher requests
of the full run against distinct teacher prompts, and of the re-run (goal 0).
Writes benchmarks/results/demo_run.json.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from common import markdown, save

from flows.demo import demo_config, prepare_world_files, world_server
from flows.distill import distill
from lion_core.evaluation import evaluate_on_world, read_world_set
from lion_core.ledger import Ledger
from lion_core.llm import ResponseCache
from lion_core.loop import build_roles, run_iteration
from lion_core.pools import initial_pools
from lion_core.records import read_instructions


def plain(config) -> float:
    """The same loop without Prefect: three iterations and the held-out evaluation of each."""
    started = time.perf_counter()
    roles = build_roles(config, Ledger(), ResponseCache(config.run_dir / "responses.sqlite"))
    pools = initial_pools(read_instructions(config.pools.seed_path))
    heldout = read_world_set(config.evaluation.heldout_path)
    checkpoint, known = config.student.model_path, []
    for k in range(1, config.loop.iterations + 1):
        out = asyncio.run(
            run_iteration(roles, config, k, pools, checkpoint, config.run_dir / f"iter_{k}", known)
        )
        evaluate_on_world(Path(out.train.checkpoint), heldout, config.student)
        checkpoint, known, pools = Path(out.train.checkpoint), out.discrimination.teacher, out.next_pools
    return time.perf_counter() - started


def timed_flow(config) -> float:
    started = time.perf_counter()
    asyncio.run(distill(config))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        probe = demo_config(Path(tmp) / "a", args.iterations, 0, 0)
        with world_server(probe).start() as server:
            configs = {name: demo_config(Path(tmp) / name, args.iterations, 0, server.port) for name in "ab"}
            for config in configs.values():
                prepare_world_files(config)
            plain_s = plain(configs["a"])
            teacher_a = server.stats.received["teacher"]
            flow_s = timed_flow(configs["b"])
            teacher_b = server.stats.received["teacher"] - teacher_a
            distinct = len(server.stats.teacher_keys)
            sent = server.stats.requests
            rerun_s = timed_flow(configs["b"])
            rerun_requests = server.stats.requests - sent
    rows = [
        {"run": "(a) plain Python loop", "wall s": round(plain_s, 1), "teacher requests": teacher_a},
        {"run": "(b) Prefect distill flow", "wall s": round(flow_s, 1), "teacher requests": teacher_b},
        {"run": "(c) re-run of (b)", "wall s": round(rerun_s, 1), "teacher requests": rerun_requests},
    ]
    share = 1 - plain_s / flow_s
    print(markdown(rows))
    print(
        f"Prefect's share of the demo's wall time: {share:.1%}; "
        f"distinct teacher prompts over (a) and (b): {distinct}"
    )
    save(
        "demo_run",
        ".venv/bin/python benchmarks/demo_run.py",
        rows,
        prefect_share=share,
        iterations=args.iterations,
        rerun_requests_all_roles=rerun_requests,
    )


if __name__ == "__main__":
    main()
