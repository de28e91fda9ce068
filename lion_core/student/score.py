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
from lion_core.student.data import IGNORE_INDEX, SFTPair, build_example, collate, sft_pairs
from lion_core.student.generate import length_sorted_batches


@torch.inference_mode()
def answer_losses(checkpoint: Path, pairs: Sequence[SFTPair], config: StudentConfig) -> list[float]:
    """Mean token NLL of each pair's response under the checkpoint (NaN when no response token fits
    in `max_length`), in input order, `infer_batch_size` at a time."""
    model, tokenizer = load_for_inference(checkpoint, config.precision), load_tokenizer(checkpoint)
    device = next(model.parameters()).device
    examples = [build_example(tokenizer, pair, config.max_length) for pair in pairs]
    kept = [i for i, e in enumerate(examples) if e is not None]
    losses = [math.nan] * len(pairs)
    for batch in length_sorted_batches(
        [len(examples[i]["input_ids"]) for i in kept], config.infer_batch_size
    ):
        check_stop("student losses")
        rows = [kept[b] for b in batch]
        inputs = collate([examples[i] for i in rows], tokenizer.pad_token_id)
        logits = model(
            input_ids=inputs["input_ids"].to(device), attention_mask=inputs["attention_mask"].to(device)
        ).logits.float()
        labels = inputs["labels"].to(device)[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none"
        )
        counted = (labels != IGNORE_INDEX).sum(dim=1)
        for row, value in zip(rows, (nll.sum(dim=1) / counted).tolist()):
            losses[row] = value
    return losses


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
