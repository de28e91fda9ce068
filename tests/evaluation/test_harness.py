"""lion_core/evaluation/harness.py: lm-eval on the tiny student, a local world task, one clear error."""

from __future__ import annotations

import json
from pathlib import Path
from random import Random

import pytest

from lion_core.world.families import sample_tasks


@pytest.mark.slow
def test_a_failing_lm_eval_task_is_one_clear_error(tmp_path: Path, tiny_student_path: Path) -> None:
    pytest.importorskip("lm_eval", reason="the harness extra (lm-eval) is not installed")
    from lion_core.evaluation.harness import HarnessError, run_harness

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
    from lion_core.evaluation.harness import run_harness

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
