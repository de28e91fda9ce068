"""The offline world's tiny student: a small Llama with a character-level tokenizer, built locally.

Run as:  lion world student --out runs/tiny-student

It is saved with `save_pretrained` and used through `from_pretrained`, the same path as a real
checkpoint; nothing is downloaded.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from pydantic import BaseModel, Field
from tokenizers import Tokenizer, decoders, models, processors
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
CHARACTERS = string.printable  # letters, digits, punctuation, whitespace
# A chat template of its own, so that `student.prompt_template: chat` runs on CPU: `U: <user>\nA: ` then
# the assistant's answer and EOS. The prompt with the assistant's turn opened is a prefix of the whole
# conversation, as TRL's completion-only loss needs.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ 'A: ' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ 'S: ' + message['content'] + '\n' }}"
    "{% else %}{{ 'U: ' + message['content'] + '\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'A: ' }}{% endif %}"
)


class TinyStudentSpec(BaseModel):
    """Architecture of the tiny student (defaults: ~0.45M parameters, trains at ~15K tokens/s on 2 cores)."""

    hidden_size: int = Field(128, ge=8, description="Model width.")
    num_layers: int = Field(2, ge=1, description="Decoder layers.")
    num_heads: int = Field(4, ge=1, description="Attention heads.")
    intermediate_size: int = Field(344, ge=8, description="MLP width.")
    max_positions: int = Field(256, ge=16, description="Longest sequence (prompt + answer) in tokens.")
    seed: int = Field(0, description="Seed of the random initialisation.")


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer: BPE with no merges over printable ASCII, Fuse decoder, left padding, and
    a chat template of its own (CHAT_TEMPLATE)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in CHARACTERS:
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    # like a Llama tokenizer, `tokenizer(text)` starts with BOS (vLLM and lm-eval rely on it); the
    # training code encodes with add_special_tokens=False and adds BOS and EOS itself
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="left",
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_student(out_dir: str | Path, spec: TinyStudentSpec | None = None) -> Path:
    """Create, save and return the path of a randomly initialised tiny Llama student."""
    spec = spec or TinyStudentSpec()
    out = Path(out_dir)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
