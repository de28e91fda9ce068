"""lion_core/student/generate.py: the student's answers, batched or not."""

from __future__ import annotations

from pathlib import Path
from random import Random

from lion_core import prompts
from lion_core.config import StudentConfig
from lion_core.student.checkpoint import load_for_inference, load_tokenizer
from lion_core.student.generate import generate
from lion_core.student.train import finetune
from lion_core.world.families import sample_tasks
from tests.support.configs import STYLE, greedy_student, tiny_pairs


def test_batched_and_one_at_a_time_greedy_outputs_agree(tiny_student_path: Path, tmp_path: Path) -> None:
    train = sample_tasks(400, Random(0), ["length", "copy"], levels=(1, 2))
    config = greedy_student(tiny_student_path, max_steps=80)
    finetune(tiny_student_path, tiny_pairs(train), tmp_path / "ft", config, seed=0)
    model, tokenizer = load_for_inference(tmp_path / "ft"), load_tokenizer(tmp_path / "ft")
    texts = [prompts.student_prompt(STYLE, t.instruction) for t in sample_tasks(40, Random(5), levels=(1, 2))]
    greedy = dict(max_new_tokens=12, do_sample=False)  # sampled answers would differ by the RNG's order alone
    batched = generate(model, tokenizer, texts, StudentConfig(infer_batch_size=16, **greedy))
    single = generate(model, tokenizer, texts, StudentConfig(infer_batch_size=1, **greedy))
    assert batched == single
    assert len(set(batched)) > 5  # a real comparison, not all-empty outputs
