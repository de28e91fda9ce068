"""The deployments end to end (slow): a Prefect server, a process work pool, a worker that runs the
demo-sized distill deployments of deployments/prefect.yaml, and deployments/serve.py — with the
README's commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.demo import prepare_world_files, world_server
from lion_cli.main import api_calls
from lion_core.config import dump_config, load_config
from tests.support.configs import small_demo
from tests.support.paths import REPO
from tests.support.spawn import free_port

BIN = Path(sys.executable).parent
SERVER_START_S = 90
RUN_TIMEOUT_S = 240
POOL = "gpu"
POLL_S = 1
WATCH = "--watch"  # exits non-zero unless the run ends Completed


def wait_until_healthy(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "prefect server start exited"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"no Prefect server at {url} after {timeout_s} s")


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A background process in its own process group (stopped with the group at the end)."""
    out = log.open("w")
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def run(command: str, env: dict[str, str]) -> str:
    """A README command (shell syntax), from the repository root; its output, asserting success."""
    done = subprocess.run(
        command, shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict[str, str]]:
    """`prefect server start` on a free port with its own home and database; the env that points at it."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # `prefect` and `lion` of this .venv
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "COLUMNS": "200",  # tables of `prefect deployment ls` unfolded
        "PREFECT_WORKER_QUERY_SECONDS": str(POLL_S),  # a worker and serve.py pick a run up at once
        "PREFECT_RUNNER_POLL_FREQUENCY": str(POLL_S),
    }
    env.pop("LION_REPO", None)  # the pull step must find the clone by itself
    command = ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    proc = start(command, env, home / "log")
    try:
        wait_until_healthy(api, proc, SERVER_START_S)
        yield env
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Path]:
    """A demo-sized config file (1 iteration, 60 seeds) against a world server on a free port."""
    root = tmp_path_factory.mktemp("deployed")
    config = small_demo(root / "run", port=0, iterations=1)
    prepare_world_files(config)
    with world_server(config) as world:
        path = root / "demo.yaml"
        dump_config(small_demo(root / "run", world.port, iterations=1), path)
        yield path


def completed(output: str) -> bool:
    """`prefect deployment run --watch` says how the run ended."""
    return "finished successfully in 'Completed'" in output


@pytest.mark.slow
def test_a_worker_runs_the_distill_deployments_of_prefect_yaml(server, demo: Path, tmp_path: Path) -> None:
    run(f"prefect work-pool create {POOL} --type process", server)
    run("prefect deploy --all --prefect-file deployments/prefect.yaml", server)
    worker = start(["prefect", "worker", "start", "--pool", POOL], server, tmp_path / "worker")
    try:
        out = run(
            f"prefect deployment run 'distill-from-file/demo' --param config_path={demo} "
            f"--param run_dir={demo.parent / 'run'} {WATCH}",
            server,
        )
        assert completed(out), out
        summary = json.loads((demo.parent / "run" / "iter_1" / "summary.json").read_text())
        assert summary["generated"] > 0 and summary["cache_pool"] > 0

        # the config model as the parameter: the same run directory resumes, paying nothing twice
        paid = api_calls(load_config(demo))
        out = run(
            f"lion params {demo} | prefect deployment run 'distill/form' --params - {WATCH}",
            server,
        )
        assert completed(out), out
        assert api_calls(load_config(demo))[0] == paid[0]
    finally:
        stop(worker)
    log = (tmp_path / "worker").read_text()
    assert "set_repository_directory" in log and "Traceback" not in log, log


@pytest.mark.slow
def test_serve_runs_the_file_and_the_form_deployments(server, demo: Path, tmp_path: Path) -> None:
    served = start(
        ["python", "deployments/serve.py", "--config", str(demo), "--cron", "0 3 * * *"],
        server,
        tmp_path / "serve",
    )
    try:
        deadline = time.monotonic() + SERVER_START_S
        while "served-form" not in run("prefect deployment ls", server):
            assert served.poll() is None, (tmp_path / "serve").read_text()
            assert time.monotonic() < deadline, "serve.py registered no deployment"
            time.sleep(1)
        assert "distill-from-file/served" in run("prefect deployment ls", server)
        out = run(f"prefect deployment run 'distill/served-form' {WATCH}", server)  # the pre-filled form
        assert completed(out), out
    finally:
        stop(served)


def flow_run_state(flow_run: str, env: dict[str, str]) -> str:
    """The state type of a flow run (`prefect flow-run inspect ID -o json`)."""
    shown = run(f"prefect flow-run inspect {flow_run} -o json", env)
    return json.loads(shown[shown.index("{") :])["state"]["type"]


@pytest.mark.slow
def test_the_retry_of_a_failed_deployment_run_resumes_it_paying_nothing_twice(server, tmp_path: Path) -> None:
    """Issue 22, item 6: the UI's Retry of a deployment run (`prefect flow-run retry ID` from a shell)
    re-runs only what did not finish — here the referee batches that failed — serves the rest from the
    caches and pays nothing twice."""
    import re
    import sqlite3

    from lion_core.config import LionConfig
    from lion_core.run.rundir import RunDir, response_cache

    def failing_fast(port: int) -> LionConfig:
        data = small_demo(tmp_path / "run", port=port, iterations=1, task_retries=0).model_dump()
        data["referee"]["max_retries"] = 0  # a referee request that fails fails its batch at once
        return LionConfig.model_validate(data)

    prepare_world_files(failing_fast(0))
    env = {**server, "LION_REPO": str(REPO)}  # the worker runs this checkout's flows
    with world_server(failing_fast(0)) as world:
        world.faults.roles, world.faults.share_5xx, world.faults.max_faults = ["referee"], 1.0, 3
        config = failing_fast(world.port)
        path = tmp_path / "demo.yaml"
        dump_config(config, path)
        subprocess.run(
            f"prefect work-pool create {POOL} --type process",
            shell=True,
            cwd=REPO,
            env=env,
            capture_output=True,
        )
        run("prefect deploy --all --prefect-file deployments/prefect.yaml", env)
        worker = start(["prefect", "worker", "start", "--pool", POOL], env, tmp_path / "worker")
        try:
            command = f"prefect deployment run 'distill-from-file/demo' --param config_path={path} "
            failed = subprocess.run(
                f"{command} --param run_dir={config.run_dir} {WATCH}",
                shell=True,
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_S,
            )
            assert failed.returncode != 0 and not completed(failed.stdout + failed.stderr), failed.stdout
            flow_run = re.search(r"UUID: ([0-9a-f-]{36})", failed.stdout + failed.stderr).group(1)
            world.faults.share_5xx = 0.0
            run(f"prefect flow-run retry {flow_run}", env)
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while (state := flow_run_state(flow_run, env)) not in ("COMPLETED", "FAILED", "CRASHED"):
                assert time.monotonic() < deadline, f"the retried run never finished ({state})"
                time.sleep(POLL_S)
            assert state == "COMPLETED", (tmp_path / "worker").read_text()[-3000:]
        finally:
            stop(worker)
    assert RunDir(config.run_dir).iteration(1).summary.exists()
    assert world.stats.repeated_teacher_requests() == 0
    with sqlite3.connect(response_cache(config)) as db:  # no referee request answered twice
        twice = db.execute(
            "SELECT key FROM requests WHERE role = 'referee' AND state = 'answered' "
            "GROUP BY key HAVING COUNT(*) > 1"
        ).fetchall()
    assert twice == []
