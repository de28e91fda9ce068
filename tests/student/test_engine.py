"""lion_core/student/engine.py: the vLLM engine process — what it is asked (token ids, one seed per item,
the config's decoding, the checkpoint's generation_config left out, LoRA as adapter or merged) and that it
is always ended: answered, failed or stopped. A fake interpreter stands in for vLLM's here (it answers
from the request, and leaves a child behind as vLLM's engine core would); tests/e2e/test_vllm.py runs the
real engine."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path

import pytest

from lion_core.config import ConfigError, LionConfig, StudentConfig
from lion_core.interrupt import STOP, Interrupted
from lion_core.run.rundir import preflight
from lion_core.student.checkpoint import load_tokenizer
from lion_core.student.engine import (
    EngineError,
    check_vllm_python,
    decoding,
    engine_arguments,
    item_seed,
    lora_rank,
)
from lion_core.student.generate import answer, encode
from lion_core.student.generate import decoding as transformers_decoding
from tests.support.processes import mark_processes, marked_processes

# A stand-in for `student.vllm.python`: `-c PROBE` finds vLLM; `-I vllm_worker.py REQUEST` records the
# request, starts a child that would outlive it (as vLLM's engine core), then answers, fails or hangs.
FAKE_PYTHON = """#!{python}
import json, os, subprocess, sys, time
if sys.argv[1:3] == ["-I", "-c"]:
    sys.exit(0)
request = json.load(open(sys.argv[3]))
json.dump(request, open(os.environ["FAKE_ENGINE_RECORD"], "w"))
subprocess.Popen(["sleep", "600"])
mode = os.environ["FAKE_ENGINE_MODE"]
if mode == "fail":  # as vLLM fails: the root cause first, pages of log, then the worker's last words
    print("(EngineCore pid=1) ValueError: Head size 16 is not supported", file=sys.stderr)
    print("INFO shutting down\\n" * 500, file=sys.stderr)
    print("vllm.v1.engine.exceptions.EngineDeadError: See stack trace (above)", file=sys.stderr)
    sys.exit(3)
if mode == "hang":
    time.sleep(600)
with open(request["out"], "a") as out:
    for i, ids in enumerate(request["prompt_ids"]):
        out.write(json.dumps({{"index": i, "text": " answer %d " % len(ids), "tokens": 2}}) + "\\n")
"""


@pytest.fixture
def fake_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(a StudentConfig on the fake interpreter, the recorded request's path, the process mark)."""
    python = tmp_path / "fake-python"
    python.write_text(FAKE_PYTHON.format(python=sys.executable))
    python.chmod(0o755)
    record = tmp_path / "request.json"
    monkeypatch.setenv("FAKE_ENGINE_RECORD", str(record))
    monkeypatch.setenv("FAKE_ENGINE_MODE", "answer")
    config = StudentConfig(backend="vllm", vllm={"python": python, "stop_grace_s": 2.0})
    return config, record, mark_processes(monkeypatch)


def test_each_prompt_is_sampled_with_its_own_seed_from_the_run_seed_and_the_item(
    tiny_student_path: Path, fake_engine
) -> None:
    config, record, _ = fake_engine
    prompts = ["same prompt", "same prompt", "another"]
    answer(tiny_student_path, prompts, config, seed=42, keys=["a", "b", "c"])
    seeds = json.loads(record.read_text())["seeds"]
    assert seeds == [item_seed(42, key) for key in "abc"]
    assert len(set(seeds)) == 3  # equal prompts of different items are sampled independently
    assert item_seed(42, "a") == item_seed(42, "a") != item_seed(43, "a")


def test_the_engine_gets_the_transformers_backends_token_ids_and_decoding(
    tiny_student_path: Path, fake_engine
) -> None:
    config, record, _ = fake_engine
    config = config.model_copy(update={"temperature": 0.9, "top_p": 0.8, "top_k": 20, "max_new_tokens": 7})
    answers = answer(tiny_student_path, ["ab", "abcd"], config, seed=0)
    request = json.loads(record.read_text())
    tokenizer = load_tokenizer(tiny_student_path)
    assert request["prompt_ids"] == encode(tokenizer, ["ab", "abcd"], config.prompt_template)  # as generate()
    assert answers == ["answer 3", "answer 5"]  # in prompt order, stripped as the other backend's
    assert request["decoding"] == {"temperature": 0.9, "top_p": 0.8, "top_k": 20, "max_tokens": 7}
    hf = transformers_decoding(config, tokenizer)
    assert (hf.temperature, hf.top_p, hf.top_k, hf.max_new_tokens) == (0.9, 0.8, 20, 7)
    assert request["engine"]["generation_config"] == "vllm"  # not the checkpoint's generation_config.json


def test_greedy_and_no_top_k_mean_the_same_in_both_backends(tiny_student_path: Path) -> None:
    tokenizer = load_tokenizer(tiny_student_path)
    greedy = StudentConfig(do_sample=False, max_new_tokens=5)
    assert decoding(greedy) == {"temperature": 0.0, "max_tokens": 5}
    assert transformers_decoding(greedy, tokenizer).do_sample is False
    unbounded = StudentConfig(top_k=None)
    assert decoding(unbounded)["top_k"] == 0 and transformers_decoding(unbounded, tokenizer).top_k == 0


def _adapter(tmp_path: Path, base: Path, merged: bool) -> Path:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    if merged:
        shutil.copytree(base, adapter / "merged")
    return adapter


def test_a_lora_student_is_served_as_an_adapter_or_merged_as_configured(
    tiny_student_path: Path, tmp_path: Path
) -> None:
    adapter = _adapter(tmp_path, tiny_student_path, merged=True)
    lora = {"finetune": "lora", "backend": "vllm", "merge_adapter": True, "lora": {"r": 12}}
    engine, served = engine_arguments(adapter, StudentConfig(**lora), seed=1)
    assert engine["model"] == str(tiny_student_path) and served == {"path": str(adapter)}
    assert engine["enable_lora"] is True and engine["max_lora_rank"] == lora_rank(12) == 16
    engine, served = engine_arguments(adapter, StudentConfig(**lora, vllm={"lora": "merged"}), seed=1)
    assert engine["model"] == str(adapter / "merged") and served is None and "enable_lora" not in engine
    with pytest.raises(ValueError, match=r"student\.merge_adapter"):
        StudentConfig(**{**lora, "merge_adapter": False}, vllm={"lora": "merged"})
    shutil.rmtree(adapter / "merged")
    with pytest.raises(EngineError, match="no merged weights"):
        engine_arguments(adapter, StudentConfig(**lora, vllm={"lora": "merged"}), seed=1)


def test_engine_args_override_the_sections_settings(tiny_student_path: Path) -> None:
    config = StudentConfig(vllm={"engine_args": {"enforce_eager": True, "gpu_memory_utilization": 0.5}})
    engine, _ = engine_arguments(tiny_student_path, config, seed=0)
    assert engine["enforce_eager"] is True and engine["gpu_memory_utilization"] == 0.5


def test_the_engine_and_its_children_are_ended_when_answering_ends(
    tiny_student_path: Path, fake_engine
) -> None:
    config, _, mark = fake_engine
    done: list[int] = []
    assert answer(tiny_student_path, ["a", "b"], config, seed=0, on_batch=done.append)
    assert done[-1] == 2
    assert marked_processes(mark) == []  # the worker's child (vLLM's engine core) is gone too


def test_a_failing_engine_is_one_error_quoting_its_stderr_and_leaves_nothing(
    tiny_student_path: Path, fake_engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _, mark = fake_engine
    monkeypatch.setenv("FAKE_ENGINE_MODE", "fail")
    with pytest.raises(EngineError, match=r"exit 3, 0 of 1 answers\): .*ValueError: Head size 16 is not"):
        answer(tiny_student_path, ["a"], config, seed=0)
    assert marked_processes(mark) == []


def test_ctrl_c_stops_the_engine(
    tiny_student_path: Path, fake_engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, record, mark = fake_engine
    monkeypatch.setenv("FAKE_ENGINE_MODE", "hang")

    def stop_once_started() -> None:
        while not record.exists():
            threading.Event().wait(0.05)
        STOP.set()

    threading.Thread(target=stop_once_started, daemon=True).start()
    try:
        with pytest.raises(Interrupted):
            answer(tiny_student_path, ["a"], config, seed=0)
    finally:
        STOP.clear()
    assert marked_processes(mark) == []


def test_vllm_missing_is_refused_before_anything_runs(tiny_student_path: Path, tmp_path: Path) -> None:
    here = StudentConfig(backend="vllm")  # this environment (the project's) has no vLLM
    assert "vLLM is not installed in this environment" in check_vllm_python(here)
    missing = StudentConfig(backend="vllm", vllm={"python": tmp_path / "nowhere" / "python"})
    assert check_vllm_python(missing).startswith("student.vllm.python: ")
    seed = tmp_path / "seed.jsonl"
    seed.write_text('{"id": "s1", "instruction": "Say hi"}\n')
    config = LionConfig(
        run_dir=tmp_path / "run",
        pools={"seed_path": seed},
        student={"model_path": tiny_student_path, "backend": "vllm"},
    )
    with pytest.raises(ConfigError, match="vLLM is not installed"):
        preflight(config)
    assert not (tmp_path / "run").exists()
