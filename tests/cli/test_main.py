"""The `lion` command line: clear one-line errors and non-zero exit codes on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from lion_cli.main import EXIT_BAD_INPUT, app
from lion_cli.world import app as world_app

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


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


def local_config(tmp_path: Path, **student_and_pools: str) -> Path:
    """configs/demo.yaml with a run directory, seed pool and student of this test's own."""
    data = yaml.safe_load((CONFIGS / "demo.yaml").read_text())
    data["run_dir"] = str(tmp_path / "run")
    data["evaluation"]["heldout_path"] = None
    data["pools"]["seed_path"] = student_and_pools.get("seed_path", str(tmp_path / "seed.jsonl"))
    data["student"]["model_path"] = student_and_pools.get("model_path", str(tmp_path))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


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


# Every command a user can type; the test fails if one of them is no longer registered.
COMMANDS = {"demo", "run", "eval", "report", "world", "params", "export", "decontaminate"}
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
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['lion', '--help']\n"
        "try:\n    runpy.run_module('lion_cli', run_name='__main__')\n"
        "except SystemExit as done:\n    assert done.code in (0, None), done.code\n"
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "Commands" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


# ----------------------------------------------------------------------------- hostile input (issue 13)


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


def edited(config: Path, section: str, field: str, value: object) -> Path:
    data = yaml.safe_load(config.read_text())
    data.setdefault(section, {})[field] = value
    config.write_text(yaml.safe_dump(data))
    return config


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


# ----------------------------------------------------------------------------- demo ports (issue 14, item 6)


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


def teacher_client(endpoint, cache_path: Path):
    from lion_core.api.cache import ResponseCache
    from lion_core.api.client import OpenAIChatClient
    from lion_core.api.ledger import Ledger

    ledger = Ledger(cache_path.with_suffix(".json"))
    return OpenAIChatClient("teacher", endpoint, cache=ResponseCache(cache_path), ledger=ledger)


def test_a_demo_world_on_another_port_replays_the_cache(tmp_path: Path) -> None:
    import asyncio
    from random import Random

    from flows.demo import demo_config
    from lion_core import prompts
    from lion_core.chat import complete_all
    from lion_core.world.families import sample_tasks
    from lion_core.world.server import WorldServer

    conversations = [prompts.teacher_messages(t.instruction) for t in sample_tasks(20, Random(0))]
    cache = tmp_path / "responses.sqlite"
    with WorldServer(seed=0) as first, WorldServer(seed=0) as second:
        assert first.port != second.port
        before = demo_config(tmp_path / "run", 1, 0, first.port).teacher
        paid = asyncio.run(complete_all(teacher_client(before, cache), conversations))
        after = demo_config(tmp_path / "run", 1, 0, second.port).teacher
        replayed = asyncio.run(complete_all(teacher_client(after, cache), conversations))
        assert first.stats.requests == 20 and second.stats.requests == 0  # nothing bought twice
        assert [r.content for r in replayed] == [r.content for r in paid] and all(r.cached for r in replayed)


def test_the_cache_key_names_the_world_by_its_settings_and_a_provider_by_its_url(tmp_path: Path) -> None:
    from flows.demo import demo_config
    from lion_core.config import EndpointConfig

    messages = [{"role": "user", "content": "Reverse abc"}]

    def key(endpoint: EndpointConfig) -> str:
        return teacher_client(endpoint, tmp_path / "c.sqlite").key(messages)

    world = [demo_config(tmp_path / "run", 1, seed, 9000).teacher for seed in (0, 1)]
    assert key(world[0]) != key(world[1])  # another world on the same port: other replies
    assert key(world[0]) == key(world[0].model_copy(update={"base_url": "http://localhost:9/v1"}))
    a, b = EndpointConfig(base_url="https://a.example/v1"), EndpointConfig(base_url="https://b.example/v1")
    assert key(a) != key(b)  # two providers never share replies
    assert key(a) == key(EndpointConfig(base_url="https://a.example/v1/"))


# ------------------------------------------------------------------------ start-up errors (issue 14, item 9)


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_run_against_an_endpoint_that_refuses_connections_fails_at_once_in_one_line(
    tmp_path: Path, tiny_student_path: Path
) -> None:
    (tmp_path / "seed.jsonl").write_text('{"instruction": "Reverse abc"}\n')
    config = local_config(tmp_path, model_path=str(tiny_student_path))
    url = f"http://127.0.0.1:{closed_port()}/v1"
    for role in ("teacher", "referee", "generator"):
        edited(config, role, "base_url", url)
    result = CliRunner().invoke(app, ["run", str(config)])
    refused(result, f"teacher.base_url: {url} is not reachable", "ConnectError")
    assert not (tmp_path / "run").exists()  # nothing written, nothing started


def test_the_reachability_check_asks_each_endpoint_once_and_takes_any_answer(tmp_path: Path, world) -> None:
    from lion_core.config import ConfigError, LionConfig
    from lion_core.run.rundir import check_endpoints

    url = f"http://127.0.0.1:{closed_port()}/v1"
    config = LionConfig(teacher={"base_url": world.url}, referee={"base_url": world.url}, generator={})
    config.generator.base_url = url
    with pytest.raises(ConfigError, match=f"generator.base_url: {url} is not reachable"):
        check_endpoints(config)
    config.generator.base_url = world.url.replace("/v1", "/nowhere/v1")  # a 404 is still an answer
    check_endpoints(config)
    assert world.stats.requests == 0  # /models only: no chat request, nothing paid


# ----------------------------------------------------------------------------- budget stop (issue 15, item 7)

PRICE_PER_1K = 0.01  # USD per 1K tokens, in and out, of every role in the budget tests
STOP_BUDGET_USD = 0.005  # crossed by the teacher's first requests of iteration 1


def priced_world_config(tmp_path: Path, world, student: Path, max_usd: float) -> Path:
    """A one-iteration run on the offline world with every role priced and a USD budget."""
    from random import Random

    from lion_core.records import Instruction, write_jsonl
    from lion_core.world.families import sample_tasks

    tasks = sample_tasks(20, Random(0), None, [1, 2])
    write_jsonl(
        tmp_path / "seed.jsonl",
        [Instruction(id=f"s{i}", instruction=t.instruction) for i, t in enumerate(tasks)],
    )
    config = local_config(tmp_path, model_path=str(student))
    data = yaml.safe_load(config.read_text())
    for role in ("teacher", "referee", "generator"):
        data[role].update(
            base_url=world.url, price_input_per_1k=PRICE_PER_1K, price_output_per_1k=PRICE_PER_1K
        )
    data["student"]["epochs"] = 1
    data["loop"].update(iterations=1, new_per_iteration=5)
    data["budget"] = {"max_usd": max_usd}
    config.write_text(yaml.safe_dump(data))
    return config


def test_a_budget_stop_tells_the_projected_total_and_the_budget_that_finishes(
    tmp_path: Path, world, tiny_student_path: Path
) -> None:
    import re
    import shutil

    from lion_cli.main import EXIT_BUDGET

    student = shutil.copytree(tiny_student_path, tmp_path / "student")
    config = priced_world_config(tmp_path, world, student, STOP_BUDGET_USD)
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == EXIT_BUDGET, result.output
    lines = [line for line in result.output.splitlines() if "stopped before exceeding the budget" in line]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "projected cost of this recipe: $" in result.output  # said before it started
    stop = lines[0]
    assert "in iteration 1; projected total $" in stop and "at the cost per request seen so far" in stop
    assert "and re-run to resume (nothing is paid twice)" in stop
    suggested = float(re.search(r"set budget\.max_usd ≥ \$([\d.,]+) ", stop).group(1).replace(",", ""))
    assert suggested > STOP_BUDGET_USD
    result = CliRunner().invoke(app, ["run", str(edited(config, "budget", "max_usd", suggested))])
    assert result.exit_code == 0, result.output  # the budget the stop named finishes the recipe


def test_a_token_budget_stop_names_the_token_budget_that_finishes(tmp_path: Path) -> None:
    from lion_cli.main import budget_stop_note
    from lion_core.api.budget import BudgetExceededError
    from lion_core.api.projection import project, suggested_budget
    from lion_core.config import LionConfig

    config = LionConfig(run_dir=tmp_path / "run", budget={"max_tokens": 1_000})  # no seed file: 52,002
    note = budget_stop_note(
        config, BudgetExceededError("budget: max_tokens 1000 would be exceeded", "max_tokens")
    )
    projected = project(config).tokens
    assert f"projected total {projected:,.0f} tokens at the tokens per request seen so far" in note
    assert f"set budget.max_tokens ≥ {suggested_budget(projected):,.0f} and re-run to resume" in note
    no_prices = budget_stop_note(config, BudgetExceededError("budget: max_usd 1 would be exceeded"))
    assert no_prices == ""  # nothing priced, nothing started: no USD projection to tell
