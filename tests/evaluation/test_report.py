"""`lion eval`'s files: judgements that say who won each question, a report whose artifact renders."""

from __future__ import annotations

import re
from pathlib import Path

from lion_core.evaluation.protocols import JUDGE_TAU, verdict
from lion_core.evaluation.report import embed_images, write_eval_report
from lion_core.method.discrimination import make_judgement


def test_an_evaluation_verdict_names_the_winner_not_a_training_label() -> None:
    reference_wins = verdict(make_judgement("q1", (8.0, 7.0), (6.0, 6.0), JUDGE_TAU), "writing")
    assert reference_wins.model_dump() == {
        "id": "q1",
        "category": "writing",
        "reference_scores": [8.0, 7.0],
        "candidate_scores": [6.0, 6.0],
        "reference_score": 7.5,
        "candidate_score": 6.0,
        "gap": 1.5,
        "winner": "reference",
        "reason": None,
    }
    assert verdict(make_judgement("q2", (5.0, 5.0), (5.0, 5.0), JUDGE_TAU), None).winner == "tie"
    candidate = verdict(make_judgement("q3", (4.0, 5.0), (9.0, 8.0), JUDGE_TAU), "math")
    assert (candidate.winner, candidate.gap) == ("candidate", -4.0)
    lost = verdict(make_judgement("q4", (None, 5.0), (7.0, None), JUDGE_TAU, "order 1: no score"), "x")
    assert (lost.winner, lost.gap, lost.reason) == ("unscorable", None, "order 1: no score")


def test_the_eval_report_artifact_embeds_its_plots(tmp_path: Path) -> None:
    result = {
        "candidate": "runs/demo/iter_1/student",
        "judge": {
            "overall": 80.0,
            "per_category": {"writing": 80.0},
            "per_category_questions": {"writing": 2},
            "questions": 2,
            "unscorable": 0,
            "protocol": "vicuna",
        },
    }
    path = write_eval_report(result, tmp_path)
    on_disk = path.read_text()
    assert "](relative.png)" in on_disk  # beside the file, for a file viewer
    ui = embed_images(on_disk, tmp_path)
    targets = re.findall(r"\]\(([^)]*)\)", ui)
    assert targets and all(t.startswith("data:image/png;base64,") for t in targets)
