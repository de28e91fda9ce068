"""Running imitation's fine-tune: in process, or in a separate process group under `accelerate launch`
(multi-GPU, FSDP/DeepSpeed configs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from lion_core.config import StudentConfig
from lion_core.records import atomic_write_text
from lion_core.student.checkpoint import has_key
from lion_core.student.train import LOG_FILE, TrainResult, finetune, read_pairs


def launch_command(
    base: Path, data: Path, out: Path, config_file: Path, config: StudentConfig, seed: int, key: str
) -> list[str]:
    """`accelerate launch [--config_file F] --num_processes N -m lion_core.student.train ...`."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    command = [accelerate, "launch", "--num_processes", str(config.num_processes)]
    if config.accelerate_config is not None:
        command += ["--config_file", str(config.accelerate_config)]
    elif config.num_processes > 1:
        command.append("--multi_gpu")
    return [
        *command,
        "-m",
        "lion_core.student.train",
        "--base",
        str(base),
        "--data",
        str(data),
        "--out",
        str(out),
        "--config",
        str(config_file),
        "--seed",
        str(seed),
        "--key",
        key,
    ]


def finetune_in_processes(
    base: Path, data: Path, out: Path, config: StudentConfig, seed: int, key: str
) -> TrainResult:
    """Run the training entry point under accelerate launch and read its result line."""
    config_file = out.with_name(out.name + ".student.json")
    atomic_write_text(config_file, config.model_dump_json())
    run = subprocess.run(
        launch_command(base, data, out, config_file, config, seed, key),
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"accelerate launch failed ({run.returncode}): {run.stderr[-2000:]}")
    return TrainResult(**json.loads(run.stdout.strip().splitlines()[-1]))


def run_finetune(
    base: Path, data: Path, out: Path, config: StudentConfig, seed: int, key: str
) -> TrainResult:
    """Imitation's fine-tune: in this process, or under `accelerate launch` when `num_processes` > 1;
    a checkpoint already trained under `key` is reused as it is."""
    if has_key(out, key):
        return TrainResult(**json.loads((out / LOG_FILE).read_text(encoding="utf-8")))
    if config.num_processes > 1:
        return finetune_in_processes(base, data, out, config, seed, key)
    return finetune(base, read_pairs(data), out, config, seed=seed, key=key)
