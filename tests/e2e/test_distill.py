"""The Prefect flows on the offline world: invariants, resume without paying twice, crash, faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from flows.demo import demo_config, prepare_world_files, world_server
from lion_core.config import LionConfig, dump_config
from lion_core.method.novelty import max_rouge_l
from lion_core.records import Judgement, Response, read_instructions, read_jsonl
from lion_core.run.rundir import ITERATION_FILES, RunDir, response_cache

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def small_config(run_dir: Path, port: int, iterations: int = 2, **loop: object) -> LionConfig:
    """The demo, shrunk to seconds: 60 seeds, 24 new per iteration, 20 training steps."""
    data = demo_config(run_dir, iterations, 0, port).model_dump()
    data["world"].update(seed_size=60, heldout_size=36)
    data["student"].update(max_steps=20, epochs=1)
    data["loop"].update(new_per_iteration=24, batch_size=16, task_retry_delay_s=0.2, **loop)
    return LionConfig.model_validate(data)


def run_distill(config: LionConfig) -> list[dict]:
    import asyncio

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
    config = small_config(tmp_path / "run", port=0)
    with world_server(config).start() as server:
        config = small_config(tmp_path / "run", port=server.port)
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

    plain = plain_run(small_config(tmp_path / "plain", port=0))
    assert without_timings(plain) == without_timings(summaries)  # one body: the same numbers
    for k in (1, 2):  # ... and the same files, byte for byte
        for name in ("train_pool", "cache_pool", "teacher", "judgements", "hard", "easy", "generated", "sft"):
            flow_file, plain_file = (
                run.iteration(k).file(name),
                RunDir(tmp_path / "plain").iteration(k).file(name),
            )
            assert plain_file.read_bytes() == flow_file.read_bytes(), (k, name)


def plain_run(config: LionConfig) -> list[dict]:
    """The same run as plain Python (lion_core.method.loop.distill, no Prefect) against a fresh world."""
    import asyncio

    from lion_core.api.cache import ResponseCache
    from lion_core.api.ledger import Ledger
    from lion_core.method.direct import build_roles, distill
    from lion_core.world.evaluation import evaluate_on_world, read_world_set

    with world_server(config).start() as server:
        config = small_config(config.run_dir, port=server.port)
        prepare_world_files(config)
        run = RunDir(config.run_dir)
        roles = build_roles(config, Ledger(run.ledger), ResponseCache(response_cache(config)))
        tasks = read_world_set(config.evaluation.heldout_path)
        return asyncio.run(
            distill(config, roles, lambda ckpt: evaluate_on_world(ckpt, tasks, config.student).to_dict())
        )


def without_timings(summaries: list[dict]) -> list[dict]:
    """Summaries without wall-clock fields (the only ones two identical runs may differ in)."""
    return [
        {**s, "seconds": None, "stage_seconds": None, "train": {**s["train"], "seconds": None}}
        for s in summaries
    ]


def test_referee_outage_is_retried_batch_by_batch(harness, tmp_path: Path) -> None:
    config = small_config(tmp_path / "run", port=0, iterations=1)
    with world_server(config).start() as server:
        data = small_config(tmp_path / "run", port=server.port, iterations=1).model_dump()
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
    config = small_config(tmp_path / "run", port=0)
    with world_server(config).start() as server:
        data = small_config(tmp_path / "run", port=server.port, referee_retries=0).model_dump()
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
    config = small_config(tmp_path / "run", port=0)
    with world_server(config).start() as server:
        config = small_config(tmp_path / "run", port=server.port, min_words=3)  # as the original
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
    config = small_config(tmp_path / "run", port=0, iterations=2)
    with world_server(config).start() as server:
        server.faults.latency_ms = 20  # keeps the referee fan-out long enough to be interrupted
        config = small_config(tmp_path / "run", port=server.port, iterations=2)
        prepare_world_files(config)
        path = tmp_path / "config.yaml"
        dump_config(config, path)
        command = [sys.executable, "-m", "lion_cli", "run", str(path)]
        env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"}
        first = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while server.stats.received["referee"] < 40:  # iteration 1, mid-discrimination
            assert first.poll() is None and time.monotonic() < deadline, "the run ended before the kill"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        teacher_before = server.stats.received["teacher"]
        assert teacher_before > 0 and not RunDir(config.run_dir).iteration(1).summary.exists()

        second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
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

        third = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert third.returncode == 0 and "this run: 0 API requests sent" in third.stdout  # it says so


def test_every_deployment_entrypoint_imports_and_its_parameters_validate() -> None:
    import importlib.util

    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    assert {d["name"] for d in spec["deployments"]} >= {"form", "openai", "demo", "nightly"}
    assert any(d.get("schedules") for d in spec["deployments"])
    for deployment in spec["deployments"]:
        file, name = deployment["entrypoint"].split(":")
        module_spec = importlib.util.spec_from_file_location("entry", REPO / file)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        flow = getattr(module, name)
        flow.validate_parameters(deployment.get("parameters", {}))
        config_path = deployment.get("parameters", {}).get("config_path")
        if config_path:
            from lion_core.config import load_config

            load_config(REPO / config_path)
    sys.path.insert(0, str(REPO / "deployments"))
    try:
        import serve

        built = serve.deployment("configs/demo.yaml")
        assert built.schedules and built.parameters["config_path"] == "configs/demo.yaml"
    finally:
        sys.path.remove(str(REPO / "deployments"))
