"""`lion eval` end to end on the offline world (slow): the vicuna protocol, and the world's held-out
set with a tiny student, answers and judgements cached."""

from __future__ import annotations

import json
from pathlib import Path
from random import Random

import pytest
from typer.testing import CliRunner

from flows.demo import demo_config, prepare_world_files, world_server
from lion_cli.main import app
from lion_core.config import dump_config
from lion_core.world.families import sample_tasks
from tests.support.world import recorded_bodies


@pytest.mark.slow
def test_lion_eval_vicuna_protocol_runs_offline_against_the_world(tmp_path: Path, public_data: Path) -> None:
    from prefect.testing.utilities import prefect_test_harness

    rows = [
        json.loads(line) for line in (public_data / "vicuna_bench_questions.jsonl").read_text().splitlines()
    ]
    chosen = [r for r in rows if r["category"] in ("coding", "math")][:4] + rows[:4]
    world_rows = [
        {"question_id": 100 + i, "category": "math", "turns": [t.instruction]}
        for i, t in enumerate(sample_tasks(4, Random(5)))
    ]
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in chosen + world_rows))
    probe = demo_config(tmp_path / "run", 1, 0, 0)
    with world_server(probe).start() as server, prefect_test_harness(server_startup_timeout=90):
        bodies = recorded_bodies(server)
        config = demo_config(tmp_path / "run", 1, 0, server.port)
        config.evaluation.protocol = "vicuna"  # the config's field; no --protocol flag below
        prepare_world_files(config)
        dump_config(config, tmp_path / "config.yaml")
        args = ["eval", str(tmp_path / "config.yaml"), "--candidate", str(config.student.model_path)]
        args += ["--questions", str(questions), "--out", str(tmp_path / "eval")]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        stats = server.stats.to_dict()
    assert stats["received"]["reviewer"] == 2 * 12  # both orders of every question
    assert "referee" not in stats["received"]
    # the reference answers, as sent: FastChat's ChatGPT baseline (bare question, its system prompt, T 1.0)
    baseline = [b for b in bodies if b["messages"][0]["content"] == "You are a helpful assistant."]
    assert sorted(b["messages"][1]["content"] for b in baseline) == sorted(
        r["turns"][0] for r in chosen + world_rows
    )
    assert {(b["temperature"], b["max_tokens"]) for b in baseline} == {(1.0, 1024)}
    data = json.loads((tmp_path / "eval" / "result.json").read_text())["judge"]
    assert data["protocol"] == "vicuna" and data["questions"] == 12 and data["unscorable"] == 0
    assert data["per_category"]["math"] < 100  # the untrained student loses to the oracle on world tasks
    assert "protocol vicuna" in (tmp_path / "eval" / "report.md").read_text()


@pytest.mark.slow
def test_lion_eval_on_the_world_with_a_tiny_student(tmp_path: Path, public_data: Path) -> None:
    from prefect.testing.utilities import prefect_test_harness

    questions = tmp_path / "vicuna10.jsonl"
    lines = (public_data / "vicuna_bench_questions.jsonl").read_text().splitlines()[:10]
    world_lines = [
        json.dumps({"question_id": 100 + i, "category": "world", "turns": [t.instruction]})
        for i, t in enumerate(sample_tasks(6, Random(3)))
    ]
    questions.write_text("\n".join(lines + world_lines) + "\n")
    probe = demo_config(tmp_path / "run", 1, 0, 0)
    with world_server(probe).start() as server, prefect_test_harness(server_startup_timeout=90):
        config = demo_config(tmp_path / "run", 1, 0, server.port)
        prepare_world_files(config)
        dump_config(config, tmp_path / "config.yaml")
        args = [
            "eval",
            str(tmp_path / "config.yaml"),
            "--candidate",
            str(config.student.model_path),
            "--questions",
            str(questions),
            "--world",
            "36",
            "--out",
            str(tmp_path / "eval"),
        ]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert f"report: {tmp_path / 'eval' / 'report.md'}" in " ".join(result.output.split())
        assert any((config.run_dir / ".prefect-results").iterdir())  # task results stay in the run
        sent = server.stats.requests
        again = CliRunner().invoke(app, args)  # answers and judgements are cached: nothing re-sent
        assert again.exit_code == 0 and server.stats.requests == sent
    data = json.loads((tmp_path / "eval" / "result.json").read_text())
    judge = data["judge"]
    assert judge["questions"] == 16 and judge["unscorable"] == 0
    assert set(judge["per_category"]) == {"world"} | {json.loads(line)["category"] for line in lines}
    assert judge["per_category"]["world"] < 100  # the untrained student loses to the oracle on world tasks
    assert data["world_teacher"]["accuracy"] == 1.0  # the oracle teacher is 100% by construction
    assert data["world"]["n"] == 36
    assert data["world_source"] == f"held-out set {config.evaluation.heldout_path}"
    for name in ("report.md", "relative.png", "world.png", "judgements.jsonl", "candidate.jsonl"):
        assert (tmp_path / "eval" / name).exists(), name
    assert "relative score" in (tmp_path / "eval" / "report.md").read_text()
