"""One validated configuration for the whole Lion loop.

Every number the method or the infrastructure depends on (tau, the ROUGE-L threshold, the hard:easy
ratio, concurrency, prices, ...) lives here with its help text; code never hard-codes them.
Load with `load_config("configs/demo.yaml")`; errors name the file, the line and the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    model_validator,
)

from lion_core import data as packaged_data
from lion_core.records import atomic_write_text

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


def _packaged(value: Any) -> Any:
    """A value "package:NAME" -> the path of the installed file lion_core/data/NAME, as a string (JSON-mode
    validation of a Path accepts strings only); any other value unchanged."""
    resolved = packaged_data.resolve(value)
    return str(resolved) if resolved is not value else value


# A file path that may name a file shipped in lion_core/data as "package:NAME" (resolved to the installed
# file; written back as "package:NAME", so a run's config.yaml does not depend on where the package is).
DataPath = Annotated[
    Path,
    BeforeValidator(_packaged),
    PlainSerializer(packaged_data.package_name, when_used="json"),
]


# Experiment trackers a fine-tune can report to (transformers' `report_to` integrations, which TRL's trainers
# use), plus: auto (TensorBoard when it is installed, else none), all (every tracker installed) and none.
TrackerName = Literal[
    "auto",
    "none",
    "all",
    "tensorboard",
    "mlflow",
    "wandb",
    "trackio",
    "comet_ml",
    "clearml",
    "dvclive",
    "swanlab",
]


def _one_or_many(value: Any) -> Any:
    """A single name ("tensorboard") is a list of one, as in transformers' report_to."""
    return [value] if isinstance(value, str) else value


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names file, line and field."""


class MissingApiKeyError(ConfigError):
    """A non-local endpoint has no API key in its environment variable."""


class _Model(BaseModel):
    # No NaN or infinity anywhere: a non-finite tau, price or budget would be accepted and then paid for.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class BatchSettings(_Model):
    """How a role in `mode: batch` uses the provider's Batch API (upload a JSONL file, create a batch,
    poll it, download its output and error files). Limits default to OpenAI's."""

    completion_window: Literal["24h"] = Field(
        "24h", description="The batch's completion window (the Batch API accepts only 24h)."
    )
    poll_interval_s: float = Field(
        30.0, gt=0, description="Seconds between two status checks of a batch in flight (not a busy loop)."
    )
    collect_s: float = Field(
        0.5,
        gt=0,
        description="Requests are gathered into one batch until none has arrived for this many seconds.",
    )
    price_factor: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of the list prices (price_input_per_1k, price_output_per_1k) a batched request "
        "costs: OpenAI's Batch API charges half. The ledger, the budget guard and the report use it.",
    )
    max_requests: int = Field(
        50_000, ge=1, description="Most requests in one batch file (the provider's limit; larger is split)."
    )
    max_bytes: int = Field(
        200 * 1024 * 1024,
        ge=1,
        description="Most bytes in one batch file (the provider's limit, 200 MB at OpenAI; larger is split).",
    )
    max_resubmits: int = Field(
        5,
        ge=0,
        description="Times a request missing from a finished batch (failed line, expired or cancelled "
        "batch) is put in a new batch before it fails.",
    )


class EndpointConfig(_Model):
    """One OpenAI-compatible chat endpoint (one per role: teacher, referee, generator, judge)."""

    mode: Literal["sync", "batch"] = Field(
        "sync",
        description="sync: one HTTP request per reply; batch: the provider's Batch API at its discount "
        "(replies within the completion window; a re-run re-attaches to a batch in flight).",
    )
    batch: BatchSettings = Field(
        default_factory=BatchSettings, description="Batch API settings (mode: batch)."
    )

    base_url: str = Field(
        "http://127.0.0.1:8765/v1", description="OpenAI-compatible base URL, ending in /v1."
    )
    model: str = Field("world", description="Model name sent with every request.")
    cache_identity: str | None = Field(
        None,
        description="What identifies this endpoint in the response cache key, in place of base_url: set "
        "it when one server can be reached at different addresses (lion demo sets 'world:<seed and "
        "settings>', so a world on another port replays the cache). None: the base_url, so that two "
        "providers never share replies.",
    )
    api_key_env: str | None = Field(
        None,
        description="Environment variable holding the API key. None: no key (local servers only).",
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_tokens: int = Field(512, ge=1, description="Maximum tokens in one reply.")
    concurrency: int = Field(16, ge=1, description="Requests in flight at once.")
    requests_per_minute: float | None = Field(None, gt=0, description="Request rate limit; None: unlimited.")
    tokens_per_minute: float | None = Field(
        None,
        gt=0,
        description="Token rate limit: a request is booked at its prompt tokens + max_tokens, then corrected "
        "to the usage its reply reports (lion_core.api.tokens); None: unlimited (the provider's "
        "x-ratelimit-limit-tokens header is adopted when it sends one).",
    )
    timeout_s: float = Field(60.0, gt=0, description="Timeout of one HTTP request, in seconds.")
    max_retries: int = Field(
        6,
        ge=0,
        description="Retries on 429, 5xx, connection errors and timeouts (exponential backoff, jitter).",
    )
    price_input_per_1k: float = Field(0.0, ge=0, description="USD per 1K prompt tokens.")
    price_output_per_1k: float = Field(0.0, ge=0, description="USD per 1K completion tokens.")

    @property
    def identity(self) -> str:
        """The endpoint in the response cache key: cache_identity, else the base URL."""
        return self.cache_identity or self.base_url.rstrip("/")

    @property
    def is_local(self) -> bool:
        """True when the endpoint is on this machine (no API key needed)."""
        return (urlparse(self.base_url).hostname or "") in LOCAL_HOSTS

    def api_key(self) -> SecretStr | None:
        """The key from the environment; MissingApiKeyError for a non-local endpoint without one."""
        value = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if value:
            return SecretStr(value)
        if self.is_local:
            return None
        where = f"environment variable {self.api_key_env}" if self.api_key_env else "api_key_env (not set)"
        raise MissingApiKeyError(
            f"endpoint {self.base_url} (model {self.model}) needs an API key: {where} is empty"
        )

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        """Price of a request with these token counts (at the batch price in mode batch)."""
        factor = self.batch.price_factor if self.mode == "batch" else 1.0
        list_price = input_tokens * self.price_input_per_1k + output_tokens * self.price_output_per_1k
        return factor * list_price / 1000.0


class TeacherEndpoint(EndpointConfig):
    """The Teacher's endpoint; decoding defaults as in the original `chatgpt_inference.py`."""

    temperature: float = Field(
        0.7, ge=0.0, le=2.0, description="Sampling temperature (the original teacher: 0.7)."
    )
    max_tokens: int = Field(
        1024, ge=1, description="Maximum tokens in one answer (the original teacher: 1024)."
    )


class RefereeSample(_Model):
    """Judge a sample of the Cache Pool each iteration instead of all of it (lion_core.method.sampling):
    every item of the newest generation and a stratified random sample of the older pool."""

    size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Older Cache Pool items judged per iteration (about: each stratum gets its share, "
        "rounded up), or 'auto': enough judged items that the expected hard and easy candidates are "
        "parents_multiple × the parents the generator draws of each, at the last measured hard share.",
    )
    parents_multiple: float = Field(
        2.0,
        ge=1.0,
        description="auto: judged hard (and easy) candidates expected per parent the generator draws.",
    )
    prior_hard_share: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="auto: the hard share assumed before any iteration measured one (iteration 1).",
    )
    min_per_stratum: int = Field(
        50,
        ge=1,
        description="At least this many items of each older stratum (the iteration an item was born in) "
        "are judged, or the whole stratum: every stratum's hard share is estimated.",
    )
    confidence: float = Field(
        0.95, gt=0.0, lt=1.0, description="Confidence level of the hard share's interval in summary.json."
    )


class RefereeEndpoint(EndpointConfig):
    """The Referee's endpoint; decoding defaults as in the original `chatgpt_referee.py`."""

    temperature: float = Field(
        0.2, ge=0.0, le=2.0, description="Sampling temperature (the original referee: 0.2)."
    )
    max_tokens: int = Field(
        512, ge=1, description="Maximum tokens in one verdict (the original referee: 512)."
    )
    skip_identical: bool = Field(
        True,
        description="When the student's answer equals the teacher's (after whitespace normalisation), "
        "record the verdict 'identical' (gap 0, easy at tau > 0) without asking the referee: for equal "
        "answers both orders are the same request, so the two-order gap is 0 whatever scores it gives. "
        "Counted per iteration ('identical' in summary.json). false: ask anyway, as the original.",
    )
    sample: RefereeSample | None = Field(
        None,
        description="Judge only a sample of the Cache Pool each iteration (the student answers only it, "
        "and generation's parents are drawn from it); the hard share is then the sample's estimate with "
        "its confidence interval. null: judge the whole Cache Pool every iteration, as the paper.",
    )


class GeneratorEndpoint(EndpointConfig):
    """The Generator's endpoint; decoding defaults as in the original `generate_*_instruction.py`."""

    temperature: float = Field(
        1.0, ge=0.0, le=2.0, description="Sampling temperature (the original generator: 1.0)."
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass (the original: 1.0).")
    max_tokens: int = Field(
        512,
        ge=1,
        description="Maximum tokens of a new instruction when loop.generator_max_tokens_per_word is null "
        "(by default each request's limit is that many tokens per word of its parent, as the original).",
    )


class LoraSettings(_Model):
    """LoRA adapter hyper-parameters (peft.LoraConfig)."""

    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling alpha.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Module names that receive adapters.",
    )
    learning_rate: float = Field(
        2e-4,
        gt=0,
        description="Peak learning rate of a LoRA fine-tune when student.learning_rate is not given "
        "(adapters need a higher rate than full fine-tuning; 2e-4 is the usual LoRA/QLoRA rate).",
    )


class PreferenceSettings(_Model):
    """The preference stage (student.objective: sft+dpo): DPO on the iteration's preference pairs after
    the imitation fine-tune, the fine-tuned (SFT) checkpoint as the reference model."""

    pairs: Literal["hard", "all"] = Field(
        "hard",
        description="Which of the iteration's pairs (RUN/iter_K/pairs.jsonl) to train on: hard (gap ≥ tau) "
        "or all with a positive gap. Without a referee (selection uniform, progress) every pair is a self "
        "pair: the teacher's answer preferred to the student's own where they differ.",
    )
    max_pairs: int | None = Field(
        None, ge=1, description="At most this many pairs per iteration (a seeded sample); null: all."
    )
    beta: float = Field(0.1, gt=0, description="DPO's beta: how far the policy may move from the reference.")
    learning_rate: float = Field(5e-7, gt=0, description="Learning rate of the preference stage.")
    epochs: float = Field(1.0, gt=0, description="Passes over the pairs (max_steps overrides).")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps of the stage; overrides epochs.")
    train_batch_size: int = Field(4, ge=1, description="Pairs per device per micro-batch.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")


class QLoraSettings(_Model):
    """How QLoRA quantizes the frozen base model (transformers' BitsAndBytesConfig, 4 bits)."""

    quant_type: Literal["nf4", "fp4"] = Field(
        "nf4", description="4-bit data type of the frozen base weights (the QLoRA paper: nf4)."
    )
    double_quant: bool = Field(
        True, description="Quantize the quantization constants too (the QLoRA paper: on; ~0.4 bit/parameter)."
    )


class VllmSettings(_Model):
    """The vLLM backend (student.backend: vllm): the engine runs in a process of its own, started for one
    answering step and always ended with it (lion_core.student.engine)."""

    python: Path | None = Field(
        None,
        description="Python interpreter of an environment where vLLM is installed, e.g. "
        ".venv-vllm/bin/python (`make vllm-venv`; vLLM's pins cannot be installed beside Prefect's). "
        "null: this interpreter.",
    )
    lora: Literal["adapter", "merged"] = Field(
        "adapter",
        description="How a LoRA student is served: adapter (its base model with the adapter, vLLM's "
        "enable_lora) or merged (the merged weights saved next to the adapter: needs "
        "student.merge_adapter: true).",
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Share of the GPU's memory the engine may take for weights and KV cache (freed when "
        "answering ends).",
    )
    max_model_len: int | None = Field(
        None,
        ge=16,
        description="Longest prompt + answer in tokens the engine accepts; null: the checkpoint's maximum.",
    )
    chunk_size: int = Field(
        1024,
        ge=1,
        description="Prompts given to the engine at once (it batches within a chunk by itself): answers are "
        "saved and progress reported after each chunk, and Ctrl-C stops between chunks.",
    )
    stop_grace_s: float = Field(
        10.0,
        gt=0,
        description="Seconds the engine's processes get to exit after SIGTERM before they are killed.",
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Further keyword arguments of vllm.LLM (e.g. tensor_parallel_size, enforce_eager); "
        "they override the ones set from this section.",
    )


class StudentConfig(_Model):
    """The open student model: where it is, how it is fine-tuned, how it answers."""

    model_path: Path = Field(
        Path("student"), description="Local Hugging Face checkpoint (from_pretrained path)."
    )
    finetune: Literal["lora", "qlora", "full"] = Field(
        "full",
        description="Full fine-tuning (the original train.py), LoRA adapters, or QLoRA (LoRA adapters on a "
        "base model loaded in 4 bits with bitsandbytes: a CUDA GPU only; refused elsewhere before anything "
        "runs).",
    )
    lora: LoraSettings = Field(
        default_factory=LoraSettings, description="LoRA settings (finetune: lora or qlora)."
    )
    qlora: QLoraSettings = Field(
        default_factory=QLoraSettings, description="4-bit quantization of the base model (finetune: qlora)."
    )
    merge_adapter: bool = Field(False, description="Also save merged weights next to the LoRA adapter.")
    train_data: Literal["train_pool", "cumulative"] = Field(
        "train_pool",
        description="Data of each round: the new Train Pool only (the paper) or everything taught so far.",
    )
    prompt_template: Literal["lion", "alpaca", "compact", "chat"] = Field(
        "lion",
        description="Student prompt format, the same in training and answering: lion ('### Instruction/### "
        "Response', no preamble: the original train.py and lion_inference.py), alpaca (with Alpaca's "
        "preamble), compact (tiny models), or chat: the checkpoint's own chat template "
        "(tokenizer.apply_chat_template; the instruction, and its input, as the user's turn). A checkpoint "
        "without a chat template is refused before anything runs.",
    )
    learning_rate: float = Field(
        2e-5,
        gt=0,
        description="Peak learning rate (the original full fine-tune: 2e-5). When not given and finetune "
        "is lora, it is lora.learning_rate instead.",
    )
    epochs: float = Field(
        3.0, gt=0, description="Epochs over the round's data (ignored when max_steps is set)."
    )
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps per round; overrides epochs.")
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule."
    )
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of steps used for warm-up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping norm; None: no clipping.")
    max_length: int = Field(1024, ge=8, description="Maximum tokens of prompt + response in training.")
    train_batch_size: int = Field(4, ge=1, description="Examples per device per micro-batch.")
    gradient_accumulation_steps: int = Field(
        32, ge=1, description="Micro-batches per optimizer step (effective batch = this × batch × devices)."
    )
    infer_batch_size: int = Field(32, ge=1, description="Prompts per batch in student generation.")
    max_new_tokens: int = Field(
        1024, ge=1, description="Maximum new tokens of a student answer (the original: 1024)."
    )
    do_sample: bool = Field(
        True, description="Sample student answers (the original lion_inference.py); false: greedy."
    )
    temperature: float = Field(
        0.7, gt=0, description="Sampling temperature when do_sample is true (the original: 0.7)."
    )
    top_p: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Nucleus sampling mass when do_sample is true (the original: 1.0, a fresh "
        "GenerationConfig's). Both backends send it explicitly: the checkpoint's generation_config is "
        "never consulted.",
    )
    top_k: int | None = Field(
        50,
        ge=1,
        description="Sample among the k most likely tokens when do_sample is true (the original: 50, a fresh "
        "GenerationConfig's); null: no top-k. Both backends send it explicitly.",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="Precision of training (mixed precision: the forward and backward passes run in it), of "
        "answering, and of the saved checkpoint's weights. A LoRA/QLoRA base model is loaded in it; a full "
        "fine-tune keeps its trainable weights in master_weights. Overrides the mixed_precision of an "
        "accelerate_config. fp16 needs a CUDA GPU.",
    )
    master_weights: Literal["fp32", "precision"] = Field(
        "fp32",
        description="What a full fine-tune keeps its weights and optimizer states in: fp32 (mixed precision "
        "with fp32 master weights, as the original: ~16 bytes per parameter before activations) or "
        "precision (pure bf16: ~8 bytes per parameter, an 8B student fits one 80 GB GPU, but updates much "
        "smaller than a weight are rounded away). Not allowed with precision fp16.",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass instead of keeping them (transformers' "
        "activation checkpointing): much less memory for long sequences, ~20-30% slower steps. Not part "
        "of the fine-tune's cache key (it changes how, not what, the student learns).",
    )
    attention: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto",
        description="Attention implementation of the student in training: auto (flash_attention_2 when the "
        "flash-attn package is installed, a CUDA GPU is present and precision is bf16 or fp16; else sdpa), "
        "sdpa (PyTorch's scaled_dot_product_attention), eager, or flash_attention_2 (refused where "
        "flash-attn cannot run). Not part of the fine-tune's cache key.",
    )
    backend: Literal["transformers", "vllm"] = Field(
        "transformers",
        description="Student inference engine: transformers (batched generate, in this process) or vllm "
        "(an engine process in the environment of vllm.python, ended when answering ends; see "
        "docs/scaling.md).",
    )
    vllm: VllmSettings = Field(default_factory=VllmSettings, description="The vLLM engine (backend: vllm).")
    num_processes: int = Field(
        1,
        ge=1,
        description="Training processes (one per GPU); > 1 runs the fine-tune under `accelerate launch` "
        "(effective batch = train_batch_size × gradient_accumulation_steps × num_processes).",
    )
    accelerate_config: Path | None = Field(
        None,
        description="accelerate config file of the fine-tune, which then runs under `accelerate launch` "
        "(with num_processes processes, one included): deployments/accelerate/fsdp.yaml (FSDP), zero3.yaml "
        "(DeepSpeed ZeRO-3) or multi_gpu.yaml (DDP); none: DDP when num_processes > 1. FSDP and DeepSpeed "
        "need CUDA GPUs and are refused on a machine without one, before anything runs.",
    )
    report_to: Annotated[list[TrackerName], BeforeValidator(_one_or_many)] = Field(
        default_factory=lambda: ["auto"],
        description="Experiment trackers that receive every optimizer step's loss, learning rate and "
        "gradient norm, and the training settings, through transformers' report_to integrations (project/"
        "experiment 'lion' unless WANDB_PROJECT or MLFLOW_EXPERIMENT_NAME say otherwise, run 'RUN/iter_K'; "
        "otherwise configured by their usual environment variables, e.g. MLFLOW_TRACKING_URI): auto "
        "(TensorBoard when installed, logs in RUN/iter_K/tensorboard; else none), none, all (every one "
        "installed), or names such as tensorboard, mlflow, wandb. A named tracker that is not installed "
        "fails the fine-tune before it trains.",
    )
    objective: Literal["sft", "sft+dpo"] = Field(
        "sft",
        description="sft: imitation only (the paper). sft+dpo: after each iteration's imitation fine-tune "
        "and discrimination, a preference stage (DPO, TRL's DPOTrainer) on the iteration's preference "
        "pairs, the fine-tuned checkpoint as reference; the next iteration continues from its result.",
    )
    preference: PreferenceSettings = Field(
        default_factory=PreferenceSettings, description="The preference stage (objective: sft+dpo)."
    )
    log_every_steps: int = Field(
        10,
        ge=1,
        description="Every this many optimizer steps (and at the first and last), a fine-tune log line "
        "(step, loss, learning rate, examples/s) and a progress-artifact update. The per-step log "
        "RUN/iter_K/student.progress.jsonl and the trackers of report_to have every step.",
    )

    @model_validator(mode="before")
    @classmethod
    def _learning_rate_of_the_mode(cls, data: Any) -> Any:
        """A LoRA (or QLoRA) fine-tune without an explicit learning_rate trains at lora.learning_rate."""
        adapters = isinstance(data, dict) and data.get("finetune") in ("lora", "qlora")
        if adapters and "learning_rate" not in data:
            lora = data.get("lora")
            if isinstance(lora, LoraSettings):
                rate = lora.learning_rate
            elif isinstance(lora, dict) and "learning_rate" in lora:
                rate = lora["learning_rate"]
            else:
                rate = LoraSettings.model_fields["learning_rate"].default
            data = {**data, "learning_rate": rate}
        return data

    @model_validator(mode="after")
    def _master_weights_of_fp16(self) -> StudentConfig:
        """Pure fp16 training has no loss scaling for its weights: refused (bf16 is the 16-bit option)."""
        if self.master_weights == "precision" and self.precision == "fp16":
            raise ValueError("master_weights: precision needs precision bf16 (pure fp16 training diverges)")
        return self

    @model_validator(mode="after")
    def _vllm_merged_needs_the_merge(self) -> StudentConfig:
        if (
            self.backend == "vllm"
            and self.finetune == "lora"
            and self.vllm.lora == "merged"
            and not self.merge_adapter
        ):
            raise ValueError(
                "student.vllm.lora is 'merged' but student.merge_adapter is false: set merge_adapter: true "
                "or vllm.lora: adapter"
            )
        return self


class PoolsConfig(_Model):
    """Where the initial Train Pool (= initial Cache Pool) comes from."""

    seed_path: DataPath = Field(
        Path("seed.jsonl"),
        description="Instruction file: Alpaca JSON, JSONL, FastChat; package:NAME for a packaged set.",
    )
    format: Literal["auto", "alpaca", "jsonl", "self_instruct", "fastchat"] = Field(
        "auto", description="File format; auto decides from the extension and the first record."
    )
    max_seed: int | None = Field(None, ge=1, description="Use only the first N seed instructions.")
    max_text_chars: int = Field(
        20_000,
        ge=1,
        description="Refuse a seed instruction whose instruction + input is longer than this (characters), "
        "before anything is paid: every text is sent to the teacher and pads a student batch to its length.",
    )


class LoopConfig(_Model):
    """The adversarial loop: iterations, the hard/easy split, generation and novelty."""

    iterations: int = Field(3, ge=1, description="Adversarial iterations (the paper: 3).")
    final_imitation: bool = Field(
        False,
        description="After the last iteration, one more round of imitation alone: the teacher answers the "
        "last generated set and the student trains on it (no discrimination, no generation; its own row "
        "in the report). The student then sees every generated instruction — the paper's 70K with 3 "
        "iterations of 6K on Alpaca's 52K (without it: 64K). Off: as the original scripts' loop.",
    )
    new_per_iteration: int = Field(6000, ge=1, description="N: new instructions generated per iteration.")
    hard_easy_ratio: float = Field(1.0, ge=0, description="r: hard-derived to easy-derived new instructions.")
    tau: float = Field(1.0, description="An instruction is hard when teacher score − student score ≥ tau.")
    rouge_threshold: float = Field(
        0.7,
        gt=0,
        le=1,
        description="A new instruction is kept only if its ROUGE-L F1 to every other is below.",
    )
    equilibrium_hard_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Stop early when the hard share of the Cache Pool falls below (0: never).",
    )
    send_inputs: bool = Field(
        True,
        description="Show an instruction's input to the teacher, the student (answering and training) and "
        "the referee. false: the instruction alone everywhere, as the original scripts' final versions.",
    )
    min_words: int = Field(
        3,
        ge=0,
        description="Generated instructions of this many words or fewer are dropped (the original: 3).",
    )
    generator_blacklist: list[str] = Field(
        default_factory=lambda: ["instruction"],
        description="A generated reply containing any of these strings (case-insensitive) is dropped "
        "(the original: 'instruction').",
    )
    generator_max_tokens_per_word: float | None = Field(
        4.0,
        gt=0,
        description="Each generator request may produce this many tokens per word of its parent "
        "instruction; replies cut there are dropped (the original: 4). null: generator.max_tokens.",
    )
    parent_sampling: Literal["uniform", "cover"] = Field(
        "uniform",
        description="How parents are drawn for generation requests: uniform (independent draws, as the "
        "original's random.sample per request) or cover (every parent once before any is used again).",
    )
    referee_retries: int = Field(
        2, ge=0, description="Repair requests to the referee after a reply without both score lines."
    )
    generation_rounds: int | None = Field(
        None,
        ge=1,
        description="At most this many generation rounds per iteration; null: until N are kept "
        "(the original), bounded by generation_patience.",
    )
    generation_patience: int | None = Field(
        3,
        ge=1,
        description="Stop generating after this many consecutive rounds that keep nothing new "
        "(a safety bound; null: never, as the original, which loops until N are kept).",
    )
    batch_size: int = Field(64, ge=1, description="Instructions per fan-out batch task (retried as a unit).")
    batches_in_flight: int | None = Field(
        None,
        ge=1,
        description="Batch tasks a fan-out stage runs at once (the rest wait, unstarted, so the first "
        "request leaves at once and memory stays flat as the pool grows); null: enough to keep the "
        "role busy, 2 × ⌈concurrency / batch_size⌉, or one provider batch's worth, "
        "⌈batch.max_requests / batch_size⌉, for a role in mode: batch.",
    )
    task_retries: int = Field(
        4, ge=0, description="Prefect retries of a failed batch task (only that batch)."
    )
    task_retry_delay_s: float = Field(
        2.0, ge=0, description="First delay before a batch retry; doubles with each retry (with jitter)."
    )
    seed: int = Field(42, description="Seed of sampling, training and generation.")
    selection: Literal["paper", "random", "uniform", "fresh", "learnable", "progress"] = Field(
        "paper",
        description="Which Cache Pool items count as hard (lion_core.method.selection): 'paper' (gap ≥ tau, "
        "the default); 'random' (the referee's hard count, items drawn at random: a control); "
        "'uniform' (the referee ignored: parents uniform over the pool, the imitation baseline); "
        "'fresh' (the gap on a fresh sibling of each item, which the student was not trained on: one "
        "generator, teacher and two referee requests per probed item); 'learnable' (fresh, and items "
        "that stay hard without progress for learnable_patience iterations are quarantined); 'progress' "
        "(no referee: hard iff the student's own loss on the teacher's answer fell most in this "
        "iteration's fine-tune; the rest easy).",
    )
    probe_sample: int | None = Field(
        None,
        ge=1,
        description="fresh/learnable: probe at most this many Cache Pool items per iteration, a seeded "
        "sample stratified by origin (seed, hard, easy); null: probe every item.",
    )
    learnable_patience: int = Field(
        2,
        ge=1,
        description="learnable: a lineage whose fresh siblings were hard in this many consecutive "
        "iterations without its mean sibling gap shrinking is quarantined (re-probed, not multiplied).",
    )
    learnable_min_progress: float = Field(
        0.5,
        ge=0,
        description="learnable: how much a lineage's mean sibling gap (referee points) must shrink over "
        "learnable_patience iterations to count as progress.",
    )


class BudgetConfig(_Model):
    """Spending limits; the run stops cleanly before it would exceed them."""

    max_usd: float | None = Field(None, gt=0, description="Stop before spending more USD than this.")
    max_tokens: int | None = Field(None, gt=0, description="Stop before using more tokens than this.")
    chars_per_token: float = Field(
        2.0,
        gt=0,
        description="Conservative characters per prompt token used to reserve budget before a call, and the "
        "rate limiter's first estimate where tiktoken cannot count (it then learns from replies' usage).",
    )


class WorldConfig(_Model):
    """The offline world: task families the demo, tests and benchmarks distill on."""

    families: list[str] | None = Field(None, description="Task families to use; None: all registered.")
    seed_size: int = Field(200, ge=1, description="Initial Train Pool size drawn from the world.")
    heldout_size: int = Field(
        180, ge=0, description="Held-out items for exact-match evaluation per iteration."
    )
    levels: list[int] = Field(
        default_factory=lambda: [1, 2], description="Difficulty levels of the seed pool."
    )
    referee_bias: float = Field(
        0.0, description="Score the world referee adds to Assistant 1 (position bias)."
    )
    referee_noise: float = Field(0.0, ge=0, description="Std of the world referee's score noise.")
    near_duplicate_share: float = Field(0.1, ge=0, le=1, description="Share of generator near-duplicates.")
    malformed_share: float = Field(0.05, ge=0, le=1, description="Share of malformed generator replies.")
    latency_ms: float = Field(0.0, ge=0, description="Server latency per request.")
    seed: int = Field(0, description="Seed of the world's sampling and faults.")


class EvalConfig(_Model):
    """Evaluation: a judge model compares a candidate's answers with a reference's (the paper's protocol)."""

    judge: EndpointConfig | None = Field(
        None, description="Judge endpoint; None: evaluation by judge is off."
    )
    questions: DataPath | None = Field(
        None,
        description="Question file (FastChat or self-instruct format); package:vicuna_bench_questions.jsonl "
        "is the paper's Vicuna-80.",
    )
    heldout_path: Path | None = Field(
        None,
        description="World held-out set (JSONL as `lion world sample` prints): each student is scored on it.",
    )
    protocol: Literal["lion", "vicuna"] = Field(
        "lion",
        description="Judge protocol of `lion eval` (its --protocol flag overrides): lion (the referee's "
        "prompt; the teacher's answers, Lion's teacher prompt, are the reference) or vicuna (the paper's: "
        "FastChat's GPT-4 review prompts per question category at T 0.2, and reference answers made as "
        "FastChat's ChatGPT baseline: the bare question, system prompt 'You are a helpful assistant.', "
        "T 1.0, 1024 tokens, from the teacher's endpoint). Both judge both orders.",
    )


DEFAULT_EVAL_SETS = ("vicuna_bench_questions.jsonl", "mt_bench_questions.jsonl")  # shipped in lion_core/data


class DecontaminationConfig(_Model):
    """Generated instructions checked against evaluation sets (lm-evaluation-harness's 13-gram rule)."""

    enabled: bool = Field(
        False,
        description="Reject generated instructions that share n-grams with eval_sets (off: as the original).",
    )
    eval_sets: list[DataPath] = Field(
        default_factory=lambda: [packaged_data.path(n) for n in DEFAULT_EVAL_SETS],
        description="Evaluation question files (FastChat, self-instruct, Alpaca, JSONL); package:NAME for a "
        "packaged set. Default: the shipped Vicuna-80 and MT-Bench questions.",
    )
    ngram: int = Field(13, ge=1, description="n of the n-grams compared (13: the lm-evaluation-harness's).")
    max_overlap: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Largest share of an instruction's n-grams that may occur in the eval sets (0: any one "
        "shared n-gram rejects it, the lm-evaluation-harness convention).",
    )


class LionConfig(_Model):
    """Everything a Lion run needs. The top flow takes this model as its only parameter."""

    run_dir: Path = Field(
        Path("runs/lion"), description="Run directory: pools, answers, checkpoints, ledger."
    )
    cache_dir: Path | None = Field(
        None, description="Shared response cache directory (paid once across runs); None: inside run_dir."
    )
    teacher: TeacherEndpoint = Field(default_factory=TeacherEndpoint, description="The Teacher role.")
    referee: RefereeEndpoint = Field(default_factory=RefereeEndpoint, description="The Referee role.")
    generator: GeneratorEndpoint = Field(default_factory=GeneratorEndpoint, description="The Generator role.")
    student: StudentConfig = Field(default_factory=StudentConfig, description="The student model.")
    pools: PoolsConfig = Field(default_factory=PoolsConfig, description="Initial pools.")
    loop: LoopConfig = Field(default_factory=LoopConfig, description="The adversarial loop.")
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="Spending limits.")
    evaluation: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation settings.")
    decontamination: DecontaminationConfig = Field(
        default_factory=DecontaminationConfig,
        description="Generated instructions checked against the evaluation sets (n-gram overlap).",
    )
    world: WorldConfig | None = Field(None, description="Offline world settings (demo and tests).")

    @model_validator(mode="after")
    def _lora_targets(self) -> LionConfig:
        if self.student.finetune == "lora" and not self.student.lora.target_modules:
            raise ValueError("student.lora.target_modules must name at least one module for LoRA")
        return self

    def endpoints(self) -> dict[str, EndpointConfig]:
        """The API roles of the loop (and the judge when configured), by name."""
        roles = {"teacher": self.teacher, "referee": self.referee, "generator": self.generator}
        if self.evaluation.judge is not None:
            roles["judge"] = self.evaluation.judge
        return roles

    def check_credentials(self) -> None:
        """Raise MissingApiKeyError before any work if a non-local endpoint has no key."""
        for endpoint in self.endpoints().values():
            endpoint.api_key()


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of a pydantic error location in the YAML: the line of its deepest key found (a
    section's key, not the first line of its body), or of the sequence item."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(key)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def config_from_dict(
    data: dict[str, Any], source: str = "<config>", root: yaml.Node | None = None
) -> LionConfig:
    """Validate a mapping; the first error is raised as one line naming source, line and field."""
    try:
        return LionConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "<root>"
        line = _line_of(root, first["loc"])
        where = f"{source}:{line}" if line else source
        more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise ConfigError(f"{where}: field '{field}': {first['msg']}{more}") from None


def load_config(path: str | Path) -> LionConfig:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as err:  # a directory, an unreadable file
        raise ConfigError(f"{path}: cannot read the config: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping of sections (teacher, student, loop, ...)")
    return config_from_dict(data, str(path), root)


def dump_config(config: LionConfig, path: str | Path) -> None:
    """Write the config as YAML atomically. Keys are never part of the config, only env var names."""
    data = config.model_dump(mode="json")
    atomic_write_text(Path(path), yaml.safe_dump(data, sort_keys=False))
