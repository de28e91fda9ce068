"""lion_core/evaluation/report.py: `lion eval`'s report, whose artifact renders its plots."""

from __future__ import annotations

import re
from pathlib import Path

from lion_core.evaluation.report import embed_images, write_eval_report


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
