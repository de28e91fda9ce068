"""Loading and saving student checkpoints: full weights or a LoRA adapter, always from a local path."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from lion_core.config import StudentConfig

hf_logging.disable_progress_bar()
ADAPTER_FILE = "adapter_config.json"
FINGERPRINT_FILE = "lion_fingerprint.json"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def is_adapter(path: Path) -> bool:
    return (Path(path) / ADAPTER_FILE).exists()


def base_of(path: Path) -> Path:
    """The full-weights checkpoint under a path (itself, or an adapter's base model)."""
    if is_adapter(path):
        return Path(json.loads((Path(path) / ADAPTER_FILE).read_text())["base_model_name_or_path"])
    return Path(path)


def load_tokenizer(path: Path):
    """The tokenizer saved with a checkpoint (left padding for batched generation)."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_for_training(path: Path, config: StudentConfig):
    """A trainable model: continues an adapter, adds a fresh LoRA, or fine-tunes all weights."""
    model = AutoModelForCausalLM.from_pretrained(base_of(path), dtype=torch.float32)
    if is_adapter(path):
        return PeftModel.from_pretrained(model, path, is_trainable=True)
    if config.finetune == "lora":
        lora = config.lora
        peft_config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        )
        return get_peft_model(model, peft_config)
    return model


def load_for_inference(path: Path, precision: str = "fp32"):
    """An eval-mode model with any adapter merged in (fast generation)."""
    model = AutoModelForCausalLM.from_pretrained(base_of(path), dtype=DTYPES[precision])
    if is_adapter(path):
        model = PeftModel.from_pretrained(model, path).merge_and_unload()
    return model.eval()


def fingerprint(path: Path) -> str:
    """Identity of a checkpoint for cache keys: its recorded training key, else its files' names, sizes
    and modification times (weights replaced in place count as a new checkpoint)."""
    path = Path(path)
    recorded = path / FINGERPRINT_FILE
    if recorded.exists():
        return json.loads(recorded.read_text())["key"]
    files = sorted(
        (p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in path.rglob("*")
        if p.is_file()
    )
    return hashlib.sha256(json.dumps([str(path.resolve()), files]).encode()).hexdigest()


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished checkpoint into place; a reader never sees a half-written directory."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


# Settings of the student's answers, never of its weights (a fine-tune's cache key leaves them out).
INFERENCE_ONLY = frozenset(
    {"infer_batch_size", "max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "backend", "vllm"}
)
# Settings that change only where a fine-tune's progress is shown, never its weights.
NOT_TRAINING = frozenset({"report_to", "log_every_steps"})


def training_key(base: Path, data: Path, config: StudentConfig, seed: int) -> str:
    """Cache key of a fine-tune: (base checkpoint, train data hash, hyper-parameters, seed)."""
    hparams = config.model_dump(
        mode="json",
        exclude=INFERENCE_ONLY | NOT_TRAINING,
    )
    blob = json.dumps(
        [fingerprint(base), hashlib.sha256(Path(data).read_bytes()).hexdigest(), hparams, seed],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def has_key(path: Path, key: str) -> bool:
    """True when the checkpoint at path was trained under `key` (and is complete)."""
    recorded = Path(path) / FINGERPRINT_FILE
    return recorded.exists() and json.loads(recorded.read_text())["key"] == key


def content_key(*parts: object) -> str:
    """A cache key from JSON-serialisable parts (checkpoint fingerprints, texts, settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
