"""lion_core/student/data.py: the rows the student is trained on and the prompt tokens it answers after
(the masking itself is TRL's, checked on the trainer's rows in test_train.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lion_core.config import ConfigError
from lion_core.student.checkpoint import load_tokenizer
from lion_core.student.data import SFTPair, prompt_ids, sft_rows


def test_text_styles_are_prompt_completion_rows_and_chat_is_a_conversation() -> None:
    pair = SFTPair("Q: Reverse ab\nA: ", "ba")
    assert sft_rows([pair], "compact") == [{"prompt": "Q: Reverse ab\nA: ", "completion": "ba"}]
    assert sft_rows([SFTPair("Reverse ab", "ba")], "chat") == [
        {
            "prompt": [{"role": "user", "content": "Reverse ab"}],
            "completion": [{"role": "assistant", "content": "ba"}],
        }
    ]


def test_the_prompt_tokens_are_the_tokenizers_own_or_the_chat_templates(tiny_student_path: Path) -> None:
    tokenizer = load_tokenizer(tiny_student_path)
    text = "Q: Reverse ab\nA: "
    assert prompt_ids(tokenizer, text, "compact") == tokenizer(text).input_ids  # BOS as the tokenizer adds it
    assert prompt_ids(tokenizer, text, "compact")[0] == tokenizer.bos_token_id
    chat = prompt_ids(tokenizer, "Reverse ab", "chat")
    assert tokenizer.decode(chat) == "<s>U: Reverse ab\nA: "  # the tiny student's template, turn opened


def test_chat_without_a_template_is_one_clear_line(tiny_student_path: Path) -> None:
    tokenizer = load_tokenizer(tiny_student_path)
    tokenizer.chat_template = None
    with pytest.raises(ConfigError, match=r"^student.prompt_template: chat, but the checkpoint has no chat"):
        prompt_ids(tokenizer, "Reverse ab", "chat")
