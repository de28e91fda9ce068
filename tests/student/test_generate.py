"""lion_core/student/generate.py: the student's answers, batched or not."""

from __future__ import annotations

import json
import shutil
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


def test_answers_ignore_the_checkpoints_generation_config(tiny_student_path: Path, tmp_path: Path) -> None:
    # a checkpoint may ship decoding defaults (Llama: top_p 0.9; here a hostile set): the student's
    # answers are decoded by the config alone, greedy and sampled alike
    hostile = tmp_path / "hostile"
    shutil.copytree(tiny_student_path, hostile)
    settings = json.loads((hostile / "generation_config.json").read_text())
    settings.update(no_repeat_ngram_size=1, repetition_penalty=10.0, top_k=1, top_p=0.1, max_new_tokens=2)
    (hostile / "generation_config.json").write_text(json.dumps(settings))
    texts = [prompts.student_prompt(STYLE, t.instruction) for t in sample_tasks(12, Random(5), levels=(1, 2))]
    for config in (
        StudentConfig(do_sample=False, max_new_tokens=12),
        StudentConfig(do_sample=True, temperature=1.0, max_new_tokens=12),
    ):
        plain = generate(
            load_for_inference(tiny_student_path), load_tokenizer(tiny_student_path), texts, config
        )
        model = load_for_inference(hostile)
        assert model.generation_config.no_repeat_ngram_size == 1  # it was loaded with the checkpoint
        assert generate(model, load_tokenizer(hostile), texts, config) == plain
        assert model.generation_config.no_repeat_ngram_size == 1  # and is the model's again afterwards
    assert any(
        len(set(answer)) < len(answer) for answer in plain
    )  # a repeated token: the hostile set mattered
