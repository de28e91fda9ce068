"""The student's training rows and prompt tokens, the same in training and answering.

`sft_rows` turns (prompt, response) pairs into TRL's prompt/completion rows: plain text for the `lion`,
`alpaca` and `compact` styles (TRL appends EOS to the completion), a user turn and an assistant turn for
`chat` (rendered by the checkpoint's chat template, whose end-of-turn closes the completion). TRL
tokenizes prompt + completion together and puts the loss on the completion's tokens only.

`prompt_ids` is what precedes an answer at inference: the tokenizer's own encoding of the prompt (BOS
included where the tokenizer adds it), or the chat template with the assistant's turn opened: exactly
the prompt TRL trains on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lion_core import prompts
from lion_core.config import ConfigError
from lion_core.records import Instruction, Response

CHAT = "chat"  # the prompt style that uses the checkpoint's chat template


@dataclass(frozen=True)
class SFTPair:
    """One (prompt, response) training pair in the student's format (for `chat`, the user's turn)."""

    prompt: str
    response: str


def sft_pairs(style: str, answers: Sequence[Response], *, send_inputs: bool = True) -> list[SFTPair]:
    """(prompt, teacher response) pairs for the teacher's answers. `send_inputs` (config
    `loop.send_inputs`) False: the prompt is the instruction alone, as the teacher saw it (the original's
    final scripts: chatgpt_inference.py writes no input, so train.py uses its no-input template)."""
    return [
        SFTPair(prompts.student_prompt(style, r.instruction, r.input if send_inputs else ""), r.output)
        for r in answers
    ]


def student_prompts(style: str, items: Sequence[Instruction], *, send_inputs: bool = True) -> list[str]:
    """The student's prompts for instructions (same format as in training).

    `send_inputs` (config `loop.send_inputs`) False: the instruction alone, as the original
    `lion_inference.py` (and as the student is trained then: `sft_pairs`).
    """
    return [
        prompts.student_prompt(style, item.instruction, item.input if send_inputs else "") for item in items
    ]


def user_turn(text: str) -> list[dict[str, str]]:
    """A chat prompt: the user's turn."""
    return [{"role": "user", "content": text}]


def sft_rows(pairs: Sequence[SFTPair], style: str) -> list[dict[str, Any]]:
    """TRL prompt/completion rows: conversational for the chat style, else text."""
    if style == CHAT:
        return [
            {"prompt": user_turn(p.prompt), "completion": [{"role": "assistant", "content": p.response}]}
            for p in pairs
        ]
    return [{"prompt": p.prompt, "completion": p.response} for p in pairs]


def prompt_ids(tokenizer, prompt: str, style: str = "lion") -> list[int]:
    """The tokens that precede the answer, in training and inference: the chat template with the
    assistant's turn opened (chat style), else the tokenizer's encoding (with the BOS it adds)."""
    if style != CHAT:
        return list(tokenizer(prompt).input_ids)
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("student.prompt_template: chat, but the checkpoint has no chat template")
    rendered = tokenizer.apply_chat_template(
        user_turn(prompt), add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(rendered["input_ids"])
