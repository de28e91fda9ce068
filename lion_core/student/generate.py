"""Student inference: batched generation in the training prompt format.

Prompts are sorted by length and cut into batches (left padding, so that every row ends where its
answer begins); greedy or sampled per config; generation stops at EOS. One prompt at a time is not
the default anywhere — `batch_size=1` exists only to measure the difference. With the `vllm` backend
(the vllm extra, a GPU) the same prompts go through vLLM's offline engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from lion_core.config import StudentConfig
from lion_core.interrupt import check as check_stop
from lion_core.student.checkpoint import is_adapter, load_for_inference, load_tokenizer
from lion_core.student.data import prompt_ids

VLLM_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


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
    `max_new_tokens`, `do_sample` and `temperature`; `on_batch(done)` after each batch."""
    encoded = [prompt_ids(tokenizer, p, config.prompt_template) for p in prompts]
    outputs: list[str] = [""] * len(prompts)
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    sampling = (
        {"do_sample": True, "temperature": config.temperature} if config.do_sample else {"do_sample": False}
    )
    done = 0
    for batch in length_sorted_batches([len(e) for e in encoded], config.infer_batch_size):
        check_stop("student answers")  # Ctrl-C: stop between batches
        ids, mask = _left_pad([encoded[i] for i in batch], tokenizer.pad_token_id)
        generated = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=config.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **sampling,
        )
        new_tokens = generated[:, ids.shape[1] :]
        for i, row in zip(batch, new_tokens):
            outputs[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
        done += len(batch)
        if on_batch is not None:
            on_batch(done)
    return outputs


def answer(
    checkpoint: Path,
    prompts: Sequence[str],
    config: StudentConfig,
    *,
    seed: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Load a checkpoint and answer `prompts` with the configured backend."""
    if config.backend == "vllm":
        return answer_with_vllm(checkpoint, prompts, config, seed=seed)
    model = load_for_inference(checkpoint, config.precision)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return generate(model, load_tokenizer(checkpoint), prompts, config, seed=seed, on_batch=on_batch)


def answer_with_vllm(
    checkpoint: Path, prompts: Sequence[str], config: StudentConfig, *, seed: int
) -> list[str]:
    """vLLM offline inference (needs the vllm extra and a GPU; LoRA checkpoints need merge_adapter)."""
    try:
        from vllm import LLM, SamplingParams
    except ImportError as err:
        raise RuntimeError(
            "student.backend is 'vllm' but vllm is not installed (pip install .[vllm])"
        ) from err
    path = Path(checkpoint)
    if is_adapter(path):
        merged = path / "merged"
        if not merged.exists():
            raise RuntimeError(
                f"{path} is a LoRA adapter; set student.merge_adapter: true for vLLM inference"
            )
        path = merged
    engine = LLM(model=str(path), tokenizer=str(path), seed=seed, dtype=VLLM_DTYPES[config.precision])
    params = SamplingParams(
        temperature=config.temperature if config.do_sample else 0.0,
        max_tokens=config.max_new_tokens,
        seed=seed,
    )
    replies = engine.generate(list(prompts), params)
    return [r.outputs[0].text.strip() for r in replies]
