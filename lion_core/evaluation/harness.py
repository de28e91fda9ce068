"""Benchmarks through lm-evaluation-harness (the `harness` extra): BBH, AGIEval, or local tasks.

Run as:  lion eval configs/openai.yaml --candidate runs/openai/iter_3/student --harness bbh,agieval

The paper's zero-shot BBH and AGIEval need lm-eval's task data from the Hugging Face hub; offline,
`include_path` points lm-eval at local task YAMLs (tests build one from the offline world).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lion_core.student.checkpoint import base_of, is_adapter


class HarnessError(RuntimeError):
    """lm-evaluation-harness is missing or failed (the message says which tasks and why)."""


def model_args(checkpoint: Path, precision: str) -> str:
    """lm-eval's `hf` model arguments for a full checkpoint or a LoRA adapter on its base."""
    dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[precision]
    path = Path(checkpoint)
    if is_adapter(path):
        return f"pretrained={base_of(path)},peft={path},dtype={dtype}"
    return f"pretrained={path},dtype={dtype}"


def run_harness(
    checkpoint: Path,
    tasks: Sequence[str],
    *,
    precision: str = "fp32",
    batch_size: int = 8,
    device: str = "cpu",
    limit: int | None = None,
    include_path: Path | None = None,
    num_fewshot: int = 0,
) -> dict[str, dict[str, Any]]:
    """Run lm-eval's `simple_evaluate` zero-shot; returns {task: {metric: value}}.

    Raises HarnessError (one line) when lm-eval is missing or fails, e.g. when a task's data cannot be
    fetched from the Hugging Face hub (BBH and AGIEval are downloaded on first use).
    """
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise HarnessError("--harness needs lm-evaluation-harness: pip install -e '.[harness]'") from None
    manager = TaskManager(include_path=str(include_path)) if include_path else TaskManager()
    try:
        output = lm_eval.simple_evaluate(
            model="hf",
            model_args=model_args(checkpoint, precision),
            tasks=list(tasks),
            num_fewshot=num_fewshot,
            batch_size=batch_size,
            device=device,
            limit=limit,
            task_manager=manager,
        )
    except Exception as err:  # lm-eval raises many kinds; the user needs what and why, in one line
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise HarnessError(f"lm-eval tasks {list(tasks)} failed: {type(err).__name__}: {reason}") from None
    return {task: _numbers(metrics) for task, metrics in output["results"].items()}


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics of a task (numpy scalars as floats; aliases and strings dropped)."""
    out = {}
    for name, value in metrics.items():
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            continue
    return out
