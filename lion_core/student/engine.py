"""The student's vLLM backend: an engine in a process of its own, always ended when answering ends.

Why a process of our own (`vllm_worker.py`, run by `student.vllm.python`) rather than a local
`vllm serve`: the engine must be gone when answering ends (on a GPU it holds ~90% of the memory the next
fine-tune needs), and vLLM's pins must never meet Prefect's. Both designs meet those two; the engine
process also needs no port (several runs of one user at once never collide), no readiness polling or
HTTP timeouts, and it answers the transformers backend's exact token ids with vLLM's own SamplingParams
(a seed per prompt, top-k) — nothing is translated through an HTTP API. It starts in a session of its
own; when it exits, fails, or the caller stops (Ctrl-C, an exception), the whole process group — vLLM's
engine-core children included — is sent SIGTERM, then SIGKILL after `vllm.stop_grace_s`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lion_core.config import StudentConfig
from lion_core.interrupt import check as check_stop
from lion_core.student.checkpoint import base_of, is_adapter

WORKER = Path(__file__).with_name("vllm_worker.py")
VLLM_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# vLLM accepts these LoRA ranks only (vllm.config.lora.MaxLoRARanks); the engine gets the smallest ≥ r.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
NO_TOP_K = 0  # vLLM's "top-k off"
SEED_BITS = 31  # per-prompt seeds fit a signed 32-bit int (every engine accepts that)
POLL_S = 0.5  # how often the answers file of the engine process is read
STOP_POLL_S = 0.1  # how often a stopping engine's processes are counted
STDERR_TAIL_CHARS = 2000  # of the engine's output, quoted when it fails
ERROR_LINE = re.compile(r"^.*\b\w*(?:Error|Exception): .*$", re.MULTILINE)


class EngineError(RuntimeError):
    """The vLLM engine process failed (not installed, crashed, or wrote fewer answers than asked)."""


def item_seed(seed: int, key: str) -> int:
    """The sampling seed of one prompt: derived from the run seed and the item (its id), so every item
    has its own stream, the same whatever the order or the company it is answered in."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (1 << SEED_BITS)


def decoding(config: StudentConfig) -> dict[str, Any]:
    """vLLM SamplingParams of the config: the transformers backend's settings, all explicit."""
    if not config.do_sample:
        return {"temperature": 0.0, "max_tokens": config.max_new_tokens}
    return {
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k if config.top_k is not None else NO_TOP_K,
        "max_tokens": config.max_new_tokens,
    }


def lora_rank(r: int) -> int:
    """The engine's max_lora_rank for an adapter of rank r."""
    fitting = [rank for rank in VLLM_LORA_RANKS if rank >= r]
    if not fitting:
        raise EngineError(f"student.lora.r {r} exceeds vLLM's largest LoRA rank {VLLM_LORA_RANKS[-1]}")
    return fitting[0]


def served_model(checkpoint: Path, config: StudentConfig) -> tuple[Path, dict[str, str] | None]:
    """The weights the engine loads and the adapter it applies (None: full or merged weights)."""
    path = Path(checkpoint)
    if not is_adapter(path):
        return path, None
    if config.vllm.lora == "adapter":
        return base_of(path), {"path": str(path)}
    merged = path / "merged"
    if not (merged / "config.json").exists():
        raise EngineError(
            f"student.vllm.lora is 'merged' but {path} has no merged weights (student.merge_adapter: true "
            "saves them)"
        )
    return merged, None


def engine_arguments(checkpoint: Path, config: StudentConfig, seed: int) -> tuple[dict[str, Any], Any]:
    """vllm.LLM's keyword arguments and the adapter, from the config. The checkpoint's
    generation_config is not used (`generation_config: vllm`): decoding is the config's alone."""
    model, adapter = served_model(checkpoint, config)
    settings = config.vllm
    engine: dict[str, Any] = {
        "model": str(model),
        "tokenizer": str(checkpoint),
        "dtype": VLLM_DTYPES[config.precision],
        "seed": seed,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "generation_config": "vllm",
    }
    if settings.max_model_len is not None:
        engine["max_model_len"] = settings.max_model_len
    if adapter is not None:
        engine.update(enable_lora=True, max_loras=1, max_lora_rank=lora_rank(config.lora.r))
    return {**engine, **settings.engine_args}, adapter


def engine_python(config: StudentConfig) -> str:
    """The interpreter that runs the engine: student.vllm.python, else this one."""
    return str(config.vllm.python) if config.vllm.python is not None else sys.executable


def check_vllm_python(config: StudentConfig) -> str | None:
    """Why the vLLM backend cannot run (one line naming the field), or None. Cheap: it finds vLLM's
    package without importing it."""
    python = config.vllm.python
    if python is not None and not (Path(python).is_file() and os.access(python, os.X_OK)):
        return f"student.vllm.python: {python} is not an executable file"
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    found = subprocess.run([engine_python(config), "-I", "-c", probe], capture_output=True, check=False)
    if found.returncode != 0:
        where = f"the environment of {python}" if python else "this environment"
        return (
            f"student.backend is 'vllm' but vLLM is not installed in {where}: make vllm-venv and set "
            "student.vllm.python: .venv-vllm/bin/python (docs/scaling.md)"
        )
    return None


def stop_group(process: subprocess.Popen, grace_s: float) -> None:
    """End the engine: SIGTERM to its whole process group, SIGKILL to whatever is left after `grace_s`;
    the worker is reaped last. The group is signalled while its leader is unreaped (a zombie at worst),
    so the group's id cannot have been reused by then."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if live_members(process.pid) == 0:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and live_members(process.pid) != 0:
            time.sleep(STOP_POLL_S)
    process.wait()


def live_members(pgid: int) -> int | None:
    """Running (not zombie) processes of group `pgid`, from Linux's /proc; None where there is no /proc
    (the group is then signalled whatever it holds)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    count = 0
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # a process that ended while we looked
        if int(fields[2]) == pgid and fields[0] != "Z":
            count += 1
    return count


def leader_running(process: subprocess.Popen) -> bool:
    """Whether the worker is still running, without reaping it where the platform allows (os.waitid
    with WNOWAIT; elsewhere Popen.poll)."""
    if not hasattr(os, "waitid"):
        return process.poll() is None
    return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None


@dataclass(frozen=True)
class Reply:
    """One answer of the engine: its text and how many tokens it generated."""

    text: str
    tokens: int


def read_answers(path: Path) -> dict[int, Reply]:
    """The answers the engine has written so far, by prompt index (a line still being written waits)."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]
    rows = (json.loads(line) for line in complete.splitlines() if line.strip())
    return {row["index"]: Reply(row["text"], row["tokens"]) for row in rows}


def failure(file: IO[bytes]) -> str:
    """What the engine's output says went wrong: its first error line (vLLM's engine-core processes log
    the root cause long before the worker's last words, "EngineDeadError: … See stack trace (above)"),
    then the output's tail."""
    file.seek(0)
    text = file.read().decode("utf-8", "replace")
    errors = [m.group(0) for m in ERROR_LINE.finditer(text) if "EngineDeadError" not in m.group(0)]
    tail = " ".join(text[-STDERR_TAIL_CHARS:].split())
    return f"{errors[0].strip()} … {tail}" if errors else tail


def follow(
    process: subprocess.Popen, out: Path, total: int, on_batch: Callable[[int], None] | None
) -> dict[int, Reply]:
    """Wait for the engine process, reporting each chunk of answers; its answers when it exits."""
    done = 0
    while True:
        check_stop("student answers (vLLM)")  # Ctrl-C: the caller's finally stops the engine
        running = leader_running(process)
        answers = read_answers(out)
        if len(answers) > done:
            done = len(answers)
            if on_batch is not None:
                on_batch(done)
        if not running:
            return answers
        time.sleep(POLL_S)


def run_engine(request: dict[str, Any], config: StudentConfig, on_batch) -> list[Reply]:
    """Run the worker on `request` in a session of its own; its answers in prompt order. The engine's
    process group is always ended before this returns or raises."""
    total = len(request["prompt_ids"])
    with tempfile.TemporaryDirectory(prefix="lion-vllm-") as folder, tempfile.TemporaryFile() as stderr:
        request_file, out = Path(folder) / "request.json", Path(folder) / "answers.jsonl"
        request_file.write_text(json.dumps({**request, "out": str(out)}), encoding="utf-8")
        command = [engine_python(config), "-I", str(WORKER), str(request_file)]
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True
        )
        try:
            answers = follow(process, out, total, on_batch)
        finally:
            stop_group(process, config.vllm.stop_grace_s)
        if process.returncode != 0 or len(answers) != total:
            raise EngineError(
                f"the vLLM engine process failed (exit {process.returncode}, {len(answers)} of {total} "
                f"answers): {failure(stderr)}"
            )
    return [answers[i] for i in range(total)]


def generate_with_vllm(
    checkpoint: Path,
    prompt_ids: Sequence[list[int]],
    config: StudentConfig,
    *,
    seed: int,
    keys: Sequence[str],
    on_batch: Callable[[int], None] | None = None,
) -> list[Reply]:
    """The engine's replies to prompts given as token ids (the transformers backend's exact input), in
    input order, decoded by the config's settings, each prompt sampled with its own seed derived from
    `seed` and its key (the item's id). The engine process has ended when this returns or raises."""
    if not prompt_ids:
        return []
    problem = check_vllm_python(config)
    if problem is not None:
        raise EngineError(problem)
    engine, adapter = engine_arguments(checkpoint, config, seed)
    request = {
        "engine": engine,
        "lora": adapter,
        "prompt_ids": [list(ids) for ids in prompt_ids],
        "seeds": [item_seed(seed, key) for key in keys],
        "decoding": decoding(config),
        "chunk_size": config.vllm.chunk_size,
    }
    return run_engine(request, config, on_batch)


def answer_with_vllm(
    checkpoint: Path,
    prompt_ids: Sequence[list[int]],
    config: StudentConfig,
    *,
    seed: int,
    keys: Sequence[str],
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """The answers (stripped, as the transformers backend's) of `generate_with_vllm`."""
    replies = generate_with_vllm(checkpoint, prompt_ids, config, seed=seed, keys=keys, on_batch=on_batch)
    return [reply.text.strip() for reply in replies]
