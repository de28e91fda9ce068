"""benchmarks/gpu_check.py (`make gpu-check`) where no GPU is: it refuses at once in one line, builds a
real architecture (Qwen2.5-0.5B's shape at full size), and its tiny rehearsal runs the fine-tunes through
the project's API, recording every step (QLoRA skipped with the reason on CPU). The vLLM and `lion run`
steps run in `make vllm-check` territory: tests/e2e/test_gpu_check.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.support.paths import BENCHMARKS, REPO, benchmark

gpu_check = benchmark("gpu_check")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here: the check would run")
def test_without_cuda_the_check_stops_at_once_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("gpu-check: no CUDA device here")
    assert "--tiny" in done.stderr and not out.exists()


def test_the_full_size_model_is_qwen2_5_0_5b_shaped(tmp_path: Path) -> None:
    from transformers import Qwen2Config

    gpu = gpu_check.GPU
    config = Qwen2Config(
        vocab_size=gpu.vocab_size,
        hidden_size=gpu.hidden_size,
        intermediate_size=gpu.intermediate_size,
        num_hidden_layers=gpu.layers,
        num_attention_heads=gpu.heads,
        num_key_value_heads=gpu.kv_heads,
        tie_word_embeddings=True,
    )
    with torch.device("meta"):  # counted, never allocated
        from transformers import Qwen2ForCausalLM

        parameters = sum(p.numel() for p in Qwen2ForCausalLM(config).parameters())
    assert 490e6 < parameters < 500e6  # Qwen2.5-0.5B: 494M
    assert gpu.hidden_size // gpu.heads in (64, 128)  # a head size every attention kernel takes


def test_a_tiny_rehearsal_runs_the_fine_tunes_and_records_every_step(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    code = gpu_check.main(["--tiny", "--only", "full", "lora", "qlora", "--out", str(out)])
    result = json.loads(out.read_text())
    rows = {row["step"]: row for row in result["rows"]}
    assert code == 0 and list(rows) == ["build", "full", "lora", "qlora"]
    assert rows["build"]["status"] == "ok" and rows["build"]["parameters_m"] > 0
    for name in ("full", "lora"):
        row = rows[name]
        assert row["status"] == "ok" and row["optimizer_steps"] == gpu_check.TINY.train_steps, row
        assert row["tokens_per_s"] > 0 and row["s_per_step"] > 0 and row["seconds"] > 0
    if not torch.cuda.is_available():
        assert rows["qlora"] == {**rows["qlora"], "status": "skipped"}
        assert "CUDA" in rows["qlora"]["reason"] and rows["full"]["peak_gpu_gib"] is None
    assert result["scale"]["layers"] == gpu_check.TINY.layers and result["device"]["cuda"] is False
