"""lion_core/student/data.py: what the student is trained on."""

from __future__ import annotations

from pathlib import Path

from lion_core.student.checkpoint import load_tokenizer
from lion_core.student.data import IGNORE_INDEX, SFTPair, build_example


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
