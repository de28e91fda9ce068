"""Loading and saving student checkpoints: full weights or a LoRA adapter, always from a local path, in
the dtype, attention implementation and quantization the student's settings ask for."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import is_flash_attn_2_available
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


def attention_implementation(config: StudentConfig) -> str:
    """`student.attention` as transformers' attn_implementation: auto is flash_attention_2 where it can run
    (flash-attn installed, a CUDA GPU, a 16-bit precision), else sdpa."""
    if config.attention != "auto":
        return config.attention
    runs = is_flash_attn_2_available() and torch.cuda.is_available() and config.precision != "fp32"
    return "flash_attention_2" if runs else "sdpa"


def training_dtype(config: StudentConfig) -> torch.dtype:
    """The dtype the model is loaded in for training: a full fine-tune's master weights (fp32, or the
    precision's for pure bf16); a LoRA/QLoRA base model, frozen, in the precision's (its fp32 adapters are
    PEFT's)."""
    if config.finetune == "full" and config.master_weights == "fp32":
        return torch.float32
    return DTYPES[config.precision]


def quantization(config: StudentConfig):
    """QLoRA's 4-bit BitsAndBytesConfig (computing in the precision's dtype), or None."""
    if config.finetune != "qlora":
        return None
    from transformers import BitsAndBytesConfig  # needs bitsandbytes only when used

    dtype = DTYPES[config.precision]
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=config.qlora.quant_type,
        bnb_4bit_use_double_quant=config.qlora.double_quant,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=dtype,  # FSDP shards the 4-bit weights as this dtype
    )


def load_for_training(path: Path, config: StudentConfig):
    """The model to train: the base weights in the training dtype (4-bit for QLoRA, on this process's
    GPU), with the adapter of `path` made trainable again when `path` is one. A fresh LoRA adapter is
    added by the trainer (`new_adapter`)."""
    kwargs: dict = {"dtype": training_dtype(config), "attn_implementation": attention_implementation(config)}
    quantized = quantization(config)
    if quantized is not None:
        from accelerate import PartialState

        kwargs |= {"quantization_config": quantized, "device_map": {"": PartialState().local_process_index}}
    model = AutoModelForCausalLM.from_pretrained(base_of(path), **kwargs)
    if is_adapter(path):
        # ZeRO-3 needs the adapter in the base dtype (TRL does the same for the adapters it adds)
        zero3 = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
        return PeftModel.from_pretrained(model, path, is_trainable=True, autocast_adapter_dtype=not zero3)
    return model


def new_adapter(path: Path, config: StudentConfig) -> LoraConfig | None:
    """The LoRA adapter a LoRA/QLoRA fine-tune of a full checkpoint adds (none when `path` is an adapter
    already: the next iteration continues it rather than stacking a second one)."""
    if config.finetune == "full" or is_adapter(path):
        return None
    lora = config.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


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
# Settings that change how a fine-tune computes (memory, speed), not what it learns: not in its key, so
# that turning gradient checkpointing on after running out of memory does not retrain finished rounds.
HOW_NOT_WHAT = frozenset({"gradient_checkpointing", "attention"})
# Settings of the preference stage, which runs after the imitation fine-tune: not part of its key.
AFTER_SFT = frozenset({"objective", "preference"})
# Settings added after runs were keyed: left out of the key at their default, so that an existing run's
# finished fine-tunes keep their keys (and are not trained again on resume).
KEYED_ONLY_WHEN_SET = frozenset({"master_weights", "qlora"})


def training_key(base: Path, data: Path, config: StudentConfig, seed: int) -> str:
    """Cache key of a fine-tune: (base checkpoint, train data hash, hyper-parameters, seed)."""
    defaults = StudentConfig().model_dump(mode="json", include=set(KEYED_ONLY_WHEN_SET))
    hparams = {
        name: value
        for name, value in config.model_dump(
            mode="json", exclude=INFERENCE_ONLY | NOT_TRAINING | HOW_NOT_WHAT | AFTER_SFT
        ).items()
        if not (name in KEYED_ONLY_WHEN_SET and value == defaults[name])
    }
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
