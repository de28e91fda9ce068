"""lion_cli/world.py, `lion world`: sample, families, serve; sample and serve load neither torch nor
transformers."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lion_cli.main import app
from lion_cli.process import EXIT_BAD_INPUT
from lion_core.world import families as fam
from tests.support.spawn import free_port, loaded_by_lion


def test_cli_sample_prints_jsonl() -> None:
    result = CliRunner().invoke(app, ["world", "sample", "--n", "5", "--seed", "3"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 5
    assert set(rows[0]) == {"instruction", "input", "output", "family", "difficulty"}
    assert all(fam.solve(r["instruction"]) == r["output"] for r in rows)


PAPER_SEED_SIZE = 52_000  # the paper's seed pool


def test_lion_world_sample_draws_the_papers_seed_size_and_refuses_too_many() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["world", "sample", "--n", str(PAPER_SEED_SIZE)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len({json.loads(line)["instruction"].lower() for line in lines}) == PAPER_SEED_SIZE
    refused = runner.invoke(app, ["world", "sample", "--n", "201", "--family", "add", "--level", "1"])
    assert refused.exit_code == EXIT_BAD_INPUT
    assert "make 200 distinct" in " ".join(refused.output.split())
    assert "Traceback" not in refused.output


STUDENT_STACK = ("torch", "transformers")


def test_lion_world_sample_loads_neither_torch_nor_transformers() -> None:
    _, loaded = loaded_by_lion(["world", "sample", "--n", "5"], STUDENT_STACK)
    assert loaded == []


def test_a_serving_world_loads_neither_torch_nor_transformers() -> None:
    port = free_port()
    # Instead of sleeping until interrupted, the served world answers a teacher and a generator request,
    # then is interrupted as by Ctrl-C.
    prelude = (
        "import json, types, urllib.request\n"
        "import lion_cli.world as world_cli\n"
        "from lion_core import prompts\n"
        "def ask(messages):\n"
        "    body = json.dumps({'model': 'world', 'messages': messages}).encode()\n"
        f"    request = urllib.request.Request('http://127.0.0.1:{port}/v1/chat/completions', body,"
        " {'Content-Type': 'application/json'})\n"
        "    reply = urllib.request.urlopen(request, timeout=10)\n"
        "    assert reply.headers['x-ratelimit-limit-tokens'] == '100000', dict(reply.headers)\n"
        "    return json.load(reply)\n"
        "def interrupt(seconds):\n"
        "    answer = ask(prompts.teacher_messages('Reverse abc'))['choices'][0]['message']['content']\n"
        "    assert answer == 'cba', answer\n"
        "    ask(prompts.generator_messages('hard', 'Reverse abc'))\n"
        "    raise KeyboardInterrupt\n"
        "world_cli.time = types.SimpleNamespace(sleep=interrupt)\n"
    )
    serve = ["world", "serve", "--port", str(port), "--rate-limit-tpm", "100000"]
    _, loaded = loaded_by_lion(serve, STUDENT_STACK, prelude)
    assert loaded == []  # and the limit set on the command line is announced


def test_lion_world_families_shows_how_many_distinct_instructions_each_level_holds() -> None:
    result = CliRunner().invoke(app, ["world", "families"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "add levels 1–3 (200 / 16,200 / 1,620,000 distinct)" in text
    assert "shift levels 1–3 (1,352 / 949,104 / 641,594,304 distinct)" in text
