"""lion_core/run/rundir.py: a run directory's summaries, its seed pool, the endpoints checked before a run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lion_core.config import ConfigError
from lion_core.run.rundir import RunDir, check_same_seed, write_json
from tests.support.spawn import free_port


def test_run_summaries_are_this_runs_iterations_only(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for k, stopped in ((1, None), (2, None), (3, "equilibrium"), (4, None), (6, None)):
        write_json(run.iteration(k).summary, {"iteration": k, "stopped": stopped})
    assert [s["iteration"] for s in run.summaries()] == [1, 2, 3]  # iter_4 is from an older, longer run
    (tmp_path / "config.yaml").write_text("loop:\n  iterations: 2\n")
    assert [s["iteration"] for s in run.summaries()] == [1, 2]


def test_a_run_directory_refuses_another_seed_pool(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    pools = {"seed_path": "a.jsonl", "format": "auto", "max_seed": None}
    check_same_seed(run, pools)  # a new directory: anything goes
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"pools": pools}))
    (tmp_path / "iter_1").mkdir()
    (tmp_path / "iter_1" / "cache_pool.jsonl").write_text('{"id": "a", "instruction": "x"}\n')
    check_same_seed(run, dict(pools))  # the same seeds: it resumes
    with pytest.raises(
        ConfigError, match=r"config\.yaml: .* other seeds \(pools\.max_seed was None, now 10\)"
    ):
        check_same_seed(run, {**pools, "max_seed": 10})


def test_the_reachability_check_asks_each_endpoint_once_and_takes_any_answer(tmp_path: Path, world) -> None:
    from lion_core.config import ConfigError, LionConfig
    from lion_core.run.rundir import check_endpoints

    url = f"http://127.0.0.1:{free_port()}/v1"
    config = LionConfig(teacher={"base_url": world.url}, referee={"base_url": world.url}, generator={})
    config.generator.base_url = url
    with pytest.raises(ConfigError, match=f"generator.base_url: {url} is not reachable"):
        check_endpoints(config)
    config.generator.base_url = world.url.replace("/v1", "/nowhere/v1")  # a 404 is still an answer
    check_endpoints(config)
    assert world.stats.requests == 0  # /models only: no chat request, nothing paid


def test_the_lock_taken_again_by_its_holder_is_a_no_op_and_the_outer_hold_releases_it(tmp_path: Path) -> None:
    """Issue 22, item 5: the distill and evaluate flows take the lock as a deployment run must; inside
    `lion run`, which holds it already, that must neither block nor release it early."""
    import subprocess
    import sys

    from lion_core.run.rundir import RunLock

    run = RunDir(tmp_path / "run")
    take = "import sys, pathlib; from lion_core.run.rundir import RunDir, RunLock; "
    take += "RunLock(RunDir(pathlib.Path(sys.argv[1]))).acquire()"
    probe = [sys.executable, "-c", take, str(run.root)]
    with RunLock(run):
        with RunLock(run):  # the flow's, inside the command's
            pass
        taken = subprocess.run(probe, capture_output=True, text=True)
        assert taken.returncode != 0 and "another run is using this run directory" in taken.stderr
    assert subprocess.run(probe, capture_output=True).returncode == 0  # released by the outer hold
