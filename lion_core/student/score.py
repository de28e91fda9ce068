"""The student's own loss on the teacher's answers: a discrimination signal that needs no referee (an
open student gives it for free). Per item, the mean negative log-likelihood of the teacher's answer
tokens after the student's prompt — the same tokens and masking as imitation's loss (lion_core.student.
data). Batched forward passes, no generation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from lion_core.config import StudentConfig
from lion_core.interrupt import check as check_stop
from lion_core.records import ItemLoss, Response, read_jsonl, write_jsonl
from lion_core.student.checkpoint import load_for_inference, load_tokenizer
from lion_core.student.data import SFTPair, prompt_ids, sft_pairs
from lion_core.student.generate import length_sorted_batches

IGNORE_INDEX = -100  # label value the loss skips (PyTorch's cross-entropy default)


def example(tokenizer, pair: SFTPair, style: str, max_length: int) -> tuple[list[int], int] | None:
    """The tokens of prompt + answer + EOS (as imitation trains them) and where the answer starts; None
    when no answer token fits in `max_length`."""
    head = prompt_ids(tokenizer, pair.prompt, style)
    tail = [*tokenizer(pair.response, add_special_tokens=False).input_ids, tokenizer.eos_token_id]
    ids = (head + tail)[:max_length]
    return (ids, len(head)) if len(ids) > len(head) else None


@torch.inference_mode()
def answer_losses(checkpoint: Path, pairs: Sequence[SFTPair], config: StudentConfig) -> list[float]:
    """Mean token NLL of each pair's response under the checkpoint (NaN when no response token fits
    in `max_length`), in input order, `infer_batch_size` at a time."""
    model, tokenizer = load_for_inference(checkpoint, config.precision), load_tokenizer(checkpoint)
    device = next(model.parameters()).device
    examples = [example(tokenizer, pair, config.prompt_template, config.max_length) for pair in pairs]
    kept = [i for i, e in enumerate(examples) if e is not None]
    losses = [math.nan] * len(pairs)
    for batch in length_sorted_batches([len(examples[i][0]) for i in kept], config.infer_batch_size):
        check_stop("student losses")
        rows = [kept[b] for b in batch]
        ids, mask, labels = padded([examples[i] for i in rows], tokenizer.pad_token_id)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        targets = labels.to(device)[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
        )
        counted = (targets != IGNORE_INDEX).sum(dim=1)
        for row, value in zip(rows, (nll.sum(dim=1) / counted).tolist()):
            losses[row] = value
    return losses


def padded(batch: Sequence[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, ...]:
    """Right-padded input ids, attention mask and labels (the prompt and the padding ignored)."""
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (tokens, start) in enumerate(batch):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, start : len(tokens)] = torch.tensor(tokens[start:])
        mask[row, : len(tokens)] = 1
    return ids, mask, labels


def loss_file(config: StudentConfig, checkpoint: Path, answered: Path, out: Path) -> dict[str, float]:
    """The student's loss on every teacher answer of the JSONL file `answered` (Responses), written to
    `out` as {id, loss} rows; id → loss."""
    answers = read_jsonl(answered, Response)
    losses = answer_losses(checkpoint, sft_pairs(config.prompt_template, answers), config)
    rows = [ItemLoss(id=a.id, loss=loss if math.isfinite(loss) else None) for a, loss in zip(answers, losses)]
    write_jsonl(out, rows)
    return {a.id: loss for a, loss in zip(answers, losses)}


def read_losses(path: Path) -> dict[str, float]:
    """id → loss of a file `loss_file` wrote (NaN where no response token fitted)."""
    return {row.id: math.nan if row.loss is None else row.loss for row in read_jsonl(path, ItemLoss)}
