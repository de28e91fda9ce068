"""Imitation and inference on the world's tiny student (CPU): masking, learning, batching, LoRA, DDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from random import Random

import pytest
import torch
from safetensors.torch import load_file

from lion_core import prompts
from lion_core.config import LoraSettings, StudentConfig
from lion_core.student.checkpoint import (
    FINGERPRINT_FILE,
    base_of,
    is_adapter,
    load_for_inference,
    load_tokenizer,
)
from lion_core.student.data import IGNORE_INDEX, SFTPair, build_example
from lion_core.student.generate import answer, generate
from lion_core.student.train import LOG_FILE, finetune
from lion_core.world.families import sample_tasks

STYLE = "compact"


def pairs_for(tasks) -> list[SFTPair]:
    return [SFTPair(prompts.student_prompt(STYLE, t.instruction), t.answer) for t in tasks]


def tiny_config(base: Path, **overrides) -> StudentConfig:
    settings = dict(
        model_path=base,
        finetune="full",
        prompt_template=STYLE,
        learning_rate=3e-3,
        max_steps=150,
        train_batch_size=16,
        gradient_accumulation_steps=1,
        max_length=64,
        infer_batch_size=64,
        max_new_tokens=16,
        do_sample=False,  # greedy: the exact-match assertions compare one answer per prompt
    )
    return StudentConfig(**{**settings, **overrides})


def exact_match(checkpoint: Path, tasks, config: StudentConfig) -> float:
    outputs = answer(checkpoint, [prompts.student_prompt(STYLE, t.instruction) for t in tasks], config)
    return sum(o == t.answer for o, t in zip(outputs, tasks)) / len(tasks)


def test_prompt_tokens_are_masked_and_eos_is_learned(tiny_student_path: Path) -> None:
    tokenizer = load_tokenizer(tiny_student_path)
    pair = SFTPair("Q: Reverse ab\nA: ", "ba")
    example = build_example(tokenizer, pair, max_length=64)
    n_prompt = 1 + len(pair.prompt)  # BOS + one token per character
    assert example["input_ids"][0] == tokenizer.bos_token_id
    assert example["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert example["labels"][n_prompt:] == [
        *tokenizer("ba", add_special_tokens=False).input_ids,
        tokenizer.eos_token_id,
    ]
    assert build_example(tokenizer, pair, max_length=n_prompt) is None  # no response token fits


def test_short_finetune_learns_an_easy_family(tiny_student_path: Path, tmp_path: Path) -> None:
    train = sample_tasks(600, Random(0), ["length"], levels=(1,))
    heldout = sample_tasks(100, Random(99), ["length"], levels=(1,))
    config = tiny_config(tiny_student_path)
    before = exact_match(tiny_student_path, heldout, config)
    result = finetune(tiny_student_path, pairs_for(train), tmp_path / "ft", config, seed=0, key="k1")
    after = exact_match(tmp_path / "ft", heldout, config)
    print(f"exact match on held-out 'length' items: untrained {before:.2f}, after 150 steps {after:.2f}")
    assert before <= 0.1
    assert after >= 0.5
    assert result.steps == len(result.losses) == 150
    assert result.losses[-1] < 0.5 * result.losses[0]
    assert json.loads((tmp_path / "ft" / FINGERPRINT_FILE).read_text())["key"] == "k1"
    assert json.loads((tmp_path / "ft" / LOG_FILE).read_text())["steps"] == 150


def test_training_is_deterministic_with_a_seed(tiny_student_path: Path, tmp_path: Path) -> None:
    pairs = pairs_for(sample_tasks(64, Random(1), ["copy"], levels=(1,)))
    config = tiny_config(tiny_student_path, max_steps=5)
    first = finetune(tiny_student_path, pairs, tmp_path / "a", config, seed=3)
    second = finetune(tiny_student_path, pairs, tmp_path / "b", config, seed=3)
    assert first.losses == second.losses


def test_epochs_with_gradient_accumulation_see_every_batch_of_every_epoch(
    tiny_student_path: Path, tmp_path: Path
) -> None:
    pairs = pairs_for(sample_tasks(10, Random(2), ["copy"], levels=(1,)))
    settings = dict(max_steps=None, train_batch_size=1, gradient_accumulation_steps=4)
    one, three = (
        finetune(
            tiny_student_path,
            pairs,
            tmp_path / f"e{n}",
            tiny_config(tiny_student_path, epochs=n, **settings),
            seed=0,
        )
        for n in (1, 3)
    )
    assert (one.steps, three.steps) == (3, 9)  # 10 batches in steps of 4, 4 and 2, per epoch
    assert three.tokens == 3 * one.tokens


def test_batched_and_one_at_a_time_greedy_outputs_agree(tiny_student_path: Path, tmp_path: Path) -> None:
    train = sample_tasks(400, Random(0), ["length", "copy"], levels=(1, 2))
    config = tiny_config(tiny_student_path, max_steps=80)
    finetune(tiny_student_path, pairs_for(train), tmp_path / "ft", config, seed=0)
    model, tokenizer = load_for_inference(tmp_path / "ft"), load_tokenizer(tmp_path / "ft")
    texts = [prompts.student_prompt(STYLE, t.instruction) for t in sample_tasks(40, Random(5), levels=(1, 2))]
    batched = generate(model, tokenizer, texts, batch_size=16, max_new_tokens=12)
    single = generate(model, tokenizer, texts, batch_size=1, max_new_tokens=12)
    assert batched == single
    assert len(set(batched)) > 5  # a real comparison, not all-empty outputs


def test_lora_saves_an_adapter_merges_on_request_and_continues(
    tiny_student_path: Path, tmp_path: Path
) -> None:
    pairs = pairs_for(sample_tasks(64, Random(2), ["length"], levels=(1,)))
    lora = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    config = tiny_config(tiny_student_path, finetune="lora", lora=lora, merge_adapter=True, max_steps=4)
    finetune(tiny_student_path, pairs, tmp_path / "it1", config, seed=0)
    assert is_adapter(tmp_path / "it1")
    assert (tmp_path / "it1" / "merged" / "config.json").exists()
    assert not (tmp_path / "it1" / "model.safetensors").exists()  # only the adapter weights
    # the next iteration continues the same adapter rather than stacking a new one
    second = finetune(tmp_path / "it1", pairs, tmp_path / "it2", config, seed=0)
    assert is_adapter(tmp_path / "it2") and second.steps == 4
    assert base_of(tmp_path / "it2") == base_of(tmp_path / "it1") == tiny_student_path
    first_weights, second_weights = (
        load_file(tmp_path / it / "adapter_model.safetensors") for it in ("it1", "it2")
    )
    assert first_weights.keys() == second_weights.keys()  # the same adapter, no second one on top
    assert any(not torch.equal(first_weights[k], second_weights[k]) for k in first_weights)  # trained on
    # the adapter and the merged weights saved beside it are the same model, and not the base model
    text = prompts.student_prompt(STYLE, sample_tasks(1, Random(3), ["length"], levels=(1,))[0].instruction)
    ids = load_tokenizer(tiny_student_path)(text, return_tensors="pt").input_ids

    def logits(path: Path) -> torch.Tensor:
        with torch.no_grad():
            return load_for_inference(path)(ids).logits

    adapted = logits(tmp_path / "it2")
    assert torch.allclose(logits(tmp_path / "it2" / "merged"), adapted, atol=1e-5)
    assert not torch.allclose(logits(tiny_student_path), adapted, atol=1e-5)


@pytest.mark.slow
def test_training_runs_as_two_processes_on_cpu(tiny_student_path: Path, tmp_path: Path) -> None:
    tasks = sample_tasks(600, Random(0), ["length"], levels=(1,))
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": p.prompt, "response": p.response}) + "\n" for p in pairs_for(tasks))
    )
    config = tiny_config(tiny_student_path, max_steps=60)
    (tmp_path / "student.json").write_text(config.model_dump_json())
    single = finetune(tiny_student_path, pairs_for(tasks), tmp_path / "single", config, seed=0)
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    command = [
        torchrun,
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "lion_core.student.train",
        "--base",
        str(tiny_student_path),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "ddp"),
        "--config",
        str(tmp_path / "student.json"),
        "--seed",
        "0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    ddp = json.loads(run.stdout.strip().splitlines()[-1])
    assert ddp["processes"] == 2
    assert ddp["steps"] == 60
    assert ddp["losses"][-1] < 0.5 * ddp["losses"][0]
    assert single.losses[-1] < 0.5 * single.losses[0]
    assert abs(ddp["losses"][-1] - single.losses[-1]) < 0.5 * single.losses[0]
    assert (tmp_path / "ddp" / "model.safetensors").exists()
