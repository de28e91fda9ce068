"""What the student's settings need of this machine, checked before anything is loaded, trained or paid
for: each refusal is one line that names the field (a ConfigError). A run's pre-flight, the fine-tune,
its launcher and the `accelerate launch` entry point all call `check_student`.

Refused: QLoRA without a CUDA GPU or bitsandbytes; fp16 without a CUDA GPU; flash_attention_2 where it
cannot run; FSDP or DeepSpeed without CUDA GPUs (never quietly turned into plain processes), DeepSpeed
not installed, more processes than GPUs; a tracker named in report_to that is not installed; the chat
prompt style for a checkpoint without a chat template.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml
from transformers.integrations import get_available_reporting_integrations
from transformers.utils import is_flash_attn_2_available

from lion_core.config import ConfigError, StudentConfig

SHARDED = {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed"}  # accelerate's distributed types that need CUDA
# what `accelerate launch` sets in its workers' environment
LAUNCHED_AS = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DEEPSPEED"}


def launches(student: StudentConfig) -> bool:
    """Whether the fine-tune runs under `accelerate launch` (several processes, or an accelerate config to
    honour) rather than in this process."""
    return student.num_processes > 1 or student.accelerate_config is not None


def distributed_type(path: Path) -> str:
    """The `distributed_type` of an accelerate config file (NO when it names none)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"student.accelerate_config: {path}: no such file") from None
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"student.accelerate_config: {path}: not a readable config ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"student.accelerate_config: {path}: not an accelerate config (a mapping)")
    return str(data.get("distributed_type", "NO")).upper()


def sharding(student: StudentConfig) -> tuple[str, str] | None:
    """(FSDP or DEEPSPEED, where it comes from) when the fine-tune shards the model: this process is an
    `accelerate launch` worker of such a config, or the config the fine-tune will be launched with."""
    for variable, kind in LAUNCHED_AS.items():
        if os.environ.get(variable, "").lower() == "true":
            return kind, "accelerate launch"
    if student.accelerate_config is not None and launches(student):
        kind = distributed_type(student.accelerate_config)
        if kind in SHARDED:
            return kind, f"student.accelerate_config: {student.accelerate_config}"
    return None


def check_processes(student: StudentConfig) -> None:
    """FSDP and DeepSpeed need CUDA GPUs (on CPU accelerate would quietly train plain DDP processes);
    DeepSpeed must be installed; a machine needs a GPU per process."""
    cuda = torch.cuda.is_available()
    sharded = sharding(student)
    if sharded is not None:
        kind, where = sharded
        if not cuda:
            raise ConfigError(
                f"{where} trains with {SHARDED[kind]}, which needs CUDA GPUs, and this machine has none: "
                "on CPU set student.num_processes: 1, or use deployments/accelerate/multi_gpu.yaml (DDP)"
            )
        if kind == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
            raise ConfigError(f"{where} trains with DeepSpeed, not installed here: pip install deepspeed")
    if cuda and launches(student) and student.num_processes > torch.cuda.device_count():
        raise ConfigError(
            f"student.num_processes: {student.num_processes} training processes, but this machine has "
            f"{torch.cuda.device_count()} GPU(s)"
        )


def check_precision(student: StudentConfig) -> None:
    """QLoRA, fp16 and flash-attention run on CUDA GPUs only."""
    cuda = torch.cuda.is_available()
    if student.finetune == "qlora" and not cuda:
        raise ConfigError(
            "student.finetune: qlora loads the base model in 4 bits with bitsandbytes, which needs a CUDA "
            "GPU, and this machine has none: use lora or full"
        )
    if student.finetune == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("student.finetune: qlora needs bitsandbytes: pip install bitsandbytes")
    if student.precision == "fp16" and not cuda:
        raise ConfigError("student.precision: fp16 needs a CUDA GPU; this machine has none: use bf16 or fp32")
    if student.attention == "flash_attention_2" and not (is_flash_attn_2_available() and cuda):
        raise ConfigError(
            "student.attention: flash_attention_2 needs the flash-attn package and a CUDA GPU: "
            "use auto or sdpa"
        )


def resolve_trackers(report_to: Sequence[str]) -> list[str]:
    """transformers `report_to` names for `student.report_to`: none wins; auto is TensorBoard when
    installed; all is every tracker installed; a tracker named but not installed is refused."""
    available = sorted(get_available_reporting_integrations())
    if "none" in report_to:
        return []
    if "all" in report_to:
        return available
    named = [name for name in dict.fromkeys(report_to) if name != "auto"]
    missing = [name for name in named if name not in available]
    if missing:
        packages = " ".join(name.replace("_", "-") for name in missing)
        raise ConfigError(
            f"student.report_to names {', '.join(missing)}, not installed here: "
            f"pip install {packages}, or leave it out of report_to"
        )
    if "auto" in report_to and "tensorboard" in available and "tensorboard" not in named:
        named.insert(0, "tensorboard")
    return named


def require_chat_template(tokenizer, checkpoint: Path | str) -> None:
    """`prompt_template: chat` needs the checkpoint's tokenizer to have a chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"student.prompt_template: chat, but the checkpoint {checkpoint} has no chat template: "
            "use lion, alpaca or compact, or an instruct checkpoint"
        )


def check_student(student: StudentConfig, checkpoint: Path | None = None) -> None:
    """Everything the student's settings need of this machine (and, given `checkpoint`, of its
    tokenizer), or a ConfigError in one line naming the field."""
    check_precision(student)
    check_processes(student)
    resolve_trackers(student.report_to)
    if checkpoint is not None and student.prompt_template == "chat":
        from transformers import AutoTokenizer

        require_chat_template(AutoTokenizer.from_pretrained(checkpoint), checkpoint)
