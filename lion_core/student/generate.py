"""Student inference: batched generation in the training prompt format.

Prompts are sorted by length and cut into batches (left padding, so that every row ends where its
answer begins); greedy or sampled per config; generation stops at EOS. One prompt at a time is not
the default anywhere — `batch_size=1` exists only to measure the difference. Decoding is the config's
alone (`decoding`): the checkpoint's own generation_config (a Llama's top_p 0.9, a repetition penalty) is
never consulted. With the `vllm` backend the same token ids go to a vLLM engine in a process of its own
(lion_core.student.engine).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import GenerationConfig

from lion_core.config import StudentConfig
from lion_core.interrupt import check as check_stop
from lion_core.student.checkpoint import load_for_inference, load_tokenizer
from lion_core.student.data import prompt_ids
from lion_core.student.engine import answer_with_vllm

NO_TOP_K = 0  # transformers' "top-k off"


def encode(tokenizer, prompts: Sequence[str], style: str) -> list[list[int]]:
    """The prompts' token ids in the student's prompt style, exactly as in training (`prompt_ids`): what
    either backend answers."""
    return [prompt_ids(tokenizer, p, style) for p in prompts]


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return ids, mask


def decoding(config: StudentConfig, tokenizer) -> GenerationConfig:
    """The whole generation config of a student answer, from the config alone: max_new_tokens, greedy or
    sampled at temperature / top_p / top_k, EOS and padding of the tokenizer."""
    sampling = (
        {
            "do_sample": True,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "top_k": config.top_k if config.top_k is not None else NO_TOP_K,
        }
        if config.do_sample
        else {"do_sample": False}
    )
    return GenerationConfig(
        max_new_tokens=config.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **sampling,
    )


def neutral_generation_config(tokenizer) -> GenerationConfig:
    """What stands in for the checkpoint's generation_config while we generate: transformers fills every
    setting `decoding` leaves unset from the model's generation_config, so it must hold nothing but the
    library's defaults."""
    return GenerationConfig(
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    config: StudentConfig,
    *,
    seed: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Answers to `prompts` in input order, `config.infer_batch_size` at a time, decoded by the config's
    `max_new_tokens`, `do_sample`, `temperature`, `top_p` and `top_k` (nothing from the checkpoint's
    generation_config); `on_batch(done)` after each batch."""
    encoded = encode(tokenizer, prompts, config.prompt_template)
    outputs: list[str] = [""] * len(prompts)
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    settings = decoding(config, tokenizer)
    own, model.generation_config = model.generation_config, neutral_generation_config(tokenizer)
    try:
        done = 0
        for batch in length_sorted_batches([len(e) for e in encoded], config.infer_batch_size):
            check_stop("student answers")  # Ctrl-C: stop between batches
            ids, mask = _left_pad([encoded[i] for i in batch], tokenizer.pad_token_id)
            generated = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=settings
            )
            new_tokens = generated[:, ids.shape[1] :]
            for i, row in zip(batch, new_tokens):
                outputs[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
            done += len(batch)
            if on_batch is not None:
                on_batch(done)
    finally:
        model.generation_config = own
    return outputs


def release_cuda_cache() -> None:
    """Hand this process's cached, unused GPU blocks back (a fine-tune that ran in process leaves them
    with PyTorch's allocator), so another process can have them."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def answer(
    checkpoint: Path,
    prompts: Sequence[str],
    config: StudentConfig,
    *,
    seed: int = 0,
    on_batch: Callable[[int], None] | None = None,
    keys: Sequence[str] | None = None,
) -> list[str]:
    """Load a checkpoint and answer `prompts` with the configured backend. `keys` (the items' ids; by
    default the prompts) give the vLLM backend each prompt's own seed, derived from `seed`; the
    transformers backend samples every batch from one stream seeded by `seed`."""
    tokenizer = load_tokenizer(checkpoint)
    if config.backend == "vllm":
        ids, keys = (
            encode(tokenizer, prompts, config.prompt_template),
            list(keys) if keys is not None else list(prompts),
        )
        release_cuda_cache()  # the engine process takes its share of the GPU's memory
        return answer_with_vllm(checkpoint, ids, config, seed=seed, keys=keys, on_batch=on_batch)
    model = load_for_inference(checkpoint, config.precision)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return generate(model, tokenizer, prompts, config, seed=seed, on_batch=on_batch)
