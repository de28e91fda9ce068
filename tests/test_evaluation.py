"""Evaluation: relative-score maths, two-order judging, `lion eval` end to end, lm-eval integration."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from random import Random

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.demo import demo_config, prepare_world_files, world_server
from lion_core import prompts
from lion_core.config import dump_config
from lion_core.discrimination import make_judgement
from lion_core.evaluation import judge_answers, relative_score, score_world
from lion_core.llm import Completion
from lion_core.records import Instruction, Response
from lion_core.world.families import Task, sample_tasks


def test_relative_score_is_a_ratio_of_sums_per_category() -> None:
    judgements = [
        make_judgement("a", (8, 8), (4, 4), tau=0),  # reference 8, candidate 4
        make_judgement("b", (10, 10), (10, 10), tau=0),
        make_judgement("c", (6, 6), (3, 3), tau=0),
        make_judgement("d", (9, None), (2, None), tau=0, reason="order 2: no scores"),
    ]
    score = relative_score(judgements, {"a": "writing", "b": "writing", "c": "math", "d": "math"})
    assert score.overall == pytest.approx(100 * (4 + 10 + 3) / (8 + 10 + 6))
    assert score.per_category == pytest.approx({"math": 50.0, "writing": 100 * 14 / 18})
    assert (score.questions, score.unscorable) == (4, 1)
    assert score.per_category_questions == {"math": 1, "writing": 2}


class BiasedJudge:
    """A judge that prefers whoever is shown first by 2 points; true scores: reference 8, candidate 5."""

    role, model_name = "judge", "fake-judge"

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def complete(self, messages, *, variant: int = 0) -> Completion:
        parsed = prompts.parse_rendered("referee", messages[-1]["content"])
        self.requests.append(parsed["answer_1"])
        first_is_reference = parsed["answer_1"] == "reference answer"
        one, two = (8 + 2, 5) if first_is_reference else (5 + 2, 8)
        text = f"Some explanation.\nScore of the Assistant 1: {one}\nScore of the Assistant 2: {two}"
        return Completion(text, "stop", 10, 10)


def test_two_order_judging_cancels_the_judges_position_bias() -> None:
    questions = [Instruction(id=f"q{i}", instruction=f"Question {i}?", category="generic") for i in range(3)]
    reference = [
        Response(id=q.id, instruction=q.instruction, output="reference answer", model="t") for q in questions
    ]
    candidate = [
        Response(id=q.id, instruction=q.instruction, output="candidate answer", model="s") for q in questions
    ]
    judge = BiasedJudge()
    judgements = asyncio.run(judge_answers(judge, questions, candidate, reference, retries=0))
    assert len(judge.requests) == 6  # every question in both orders
    assert all(
        j.teacher_score == 9.0 and j.student_score == 6.0 for j in judgements
    )  # bias cancels: 8+1, 5+1
    score = relative_score(judgements, {q.id: q.category for q in questions})
    assert score.overall == pytest.approx(100 * 6 / 9)
    first_order_only = 100 * 5 / 10
    assert score.overall != pytest.approx(first_order_only)


def test_world_score_per_family_and_level() -> None:
    tasks = [
        Task("Reverse ab", "ba", "reverse", 1),
        Task("Reverse abcde", "edcba", "reverse", 2),
        Task("Copy ab", "ab", "copy", 1),
        Task("Copy abcdefghi", "abcdefghi", "copy", 2),
    ]
    score = score_world(tasks, ["ba", "wrong", " ab ", "abc"])
    assert score.accuracy == 0.5
    assert score.per_family == {"copy": 0.5, "reverse": 0.5}
    assert score.per_level == {"L1": 1.0, "L2": 0.0}
    assert score.per_family_level["reverse@L1"] == 1.0


@pytest.mark.slow
def test_lion_eval_on_the_world_with_a_tiny_student(tmp_path: Path, shared_data: Path) -> None:
    from prefect.testing.utilities import prefect_test_harness

    questions = tmp_path / "vicuna10.jsonl"
    lines = (shared_data / "vicuna_bench_questions.jsonl").read_text().splitlines()[:10]
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


@pytest.mark.slow
def test_a_failing_lm_eval_task_is_one_clear_error(tmp_path: Path, tiny_student_path: Path) -> None:
    pytest.importorskip("lm_eval", reason="the harness extra (lm-eval) is not installed")
    from lion_core.harness import HarnessError, run_harness

    with pytest.raises(HarnessError, match=r"lm-eval tasks \['no_such_task'\] failed: \w+") as caught:
        run_harness(tiny_student_path, ["no_such_task"], include_path=tmp_path)
    assert "\n" not in str(caught.value)


WORLD_TASK = """task: world_length
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Q: {{{{instruction}}}}\\nA: "
doc_to_target: "{{{{output}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 8
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


@pytest.mark.slow
def test_lm_eval_harness_runs_a_local_world_task(
    tmp_path: Path, tiny_student_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("lm_eval", reason="the harness extra (lm-eval) is not installed")
    from lion_core.harness import run_harness

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rows = [
        {"instruction": t.instruction, "output": t.answer}
        for t in sample_tasks(12, Random(0), ["length"], levels=(1,))
    ]
    (tmp_path / "world.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "world_length.yaml").write_text(WORLD_TASK.format(data=tmp_path / "world.jsonl"))
    results = run_harness(tiny_student_path, ["world_length"], include_path=tmp_path, batch_size=4)
    assert results["world_length"]["sample_len"] == 12
    assert 0.0 <= results["world_length"]["exact_match,none"] <= 1.0
