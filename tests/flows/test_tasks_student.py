"""tasks/student.py: the student's answers go file to file (issue 15, item 3: keyed by the questions
file's content, a lost or changed answers file answered again); the fine-tune task shows a progress
artifact and log lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from lion_core.config import LionConfig
from lion_core.records import Instruction, Response, read_jsonl, write_jsonl
from tasks.student import answers_step
from tests.support.configs import length_pairs, watched_student
from tests.support.fakes import LogLines


def test_student_answers_go_file_to_file_and_a_lost_or_changed_file_is_answered_again(
    tiny_student_path: Path, tmp_path: Path
) -> None:
    config = LionConfig(
        student={
            "model_path": tiny_student_path,
            "prompt_template": "compact",
            "max_new_tokens": 6,
            "do_sample": False,
        }
    )
    questions, answers = tmp_path / "questions.jsonl", tmp_path / "answers.jsonl"
    write_jsonl(questions, [Instruction(id=f"q{i}", instruction=f"Reverse {w}") for i, w in enumerate("abc")])

    @flow(result_storage=tmp_path / "results")
    def answer() -> list[Response]:
        return answers_step(config, tiny_student_path, questions, answers)

    first = answer()
    assert [r.id for r in first] == ["q0", "q1", "q2"] and read_jsonl(answers, Response) == first
    written = answers.stat().st_mtime_ns
    assert answer() == first and answers.stat().st_mtime_ns == written  # cached: not answered again

    answers.unlink()  # the file the cached result names is gone
    assert answer() == first and answers.exists()
    write_jsonl(answers, first[:1])  # ... or no longer what the task wrote
    assert answer() == first

    write_jsonl(questions, [Instruction(id="n0", instruction="Reverse xyz")])  # new content: a new key
    assert [r.id for r in answer()] == ["n0"]


async def progress_artifacts(flow_run_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                type=ArtifactFilterType(any_=["progress"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )


@pytest.mark.slow
def test_the_finetune_task_shows_a_progress_artifact_and_log_lines(
    tiny_student_path: Path, tmp_path: Path
) -> None:
    import asyncio
    import uuid

    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from tasks.student import finetune_task

    data = tmp_path / "sft.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": p.prompt, "response": p.response}) + "\n" for p in length_pairs(32))
    )
    out = tmp_path / "demo" / "iter_1" / "student"
    settings = watched_student(
        tiny_student_path, max_steps=4, log_every_steps=2, gradient_accumulation_steps=1
    )

    @flow
    def one_finetune() -> dict:
        return finetune_task(str(tiny_student_path), str(data), str(out), settings, 0, uuid.uuid4().hex)

    lines = LogLines()
    task_logger = logging.getLogger("prefect.task_runs")
    level = task_logger.level
    task_logger.addHandler(lines)
    task_logger.setLevel(logging.INFO)
    try:
        with prefect_test_harness(server_startup_timeout=90):
            state = one_finetune(return_state=True)
            result = state.result()
            artifacts = asyncio.run(progress_artifacts(state.state_details.flow_run_id))
    finally:
        task_logger.removeHandler(lines)
        task_logger.setLevel(level)
    assert result["steps"] == 4
    [progress] = artifacts
    assert progress.data == 100.0
    assert progress.description == f"fine-tune iter_1: 4/4 steps done, final loss {result['losses'][-1]:.4f}"
    steps = [m for m in lines.messages if m.startswith("fine-tune iter_1 step ")]
    assert [m.split("step ")[1].split(":")[0] for m in steps] == ["1/4", "2/4", "4/4"]
