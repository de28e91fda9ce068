"""SFT examples for imitation: the student's prompt format, loss on response tokens only.

`build_example` tokenizes prompt and response separately, adds BOS (when the tokenizer has one) and
EOS explicitly, and sets the prompt's labels to IGNORE_INDEX so that only the teacher's response is
learned. `collate` right-pads a batch for training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lion_core import prompts
from lion_core.records import Instruction, Response

IGNORE_INDEX = -100  # label value the LM loss skips (PyTorch's cross-entropy default)


@dataclass(frozen=True)
class SFTPair:
    """One (prompt, response) training pair in the student's format."""

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


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """BOS (if any) + prompt tokens: exactly what precedes the response in training and inference."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + tokenizer(prompt, add_special_tokens=False).input_ids


def build_example(tokenizer, pair: SFTPair, max_length: int) -> dict[str, list[int]] | None:
    """input_ids and labels (prompt masked); None if no response token fits in max_length."""
    head = prompt_ids(tokenizer, pair.prompt)
    tail = [*tokenizer(pair.response, add_special_tokens=False).input_ids, tokenizer.eos_token_id]
    ids = (head + tail)[:max_length]
    labels = ([IGNORE_INDEX] * len(head) + tail)[:max_length]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return {"input_ids": ids, "labels": labels}


def build_examples(tokenizer, pairs: Sequence[SFTPair], max_length: int) -> list[dict[str, list[int]]]:
    """Examples for all pairs that keep at least one response token."""
    examples = (build_example(tokenizer, pair, max_length) for pair in pairs)
    return [e for e in examples if e is not None]


def collate(batch: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors: input_ids, attention_mask, labels (IGNORE_INDEX on padding)."""
    width = max(len(e["input_ids"]) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example["input_ids"])
        ids[row, :n] = torch.tensor(example["input_ids"])
        labels[row, :n] = torch.tensor(example["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
