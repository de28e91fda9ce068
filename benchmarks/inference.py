"""Run as: .venv/bin/python benchmarks/inference.py

Student inference on CPU: instructions/s of batched generation (length-sorted batches, left padding)
against one prompt at a time, with the same greedy outputs. The tiny student is first trained for a
few seconds so that its answers are realistic (they stop at EOS). Writes benchmarks/results/inference.json.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from random import Random

from common import markdown, save

from lion_core import prompts
from lion_core.config import StudentConfig
from lion_core.student.checkpoint import load_for_inference, load_tokenizer
from lion_core.student.data import SFTPair
from lion_core.student.generate import generate
from lion_core.student.train import finetune
from lion_core.world.families import sample_tasks
from lion_core.world.student import build_tiny_student

PROMPTS = 512
BATCH_SIZES = (32, 128)
SINGLE_PROMPTS = 128  # one-at-a-time is slow: measured on the first 128 prompts
MAX_NEW_TOKENS = 24


def trained_student(folder: Path) -> Path:
    base = build_tiny_student(folder / "base")
    tasks = sample_tasks(1000, Random(0), levels=(1, 2))
    pairs = [SFTPair(prompts.student_prompt("compact", t.instruction), t.answer) for t in tasks]
    config = StudentConfig(
        model_path=base,
        finetune="full",
        prompt_template="compact",
        learning_rate=3e-3,
        max_steps=200,
        train_batch_size=32,
        gradient_accumulation_steps=1,
        max_length=96,
    )
    finetune(base, pairs, folder / "trained", config, seed=0)
    return folder / "trained"


def rate(model, tokenizer, texts: list[str], batch_size: int) -> tuple[float, list[str]]:
    started = time.perf_counter()
    decoding = StudentConfig(infer_batch_size=batch_size, max_new_tokens=MAX_NEW_TOKENS)  # greedy
    outputs = generate(model, tokenizer, texts, decoding)
    return len(texts) / (time.perf_counter() - started), outputs


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = trained_student(Path(tmp))
        model, tokenizer = load_for_inference(path), load_tokenizer(path)
        texts = [prompts.student_prompt("compact", t.instruction) for t in sample_tasks(PROMPTS, Random(7))]
        single, single_out = rate(model, tokenizer, texts[:SINGLE_PROMPTS], 1)
        rows = [
            {
                "mode": "one at a time",
                "batch": 1,
                "instructions/s": round(single, 1),
                "speed-up": "1.0x",
                "same outputs": "–",
            }
        ]
        for size in BATCH_SIZES:
            batched, out = rate(model, tokenizer, texts, size)
            rows.append(
                {
                    "mode": "batched",
                    "batch": size,
                    "instructions/s": round(batched, 1),
                    "speed-up": f"{batched / single:.1f}x",
                    "same outputs": out[:SINGLE_PROMPTS] == single_out,
                }
            )
    save(
        "inference",
        ".venv/bin/python benchmarks/inference.py",
        rows,
        prompts=PROMPTS,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    print(markdown(rows))


if __name__ == "__main__":
    main()
