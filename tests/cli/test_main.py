"""lion_cli/main.py, the `lion` command line: clear one-line errors and non-zero exit codes on bad and
hostile input, every command registered, `lion --help` light, demo ports, start-up errors, the
embedded server's start-up timeout, the budget stop's note."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lion_cli.main import app
from lion_cli.process import EXIT_BAD_INPUT, EXIT_BUSY
from lion_cli.world import app as world_app
from lion_core import data as packaged_data
from lion_core.records import read_instructions
from tests.support.configs import edited, local_config
from tests.support.paths import CONFIGS, REPO
from tests.support.spawn import free_port, loaded_by_lion, run_lion


def test_run_without_the_key_fails_before_any_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = CliRunner().invoke(
        app, ["run", str(CONFIGS / "openai.yaml"), "--run-dir", str(tmp_path / "run")]
    )
    assert result.exit_code == EXIT_BAD_INPUT
    assert "OPENAI_API_KEY" in result.output
    assert not (tmp_path / "run").exists()


def test_run_with_a_bad_config_names_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("loop:\n  tau: high\n")
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "bad.yaml:2: field 'loop.tau'" in " ".join(result.output.split())


def test_run_checks_the_seed_pool_and_the_student_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")  # tmp_path stands for a checkpoint directory
    seed = tmp_path / "seed.jsonl"
    seed.write_text('{"instruction": "Reverse abc"}\n{"instruction": "Sort cba"\n')
    result = CliRunner().invoke(app, ["run", str(local_config(tmp_path))])
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"error: pools.seed_path: {seed}:2: invalid JSON" in " ".join(result.output.split())
    missing = tmp_path / "no-such-model"
    result = CliRunner().invoke(app, ["run", str(local_config(tmp_path, model_path=str(missing)))])
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"student.model_path: {missing} is not a local checkpoint" in " ".join(result.output.split())
    assert len(result.output.strip().splitlines()) <= 2  # one line, however the terminal wraps it
    assert not (tmp_path / "run").exists()


def test_eval_of_a_candidate_that_is_neither_a_checkpoint_nor_an_endpoint(tmp_path: Path) -> None:
    args = ["eval", str(CONFIGS / "demo.yaml"), "--candidate", str(tmp_path / "nope"), "--world", "10"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "is neither a checkpoint directory nor an http(s) endpoint" in " ".join(result.output.split())


def test_report_of_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "no finished iteration" in result.output


def test_eval_with_nothing_to_do_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", str(CONFIGS / "demo.yaml"), "--candidate", str(tmp_path)])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "nothing to evaluate" in result.output


def test_an_unknown_protocol_is_refused_before_any_work(tmp_path: Path) -> None:
    args = ["eval", str(CONFIGS / "demo.yaml"), "--candidate", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--world", "5", "--protocol", "gpt4"])
    assert result.exit_code == 2 and "choose one of lion, vicuna" in result.output


# Every command a user can type; the test fails if one of them is no longer registered.
COMMANDS = {"demo", "run", "eval", "report", "world", "params", "export", "decontaminate", "config-reference"}
WORLD_COMMANDS = {"serve", "sample", "families", "student"}


def registered(typer_app) -> set[str]:
    """Names of the commands and command groups a Typer app registers."""
    group = typer.main.get_command(typer_app)
    return set(group.commands)


def test_every_command_is_registered() -> None:
    assert registered(app) == COMMANDS
    assert registered(world_app) == WORLD_COMMANDS
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0


# What `lion --help` must not load: the student's stack, the world server, Prefect's flows.
HEAVY_MODULES = ("torch", "transformers", "fastapi", "uvicorn", "prefect", "flows.evaluate")


def test_help_loads_neither_torch_nor_the_world_server_nor_prefect() -> None:
    output, loaded = loaded_by_lion(["--help"], HEAVY_MODULES)
    assert "Commands" in output
    assert loaded == []


def refused(result, *needles: str) -> None:
    """Exit 2, one line (however the terminal wraps it) naming what is wrong, no traceback."""
    text = " ".join(result.output.split())
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in text, (needle, text)
    assert len(result.output.strip().splitlines()) <= 3, result.output


def seeded(tmp_path: Path, text: str = '{"instruction": "Reverse abc"}\n') -> Path:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "seed.jsonl").write_text(text)
    return local_config(tmp_path)


def test_a_seed_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "seeds").mkdir()
    result = CliRunner().invoke(app, ["run", str(local_config(tmp_path, seed_path=str(tmp_path / "seeds")))])
    refused(result, "pools.seed_path", str(tmp_path / "seeds"), "directory")
    assert not (tmp_path / "run").exists()


def test_an_unreadable_seed_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = seeded(tmp_path)
    seed = tmp_path / "seed.jsonl"
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:  # root reads any file, so the refusal is simulated
        if self == seed:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    refused(CliRunner().invoke(app, ["run", str(config)]), "pools.seed_path", str(seed), "Permission denied")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("loop", "tau", float("nan")),
        ("loop", "tau", float("inf")),
        ("loop", "hard_easy_ratio", float("inf")),
        ("budget", "max_usd", float("inf")),
        ("teacher", "temperature", float("nan")),
        ("student", "temperature", float("inf")),
    ],
)
def test_non_finite_numbers_in_the_config_are_refused(
    tmp_path: Path, section: str, field: str, value: float
) -> None:
    config = edited(seeded(tmp_path), section, field, value)
    refused(CliRunner().invoke(app, ["run", str(config)]), f"field '{section}.{field}'", "config.yaml:")
    assert not (tmp_path / "run").exists()


def test_a_student_checkpoint_that_does_not_load_is_refused(tmp_path: Path, tiny_student_path: Path) -> None:
    import shutil

    student = tmp_path / "student"
    shutil.copytree(tiny_student_path, student)
    (student / "config.json").write_text('{"model_type": "llama", "hidden_size": ')
    (tmp_path / "seed.jsonl").write_text('{"instruction": "Reverse abc"}\n')
    result = CliRunner().invoke(app, ["run", str(local_config(tmp_path, model_path=str(student)))])
    refused(result, "student.model_path", str(student), "does not load")
    assert not (tmp_path / "run").exists()


def test_a_student_that_needs_a_gpu_is_refused_before_any_work(
    tmp_path: Path, tiny_student_path: Path
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks what a machine without a GPU refuses")
    (tmp_path / "seed.jsonl").write_text('{"instruction": "Reverse abc"}\n')
    config = local_config(tmp_path, model_path=str(tiny_student_path))
    refused(
        CliRunner().invoke(app, ["run", str(edited(config, "student", "finetune", "qlora"))]),
        "student.finetune: qlora",
        "needs a CUDA GPU",
    )
    fsdp = {"num_processes": 8, "accelerate_config": str(REPO / "deployments/accelerate/fsdp.yaml")}
    for field, value in {**fsdp, "finetune": "full"}.items():
        edited(config, "student", field, value)
    refused(CliRunner().invoke(app, ["run", str(config)]), "trains with FSDP, which needs CUDA GPUs")
    assert not (tmp_path / "run").exists()


def test_a_run_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    config = seeded(tmp_path)
    (tmp_path / "run").write_text("not a directory")
    refused(
        CliRunner().invoke(app, ["run", str(config)]), "run_dir", str(tmp_path / "run"), "not a directory"
    )
    assert (tmp_path / "run").read_text() == "not a directory"


def test_a_config_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    refused(CliRunner().invoke(app, ["run", str(tmp_path)]), str(tmp_path))


def test_a_huge_instruction_is_refused_before_anything_is_paid(tmp_path: Path) -> None:
    huge = "x" * 10_000_000
    config = seeded(tmp_path, '{"instruction": "Reverse abc"}\n' + json.dumps({"instruction": huge}) + "\n")
    refused(CliRunner().invoke(app, ["run", str(config)]), "pools.seed_path", "seed.jsonl:2", "instruction")
    assert not (tmp_path / "run").exists()


@pytest.fixture
def port_8765_taken():
    """127.0.0.1:8765 in use (by this socket, or already by another demo or test)."""
    import socket

    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 8765))
        holder.listen()
    except OSError:
        pass  # someone else holds it: taken all the same
    yield
    holder.close()


def test_demo_takes_a_free_port_when_8765_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port_8765_taken: None
) -> None:
    import flows.demo
    import lion_cli.main

    seen = []
    monkeypatch.setattr(flows.demo, "prepare_world_files", lambda config: None)
    monkeypatch.setattr(lion_cli.main, "run_distill", lambda config: seen.append(config) or [])
    result = CliRunner().invoke(app, ["demo", "--run-dir", str(tmp_path / "run"), "--iterations", "1"])
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert config.teacher.base_url.startswith("http://127.0.0.1:")
    assert ":8765/" not in config.teacher.base_url
    assert (
        config.teacher.cache_identity
        == config.referee.cache_identity
        == "world:"
        + ("seed=0,referee_bias=0.0,referee_noise=0.0,near_duplicate_share=0.1,malformed_share=0.05")
    )


def test_demo_on_an_explicit_port_that_is_taken_fails_at_once_writing_nothing(
    tmp_path: Path, port_8765_taken: None
) -> None:
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["demo", "--run-dir", str(run), "--port", "8765"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "cannot start the world server on 127.0.0.1:8765" in text and "leave --port out" in text
    assert len(result.output.strip().splitlines()) <= 2 and "Traceback" not in result.output
    assert not run.exists()


def test_run_against_an_endpoint_that_refuses_connections_fails_at_once_in_one_line(
    tmp_path: Path, tiny_student_path: Path
) -> None:
    (tmp_path / "seed.jsonl").write_text('{"instruction": "Reverse abc"}\n')
    config = local_config(tmp_path, model_path=str(tiny_student_path))
    url = f"http://127.0.0.1:{free_port()}/v1"
    for role in ("teacher", "referee", "generator"):
        edited(config, role, "base_url", url)
    result = CliRunner().invoke(app, ["run", str(config)])
    refused(result, f"teacher.base_url: {url} is not reachable", "ConnectError")
    assert not (tmp_path / "run").exists()  # nothing written, nothing started


# ------------------------------------------- the embedded server's start-up timeout (issue 15, item 5)

# Prefect's own 20 s was missed at load ~14: the CLI gives its embedded server more; a user's setting wins.
SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
PROBE = (
    "import lion_cli.process as m; from prefect.settings import get_current_settings as s; "
    "print(m.EMBEDDED_SERVER_STARTUP_S, s().server.ephemeral.startup_timeout_seconds)"
)


def startup_timeout(env: dict[str, str]) -> list[str]:
    done = run_lion(python=PROBE, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


def test_the_cli_waits_generously_for_the_embedded_server() -> None:
    env = {k: v for k, v in os.environ.items() if k != SETTING}
    ours, prefect = startup_timeout(env)
    assert int(prefect) == int(ours) >= 60


def test_a_users_own_startup_timeout_wins() -> None:
    _, prefect = startup_timeout({**os.environ, SETTING: "7"})
    assert prefect == "7"


def test_a_token_budget_stop_names_the_token_budget_that_finishes(tmp_path: Path) -> None:
    from lion_cli.main import budget_stop_note
    from lion_core.api.budget import BudgetExceededError
    from lion_core.config import LionConfig
    from lion_core.method.projection import project, suggested_budget

    config = LionConfig(run_dir=tmp_path / "run", budget={"max_tokens": 1_000})  # no seed file: 52,002
    note = budget_stop_note(
        config, BudgetExceededError("budget: max_tokens 1000 would be exceeded", "max_tokens")
    )
    projected = project(config).tokens
    assert f"projected total {projected:,.0f} tokens at the tokens per request seen so far" in note
    assert f"set budget.max_tokens ≥ {suggested_budget(projected):,.0f} and re-run to resume" in note
    no_prices = budget_stop_note(config, BudgetExceededError("budget: max_usd 1 would be exceeded"))
    assert no_prices == ""  # nothing priced, nothing started: no USD projection to tell


VICUNA = packaged_data.path("vicuna_bench_questions.jsonl")
QUESTION = next(q.text for q in read_instructions(VICUNA) if len(q.text.split()) > 25)  # over 13 words


def test_lion_decontaminate_lists_contaminated_instructions_and_exits_1(tmp_path: Path) -> None:
    mine = tmp_path / "mine.jsonl"
    rows = [{"instruction": QUESTION}, {"instruction": "Write a haiku about autumn leaves"}]
    mine.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = CliRunner().invoke(app, ["decontaminate", str(mine)])
    assert result.exit_code == 1
    assert "1 of 2 instructions share 13-grams" in result.output
    clean = CliRunner().invoke(app, ["decontaminate", str(mine), "--eval-set", "package:seed_tasks.jsonl"])
    assert clean.exit_code == 0 and "0 of 2" in clean.output


# ------------------------------------------- `lion eval` holds the run directory and asks first (issue 22)


def eval_config(tmp_path: Path, url: str) -> Path:
    config = local_config(tmp_path)
    for role in ("teacher", "referee", "generator"):
        edited(config, role, "base_url", url)
    return config


def test_eval_on_a_run_directory_in_use_exits_at_once_naming_the_holder(
    tmp_path: Path, tiny_student_path: Path
) -> None:
    import subprocess
    import sys

    config = eval_config(tmp_path, f"http://127.0.0.1:{free_port()}/v1")
    hold = (
        "import sys, time, pathlib; from lion_core.run.rundir import RunDir, RunLock; "
        "RunLock(RunDir(pathlib.Path(sys.argv[1]))).acquire(); print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["eval", str(config), "--candidate", str(tiny_student_path), "--world", "5"]
        result = CliRunner().invoke(app, args)
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == EXIT_BUSY, result.output
    assert f"another run is using this run directory (pid {holder.pid})" in " ".join(result.output.split())


def test_eval_asks_its_endpoints_before_any_work(tmp_path: Path, tiny_student_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    args = ["eval", str(eval_config(tmp_path, url)), "--candidate", str(tiny_student_path), "--world", "5"]
    refused(CliRunner().invoke(app, args), f"teacher.base_url: {url} is not reachable", "ConnectError")
    assert not (tmp_path / "run" / "eval").exists()
