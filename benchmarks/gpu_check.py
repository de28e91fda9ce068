"""Run as: make gpu-check     (or .venv/bin/python benchmarks/gpu_check.py [--tiny] [--only STEP ...])

The student's GPU paths in minutes, on one CUDA GPU and no network: a model of Qwen2.5-0.5B's
architecture (494M parameters: Qwen2Config with its sizes, random weights, a character tokenizer built
here — nothing is downloaded) goes through

  full     a full fine-tune in bf16 (gradient checkpointing where the student config has it)
  lora     a LoRA fine-tune (bf16 base, adapters on the attention projections)
  qlora    a QLoRA fine-tune (4-bit base; where the student config has finetune: qlora)
  vllm     sampled answers from the full fine-tune's checkpoint through the vLLM engine process
  lion-run one `lion run` iteration on the offline world with that student (in a process of its own)

each through the project's own API (`lion_core.student.launch.run_finetune(FinetuneJob(...))`,
`lion_core.student.generate.answer`, the `lion` command), printing and saving wall time, tokens/s and
peak GPU memory per step: the peak the process allocated (torch) and the device-wide peak in use
(sampled, so it covers the engine and `lion run` processes). About 8 minutes on one H100.

Without CUDA it stops at once with one line. `--tiny` rehearses every step on a tiny model of the same
architecture on whatever device there is (CPU: QLoRA is skipped; vLLM runs where it is installed),
for the tests and for checking the script before a GPU is at hand. A step that fails is recorded with its
error and the others go on; the exit status is 1 when any failed.

Writes benchmarks/results/gpu_check.json (--out elsewhere).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common import REPO, RESULTS, free_port, machine

from lion_core.student.generate import release_cuda_cache

STEPS = ("full", "lora", "qlora", "vllm", "lion-run")
GIB = 1024**3
MEMORY_POLL_S = 0.25  # how often the device-wide memory in use is sampled
LION_RUN_TIMEOUT_S = 600
VLLM_VENV_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


@dataclass(frozen=True)
class Scale:
    """The model and the work of one check."""

    hidden_size: int
    intermediate_size: int
    layers: int
    heads: int
    kv_heads: int
    vocab_size: int
    max_positions: int
    train_steps: int
    batch_size: int
    max_length: int
    prompts: int  # answered by vLLM
    max_new_tokens: int
    seed_size: int  # the lion-run iteration's seed pool
    new_per_iteration: int
    lion_run_steps: int


# Qwen2.5-0.5B's architecture (its config.json): 24 layers, width 896, 14 query and 2 key/value heads,
# MLP 4864, vocabulary 151,936, tied embeddings — 494M parameters. The work fits ~8 min on one H100.
GPU = Scale(896, 4864, 24, 14, 2, 151_936, 4096, 40, 8, 1024, 512, 256, 256, 64, 20)
# The same architecture, small enough to rehearse every step on 2 CPU cores in a few minutes (heads of
# 32 dimensions: vLLM's CPU attention supports no smaller head).
TINY = Scale(128, 256, 2, 4, 2, 512, 512, 3, 4, 96, 8, 8, 24, 8, 2)


def refusal(tiny: bool) -> str | None:
    """Why the check cannot run here (one line), or None."""
    import torch

    if tiny or torch.cuda.is_available():
        return None
    return (
        "gpu-check: no CUDA device here (torch.cuda.is_available() is False): run it on a machine with one "
        "NVIDIA GPU, or add --tiny for a CPU rehearsal"
    )


class DeviceMemory:
    """The device-wide peak of GPU memory in use while a step runs (every process on the GPU), sampled
    from cudaMemGetInfo; None without CUDA."""

    def __init__(self) -> None:
        import torch

        self.cuda = torch.cuda.is_available()
        self.peak = 0
        self._stop = threading.Event()

    def _used(self) -> int:
        import torch

        free, total = torch.cuda.mem_get_info()
        return total - free

    def _sample(self) -> None:
        while not self._stop.wait(MEMORY_POLL_S):
            self.peak = max(self.peak, self._used())

    def __enter__(self) -> DeviceMemory:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            self.peak = self._used()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._used())

    def figures(self) -> dict[str, float | None]:
        if not self.cuda:
            return {"peak_gpu_gib": None, "device_peak_gib": None}
        import torch

        return {
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / GIB, 2),
            "device_peak_gib": round(self.peak / GIB, 2),
        }


def build_student(out: Path, scale: Scale, dtype: str) -> dict[str, Any]:
    """A Qwen2 model of `scale` with random weights and the offline world's character tokenizer, saved
    with save_pretrained (the path every checkpoint takes)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from lion_core.student.checkpoint import DTYPES
    from lion_core.world.student import build_tokenizer

    tokenizer = build_tokenizer()
    config = Qwen2Config(
        vocab_size=scale.vocab_size,
        hidden_size=scale.hidden_size,
        intermediate_size=scale.intermediate_size,
        num_hidden_layers=scale.layers,
        num_attention_heads=scale.heads,
        num_key_value_heads=scale.kv_heads,
        max_position_embeddings=scale.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(DTYPES[dtype])
    model.generation_config = GenerationConfig(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1), "dtype": dtype}


def training_data(path: Path, scale: Scale) -> Path:
    """{prompt, response} pairs in the `lion` template: the packaged Vicuna and MT-Bench questions, each
    answered by its own text repeated to fill about max_length characters (one token per character)."""
    from lion_core import prompts
    from lion_core.data import path as data_path
    from lion_core.records import read_instructions, write_jsonl

    questions = [
        q
        for name in ("vicuna_bench_questions.jsonl", "mt_bench_questions.jsonl")
        for q in read_instructions(data_path(name))
    ]
    rows = []
    for q in questions:
        prompt = prompts.student_prompt("lion", q.instruction)
        room = max(1, scale.max_length - len(prompt))
        rows.append(
            {"prompt": prompt, "response": (q.instruction + " ") * (room // (len(q.instruction) + 1) + 1)}
        )
    write_jsonl(path, rows)
    return path


def student_settings(base: Path, scale: Scale, precision: str, **overrides: Any):
    """The StudentConfig of a check fine-tune: `train_steps` steps of `batch_size` rows, logged each
    step, no tracker; gradient checkpointing on where this version of the config has it."""
    from lion_core.config import StudentConfig

    settings: dict[str, Any] = dict(
        model_path=base,
        prompt_template="lion",
        precision=precision,
        max_steps=scale.train_steps,
        train_batch_size=scale.batch_size,
        gradient_accumulation_steps=1,
        max_length=scale.max_length,
        log_every_steps=1,
        report_to="none",
        lora={"r": 16, "alpha": 32, "dropout": 0.0},
    )
    if "gradient_checkpointing" in StudentConfig.model_fields:
        settings["gradient_checkpointing"] = True
    return StudentConfig(**{**settings, **overrides})


def finetune_step(base: Path, data: Path, out: Path, scale: Scale, precision: str, finetune: str) -> dict:
    """One fine-tune through run_finetune(FinetuneJob(...)); its tokens/s and step time."""
    from pydantic import ValidationError

    from lion_core.student.checkpoint import content_key
    from lion_core.student.launch import FinetuneJob, run_finetune

    try:
        student = student_settings(base, scale, precision, finetune=finetune)
    except ValidationError as err:
        return {
            "status": "skipped",
            "reason": f"this version's student config has no finetune: {finetune} ({err.errors()[0]['msg']})",
        }
    key = content_key(str(out), student.model_dump_json())
    result = run_finetune(FinetuneJob(base, data, out, student, 0, key))
    seconds = max(result.seconds, 1e-9)
    return {
        "status": "ok",
        "checkpoint": str(out),
        "optimizer_steps": result.steps,
        "tokens": result.tokens,
        "tokens_per_s": round(result.tokens / seconds, 1),
        "s_per_step": round(seconds / max(result.steps, 1), 3),
        "gradient_checkpointing": getattr(student, "gradient_checkpointing", None),
    }


def vllm_step(checkpoint: Path, scale: Scale, precision: str, python: Path | None) -> dict:
    """Sampled answers to `prompts` questions from the vLLM engine process (the student's backend, as
    `lion run` calls it); generated tokens/s as the engine counts them, engine start-up included, and the
    GPU memory free before and after (the engine must give it all back)."""
    import torch

    from lion_core import prompts
    from lion_core.config import StudentConfig
    from lion_core.data import path as data_path
    from lion_core.records import read_instructions
    from lion_core.student.checkpoint import load_tokenizer
    from lion_core.student.engine import check_vllm_python, generate_with_vllm
    from lion_core.student.generate import encode

    student = StudentConfig(
        backend="vllm",
        precision=precision,
        max_new_tokens=scale.max_new_tokens,
        vllm={"python": python, "max_model_len": scale.max_positions},
    )
    problem = check_vllm_python(student)
    if problem is not None:
        return {"status": "skipped", "reason": problem}
    questions = read_instructions(data_path("vicuna_bench_questions.jsonl"))
    texts = [
        prompts.student_prompt("lion", questions[i % len(questions)].instruction)
        for i in range(scale.prompts)
    ]
    ids = encode(load_tokenizer(checkpoint), texts, student.prompt_template)
    release_cuda_cache()
    before = torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None
    started = time.perf_counter()
    keys = [f"q{i}" for i in range(len(texts))]
    replies = generate_with_vllm(checkpoint, ids, student, seed=0, keys=keys)
    seconds = time.perf_counter() - started
    after = torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None
    generated = sum(reply.tokens for reply in replies)
    return {
        "status": "ok",
        "answers": len(replies),
        "generated_tokens": generated,
        "tokens_per_s": round(generated / seconds, 1),
        "gpu_free_before_gib": None if before is None else round(before / GIB, 2),
        "gpu_free_after_gib": None if after is None else round(after / GIB, 2),
    }


def lion_run_step(base: Path, folder: Path, scale: Scale, precision: str, python: Path | None) -> dict:
    """One iteration of `lion run` (its own process, the embedded Prefect server) on the offline world
    (served from this process), with the check's student: vLLM answers where installed."""
    import subprocess

    from flows.demo import demo_config, prepare_world_files, world_server
    from lion_core.config import LionConfig, StudentConfig, dump_config
    from lion_core.student.engine import check_vllm_python

    port = free_port()
    config = demo_config(folder / "run", 1, 0, port)
    data = config.model_dump()
    vllm = {"python": python, "max_model_len": scale.max_positions}
    backend = (
        "vllm" if check_vllm_python(StudentConfig(backend="vllm", vllm=vllm)) is None else "transformers"
    )
    data["student"] = student_settings(
        base,
        scale,
        precision,
        finetune="full",
        backend=backend,
        vllm=vllm,
        max_steps=scale.lion_run_steps,
        max_new_tokens=24,
        do_sample=False,
    ).model_dump()
    data["world"].update(seed_size=scale.seed_size, heldout_size=scale.seed_size)
    data["loop"].update(new_per_iteration=scale.new_per_iteration)
    config = LionConfig.model_validate(data)
    prepare_world_files(config)
    path = folder / "config.yaml"
    dump_config(config, path)
    release_cuda_cache()
    with world_server(config).start(port=port):
        done = subprocess.run(
            [sys.executable, "-m", "lion_cli", "run", str(path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=LION_RUN_TIMEOUT_S,
            check=False,
        )
    if done.returncode != 0:
        tail = " ".join((done.stdout + done.stderr).split())[-800:]
        return {"status": "failed", "error": f"lion run exited {done.returncode}: {tail}"}
    summary = json.loads((folder / "run" / "iter_1" / "summary.json").read_text())
    return {
        "status": "ok",
        "backend": backend,
        "iteration_seconds": summary.get("seconds"),
        "stage_seconds": summary.get("stage_seconds"),
        "cache_pool": summary.get("cache_pool"),
        "generated": summary.get("generated"),
    }


def run_step(name: str, work: Callable[[], dict]) -> dict:
    """One step timed and measured; an exception is the step's error, never the check's end."""
    started = time.perf_counter()
    with DeviceMemory() as memory:
        try:
            row = work()
        except Exception as err:  # every step reports; the check goes on
            row = {
                "status": "failed",
                "error": f"{type(err).__name__}: {err}",
                "trace": traceback.format_exc()[-2000:],
            }
    row = {"step": name, **row, "seconds": round(time.perf_counter() - started, 1), **memory.figures()}
    release_cuda_cache()
    print(line(row), flush=True)
    return row


def line(row: dict) -> str:
    """What the check prints for a step."""
    if row["status"] != "ok":
        return f"{row['step']:<9} {row['status']}: {row.get('reason') or row.get('error')}"
    speed = f"{row['tokens_per_s']:>8,} tok/s" if "tokens_per_s" in row else " " * 14
    memory = (
        ""
        if row["peak_gpu_gib"] is None
        else f"  peak {row['peak_gpu_gib']} GiB (device {row['device_peak_gib']})"
    )
    step = f"  {row['s_per_step']} s/step" if "s_per_step" in row else ""
    return f"{row['step']:<9} {row['seconds']:>7.1f} s {speed}{step}{memory}"


def device() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, memory_gib=round(props.total_memory / GIB, 1))
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny model of the same architecture, any device"
    )
    parser.add_argument("--only", nargs="+", choices=STEPS, default=list(STEPS), help="run these steps only")
    parser.add_argument(
        "--vllm-python", type=Path, default=None, help="python with vLLM (default .venv-vllm's)"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="where checkpoints go (default: a temp dir)"
    )
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    reason = refusal(args.tiny)
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2
    return check(args)


def check(args: argparse.Namespace) -> int:
    import tempfile

    import torch

    scale = TINY if args.tiny else GPU
    precision = "bf16" if torch.cuda.is_available() else "fp32"
    python = args.vllm_python or (VLLM_VENV_PYTHON if VLLM_VENV_PYTHON.exists() else None)
    out = args.out or RESULTS / ("gpu_check_tiny.json" if args.tiny else "gpu_check.json")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lion-gpu-check-", dir=args.work_dir) as tmp:
        work = Path(tmp)
        base, data = work / "base", training_data(work / "sft.jsonl", scale)
        rows = [run_step("build", lambda: {"status": "ok", **build_student(base, scale, precision)})]
        trained = work / "full"
        steps: dict[str, Callable[[], dict]] = {
            "full": lambda: finetune_step(base, data, trained, scale, precision, "full"),
            "lora": lambda: finetune_step(base, data, work / "lora", scale, precision, "lora"),
            "qlora": lambda: qlora_step(base, data, work / "qlora", scale, precision),
            "vllm": lambda: vllm_step(trained if trained.exists() else base, scale, precision, python),
            "lion-run": lambda: lion_run_step(base, work / "lion-run", scale, precision, python),
        }
        rows += [run_step(name, steps[name]) for name in STEPS if name in args.only]
    total = round(time.perf_counter() - started, 1)
    payload = {
        "command": " ".join(["benchmarks/gpu_check.py", *sys.argv[1:]]),
        "machine": machine(),
        "device": device(),
        "scale": asdict(scale),
        "precision": precision,
        "total_seconds": total,
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    failed = [r["step"] for r in rows if r["status"] == "failed"]
    outcome = f"failed: {', '.join(failed)}" if failed else "no step failed"
    print(f"gpu-check: {total:.0f} s in all; {outcome}; {out}")
    return 1 if failed else 0


def qlora_step(base: Path, data: Path, out: Path, scale: Scale, precision: str) -> dict:
    """QLoRA needs a CUDA GPU and bitsandbytes: skipped (with the reason) where either is missing."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return {"status": "skipped", "reason": "QLoRA (bitsandbytes 4-bit) needs a CUDA GPU"}
    if importlib.util.find_spec("bitsandbytes") is None:
        return {"status": "skipped", "reason": "bitsandbytes is not installed"}
    return finetune_step(base, data, out, scale, precision, "qlora")


if __name__ == "__main__":
    sys.exit(main())
