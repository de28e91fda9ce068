"""The distill flow end to end on the offline world (slow): invariants, one body with plain Python, a
re-run that pays nothing, faults and stops; a `lion run` killed mid-run (and one in batch mode, killed
mid-batch) resumes without paying twice; a probing strategy through the flow."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from flows.demo import prepare_world_files, world_server
from lion_core.api.batch_store import BatchStore
from lion_core.api.cache import ResponseCache
from lion_core.api.ledger import Ledger
from lion_core.config import LionConfig
from lion_core.method.direct import build_roles
from lion_core.method.novelty import max_rouge_l
from lion_core.method.selection import Probe
from lion_core.records import Judgement, Response, read_instructions, read_jsonl
from lion_core.run.rundir import ITERATION_FILES, RunDir, response_cache
from tests.support.configs import config_file, small_demo
from tests.support.spawn import lion_process, run_lion

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def run_distill(config: LionConfig) -> list[dict]:
    from flows.distill import distill

    return asyncio.run(distill(config))


def check_invariants(run: RunDir, iterations: int, tau: float) -> None:
    for k in range(1, iterations + 1):
        it, nxt = run.iteration(k), run.iteration(k + 1)
        for name in ITERATION_FILES:
            assert it.file(name).exists(), it.file(name)
        cache = read_instructions(it.file("cache_pool"), "jsonl")
        train = read_instructions(it.file("train_pool"), "jsonl")
        generated = read_instructions(it.file("generated"), "jsonl")
        assert {i.id for i in train} <= {i.id for i in cache}
        assert read_instructions(nxt.file("cache_pool"), "jsonl") == cache + generated
        assert read_instructions(nxt.file("train_pool"), "jsonl") == generated
        ids = [i.id for i in cache]
        assert [r.id for r in read_jsonl(it.file("teacher"), Response)] == ids
        assert [r.id for r in read_jsonl(it.file("student"), Response)] == ids
        judgements = read_jsonl(it.file("judgements"), Judgement)
        assert sorted(j.id for j in judgements) == sorted(ids)
        for j in judgements:
            assert j.label == "unscorable" or (j.label == "hard") == (j.gap >= tau)
        hard = (
            {i.id for i in read_instructions(it.file("hard"), "jsonl")}
            if it.file("hard").stat().st_size
            else set()
        )
        assert hard == {j.id for j in judgements if j.label == "hard"}
        assert generated and all(g.origin in ("hard", "easy") and g.iteration == k for g in generated)
        texts = [g.instruction for g in generated]
        assert max(max_rouge_l(texts, [c.instruction for c in cache]), default=0) < 0.7
        assert all(max_rouge_l([t], texts[:n])[0] < 0.7 for n, t in enumerate(texts) if n)
        assert (it.student / "config.json").exists() or (it.student / "adapter_config.json").exists()


def test_distill_runs_keeps_the_invariants_and_a_rerun_pays_nothing(harness, tmp_path: Path) -> None:
    config = small_demo(tmp_path / "run", port=0)
    with world_server(config).start() as server:
        config = small_demo(tmp_path / "run", port=server.port)
        prepare_world_files(config)
        summaries = run_distill(config)
        assert [s["iteration"] for s in summaries] == [1, 2]
        run = RunDir(config.run_dir)
        check_invariants(run, 2, config.loop.tau)
        for name in ("config.yaml", "ledger.json", "report.md", "plots/hard_share.png", "plots/mean_gap.png"):
            assert (run.root / name).exists(), name
        ledger = json.loads(run.ledger.read_text())
        assert ledger["roles"]["teacher"]["requests"] == server.stats.received["teacher"]
        assert summaries[0]["heldout"]["n"] == 36
        assert "| iter |" in run.report.read_text()

        sent = server.stats.requests
        again = run_distill(config)
        assert server.stats.requests == sent  # nothing re-sent: every task and reply is cached
        assert [s["hard"] for s in again] == [s["hard"] for s in summaries]

    plain = plain_run(small_demo(tmp_path / "plain", port=0))
    assert without_timings(plain) == without_timings(summaries)  # one body: the same numbers
    for k in (1, 2):  # ... and the same files, byte for byte
        for name in ("train_pool", "cache_pool", "teacher", "judgements", "hard", "easy", "generated", "sft"):
            flow_file, plain_file = (
                run.iteration(k).file(name),
                RunDir(tmp_path / "plain").iteration(k).file(name),
            )
            assert plain_file.read_bytes() == flow_file.read_bytes(), (k, name)


def plain_run(config: LionConfig, iterations: int = 2, **loop) -> list[dict]:
    """The same run as plain Python (lion_core.method.direct.distill, no Prefect) against a fresh world."""
    make = lambda run_dir, port: small_demo(run_dir, port=port, iterations=iterations, **loop)  # noqa: E731
    return plain_run_of(make, config.run_dir)


def plain_run_of(make: Callable[[Path, int], LionConfig], run_dir: Path) -> list[dict]:
    """The run `make(run_dir, port)` configures, as plain Python against a fresh world."""
    from lion_core.method.direct import distill
    from lion_core.world.evaluation import evaluate_on_world, read_world_set

    with world_server(make(run_dir, 0)).start() as server:
        config = make(run_dir, server.port)
        prepare_world_files(config)
        roles = build_roles(config, Ledger(RunDir(run_dir).ledger), ResponseCache(response_cache(config)))
        tasks = read_world_set(config.evaluation.heldout_path)
        return asyncio.run(
            distill(config, roles, lambda ckpt: evaluate_on_world(ckpt, tasks, config.student).to_dict())
        )


def without_timings(summaries: list[dict]) -> list[dict]:
    """Summaries without wall-clock fields and without the requests each role sent (the only ones two
    identical runs may differ in: on a loaded machine a request that timed out is sent again and counts
    twice — seen once in CI, teacher 106 against 104; its tokens, which only replies carry, stay compared)."""
    untimed = []
    for s in summaries:
        preference = s.get("preference") and {**s["preference"], "seconds": None}
        train = {**s["train"], "seconds": None}
        usage = {role: {**counts, "requests": None} for role, counts in s["usage"].items()}
        untimed.append(
            {
                **s,
                "seconds": None,
                "stage_seconds": None,
                "train": train,
                "preference": preference,
                "usage": usage,
            }
        )
    return untimed


def test_referee_outage_is_retried_batch_by_batch(harness, tmp_path: Path) -> None:
    config = small_demo(tmp_path / "run", port=0, iterations=1)
    with world_server(config).start() as server:
        data = small_demo(tmp_path / "run", port=server.port, iterations=1).model_dump()
        data["referee"]["max_retries"] = 0  # every 5xx fails its batch: Prefect must retry it
        config = LionConfig.model_validate(data)
        prepare_world_files(config)
        server.faults.share_5xx, server.faults.roles, server.faults.max_faults = 0.3, ["referee"], 40
        summaries = run_distill(config)
        assert server.stats.faults["5xx"] == 40
        judged = read_jsonl(RunDir(config.run_dir).iteration(1).file("judgements"), Judgement)
        pool = read_instructions(RunDir(config.run_dir).iteration(1).file("cache_pool"), "jsonl")
        assert sorted(j.id for j in judged) == sorted(i.id for i in pool)
        assert summaries[0]["hard"] + summaries[0]["easy"] + summaries[0]["unscorable"] == len(pool)


def test_a_referee_without_readable_verdicts_stops_the_run_and_says_why(harness, tmp_path: Path) -> None:
    config = small_demo(tmp_path / "run", port=0)
    with world_server(config).start() as server:
        data = small_demo(tmp_path / "run", port=server.port, referee_retries=0).model_dump()
        data["referee"]["skip_identical"] = False  # else equal answers are scorable without the referee
        config = LionConfig.model_validate(data)
        prepare_world_files(config)
        server.faults.share_malformed, server.faults.roles = 1.0, ["referee"]
        summaries = run_distill(config)
        assert server.stats.received["generator"] == 0
    run = RunDir(config.run_dir)
    pool = read_instructions(run.iteration(1).file("cache_pool"), "jsonl")
    assert [s["iteration"] for s in summaries] == [1]
    assert summaries[0]["unscorable"] == len(pool) and summaries[0]["hard"] == summaries[0]["easy"] == 0
    assert summaries[0]["stopped"].startswith("no scorable judgements")  # not "equilibrium"
    assert not run.iteration(2).root.exists()  # no empty Train Pool for an iteration that cannot run
    assert "Stopped after iteration 1: no scorable judgements" in run.report.read_text()


def test_a_generator_whose_every_reply_is_filtered_stops_the_run_and_says_why(
    harness, tmp_path: Path
) -> None:
    config = small_demo(tmp_path / "run", port=0)
    with world_server(config).start() as server:
        config = small_demo(tmp_path / "run", port=server.port, min_words=3)  # as the original
        prepare_world_files(config)
        server.roles = replace(server.roles, malformed_share=1.0)  # every new instruction is unusable
        summaries = run_distill(config)
    run = RunDir(config.run_dir)
    assert [s["iteration"] for s in summaries] == [1]
    assert summaries[0]["generated"] == 0 and summaries[0]["requested"] > 0
    assert summaries[0]["stopped"].startswith("no new instruction kept")
    assert run.iteration(1).file("generated").read_text() == ""
    assert not run.iteration(2).root.exists()  # no empty Train Pool for an iteration that cannot learn


def test_a_killed_run_resumes_without_paying_twice(tmp_path: Path) -> None:
    config = small_demo(tmp_path / "run", port=0, iterations=2)
    with world_server(config).start() as server:
        server.faults.latency_ms = 20  # keeps the referee fan-out long enough to be interrupted
        config = small_demo(tmp_path / "run", port=server.port, iterations=2)
        path = config_file(config, tmp_path)
        with lion_process("run", str(path)) as first:
            deadline = time.monotonic() + 300
            while server.stats.received["referee"] < 40:  # iteration 1, mid-discrimination
                assert first.poll() is None and time.monotonic() < deadline, "the run ended before the kill"
                time.sleep(0.05)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            teacher_before = server.stats.received["teacher"]
            assert teacher_before > 0 and not RunDir(config.run_dir).iteration(1).summary.exists()

            second = run_lion("run", str(path), timeout=600)
            assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
            assert server.stats.repeated_teacher_requests() == 0  # no teacher request sent twice
            run = RunDir(config.run_dir)
            check_invariants(run, 2, config.loop.tau)
            for file in run.root.rglob("*.json*"):
                if ".prefect-results" in file.parts:
                    continue
                text = file.read_text()
                rows = text.splitlines() if file.suffix == ".jsonl" else [text]
                assert all(isinstance(json.loads(row), (dict, list)) for row in rows if row.strip()), (
                    file
                )  # not torn
            assert not list(run.root.rglob("*.tmp"))

            third = run_lion("run", str(path), timeout=600)
            assert third.returncode == 0 and "this run: 0 API requests sent" in third.stdout  # it says so


BATCH_MODE = {"mode": "batch", "batch": {"poll_interval_s": 0.1, "collect_s": 0.3}}


def batch_demo_config(run_dir: Path, port: int) -> LionConfig:
    """The small demo (2 iterations) with every role in batch mode."""
    data = small_demo(run_dir, port).model_dump()
    for role in ("teacher", "referee", "generator"):
        data[role].update(BATCH_MODE)
    return LionConfig.model_validate(data)


def test_batch_mode_run_killed_mid_batch_reattaches_and_finishes(tmp_path: Path) -> None:
    config = batch_demo_config(tmp_path / "run", 0)
    with world_server(config).start() as server:
        config = batch_demo_config(tmp_path / "run", server.port)
        path = config_file(config, tmp_path)
        server.faults.batch_delay_s = 3600.0  # the first batch stays in flight until after the kill
        with lion_process("run", str(path)) as first:
            deadline = time.monotonic() + 300
            while server.stats.batches["created"] == 0:
                assert first.poll() is None and time.monotonic() < deadline, "the run ended before the kill"
                time.sleep(0.05)
            time.sleep(1.0)  # polling the batch it recorded
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            assert server.stats.batches["created"] == 1
            server.faults.batch_delay_s = 0.0
            second = run_lion("run", str(path), timeout=900)
            assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
            assert server.stats.repeated_teacher_requests() == 0  # the first batch re-attached, not re-sent
            assert server.stats.batches["completed"] == server.stats.batches["created"] > 1
            run = RunDir(config.run_dir)
            summaries = [json.loads(run.iteration(k).summary.read_text()) for k in (1, 2)]
            assert all("identical" in s for s in summaries)
            store = BatchStore(ResponseCache(response_cache(config)).journal)
            assert store.counts() == {"collected": server.stats.batches["created"]}
            ledger = json.loads(run.ledger.read_text())
            assert all(role["unsettled"] == 0 for role in ledger["roles"].values())
            assert ledger["total"]["tokens"] == server.stats.prompt_tokens + server.stats.completion_tokens
            third = run_lion("run", str(path), timeout=600)
            assert third.returncode == 0 and "this run: 0 API requests sent" in third.stdout


def probing_config(run_dir: Path, port: int) -> LionConfig:
    return small_demo(run_dir, port, iterations=2, selection="learnable", learnable_patience=1)


def test_a_probing_strategy_runs_through_the_flow_like_the_paper_and_pays_once(
    harness, tmp_path: Path
) -> None:
    with world_server(probing_config(tmp_path / "run", 0)).start() as server:
        config = probing_config(tmp_path / "run", server.port)
        prepare_world_files(config)
        summaries = run_distill(config)
        run = RunDir(config.run_dir)
        for k in (1, 2):
            assert read_jsonl(run.iteration(k).probes, Probe), k
            assert summaries[k - 1]["selection"]["selection"] == "learnable"
        sent = server.stats.requests
        assert [s["hard"] for s in run_distill(config)] == [s["hard"] for s in summaries]
        assert server.stats.requests == sent  # the probes' requests are cached like every other
    plain = plain_run_of(probing_config, tmp_path / "plain")
    # one body, with its probes: every iteration identical, summaries and probes byte for byte
    assert without_timings(plain) == without_timings(summaries)
    for k in (1, 2):
        flow_file = run.iteration(k).probes
        assert RunDir(tmp_path / "plain").iteration(k).probes.read_bytes() == flow_file.read_bytes(), k


def flow_and_plain(make: Callable[[Path, int], LionConfig], tmp_path: Path) -> tuple[RunDir, list[dict]]:
    """The run through the flow (then re-run: nothing may be paid again) and as plain Python: the same
    summaries; the flow's run directory and summaries."""
    with world_server(make(tmp_path / "run", 0)).start() as server:
        config = make(tmp_path / "run", server.port)
        prepare_world_files(config)
        summaries = run_distill(config)
        sent = server.stats.requests
        assert without_timings(run_distill(config)) == without_timings(summaries)
        assert server.stats.requests == sent  # every call of the new steps is cached like the others
    assert without_timings(plain_run_of(make, tmp_path / "plain")) == without_timings(summaries)
    return RunDir(config.run_dir), summaries


def same_files(tmp_path: Path, paths: Callable[[RunDir, int], list[Path]]) -> None:
    """The flow's and plain Python's files, byte for byte, in iterations 1 and 2."""
    for k in (1, 2):
        for flow_file, plain_file in zip(
            paths(RunDir(tmp_path / "run"), k), paths(RunDir(tmp_path / "plain"), k)
        ):
            assert plain_file.read_bytes() == flow_file.read_bytes(), (k, flow_file.name)


def sampled_config(run_dir: Path, port: int) -> LionConfig:
    data = small_demo(run_dir, port, iterations=2).model_dump()
    data["referee"]["sample"] = {"size": 20, "min_per_stratum": 5}
    return LionConfig.model_validate(data)


def test_a_sampled_referee_runs_through_the_flow_like_plain_python_and_pays_once(
    harness, tmp_path: Path
) -> None:
    _, summaries = flow_and_plain(sampled_config, tmp_path)
    assert [s["judged"] for s in summaries] == [20, 24 + 20]  # 20 of the 60 seeds; the newest 24 + 20 older
    same_files(
        tmp_path, lambda r, k: [r.iteration(k).judged_pool, r.iteration(k).pairs, r.iteration(k).file("hard")]
    )


def preferring_config(run_dir: Path, port: int) -> LionConfig:
    data = small_demo(run_dir, port, iterations=2, selection="progress").model_dump()
    data["student"].update(objective="sft+dpo", preference={"learning_rate": 3e-3, "max_steps": 2})
    return LionConfig.model_validate(data)


def test_progress_and_the_preference_stage_run_through_the_flow_like_plain_python(
    harness, tmp_path: Path
) -> None:
    run, summaries = flow_and_plain(preferring_config, tmp_path)
    for k, summary in enumerate(summaries, start=1):
        assert (
            summary["preference"]["steps"] == 2
            and run.iteration(k).final_student == run.iteration(k).preferred
        )
        assert summary["selection"]["selection"] == "progress"
    same_files(tmp_path, lambda r, k: [r.iteration(k).losses_after, r.iteration(k).pairs, r.iteration(k).dpo])


def test_a_final_imitation_round_runs_through_the_flow_as_in_plain_python(harness, tmp_path: Path) -> None:
    config = small_demo(tmp_path / "run", port=0, iterations=1, final_imitation=True)
    with world_server(config).start() as server:
        config = small_demo(tmp_path / "run", port=server.port, iterations=1, final_imitation=True)
        prepare_world_files(config)
        summaries = run_distill(config)
        run = RunDir(config.run_dir)
        assert [s["iteration"] for s in summaries] == [1, 2] and summaries[1]["final_imitation"] is True
        final = run.iteration(2)
        generated = read_instructions(run.iteration(1).file("generated"), "jsonl")
        assert summaries[1]["train_pool"] == len(generated) and (final.student / "config.json").exists()
        teacher = read_jsonl(final.file("teacher"), Response)
        assert [r.id for r in teacher] == [i.id for i in read_instructions(final.file("cache_pool"), "jsonl")]
        assert not final.file("judgements").exists() and not final.file("generated").exists()
        assert "2 (imitation)" in run.report.read_text()
        sent = server.stats.requests
        assert run_distill(config)[1]["final_imitation"] is True
        assert server.stats.requests == sent  # resumed: the round is not replayed
    plain = plain_run(small_demo(tmp_path / "plain", port=0), iterations=1, final_imitation=True)
    assert without_timings(plain) == without_timings(summaries)
    for name in ("teacher", "sft"):
        plain_file = RunDir(tmp_path / "plain").iteration(2).file(name)
        assert plain_file.read_bytes() == final.file(name).read_bytes(), name


def test_a_deployment_run_takes_the_lock_and_asks_its_endpoints_before_any_work(
    harness, tmp_path: Path
) -> None:
    """Issue 22, item 5: the `distill` flow run as a deployment took neither the run directory's lock nor
    asked whether its endpoints answer (as `lion run` does around it)."""
    import subprocess
    import sys

    from lion_core.config import ConfigError
    from lion_core.run.rundir import RunLockedError
    from tests.support.spawn import free_port

    config = small_demo(tmp_path / "run", port=free_port(), iterations=1)
    prepare_world_files(config)
    with pytest.raises(ConfigError, match=r"^teacher\.base_url: http://127\.0\.0\.1:\d+/v1 is not reachable"):
        run_distill(config)
    hold = (
        "import sys, time, pathlib; from lion_core.run.rundir import RunDir, RunLock; "
        "RunLock(RunDir(pathlib.Path(sys.argv[1]))).acquire(); print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(config.run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            run_distill(config)
    finally:
        holder.kill()
        holder.wait()
    assert not RunDir(config.run_dir).config.exists()  # nothing of the run written
