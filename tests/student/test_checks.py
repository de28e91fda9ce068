"""lion_core/student/checks.py: what cannot run on this machine (a CPU here) is refused in one line that
names the field, before anything is loaded, trained, written or launched: QLoRA, fp16, flash-attention,
FSDP and DeepSpeed without a GPU (never quietly turned into DDP or into independent processes), the chat
style on a checkpoint without a chat template."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from lion_core.config import ConfigError, StudentConfig
from lion_core.student.checks import check_student
from lion_core.student.launch import FinetuneJob, run_finetune
from lion_core.student.train import finetune, main
from tests.support.configs import length_pairs, tiny_student
from tests.support.paths import REPO

ACCELERATE = REPO / "deployments" / "accelerate"
pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks what a machine without a GPU refuses"
)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("settings", "start"),
    [
        (dict(finetune="qlora"), "student.finetune: qlora loads the base model in 4 bits"),
        (dict(precision="fp16"), "student.precision: fp16 needs a CUDA GPU"),
        (dict(attention="flash_attention_2"), "student.attention: flash_attention_2 needs the flash-attn"),
        (
            dict(num_processes=8, accelerate_config=ACCELERATE / "fsdp.yaml"),
            f"student.accelerate_config: {ACCELERATE / 'fsdp.yaml'} trains with FSDP, which needs CUDA GPUs",
        ),
        (
            dict(num_processes=8, accelerate_config=ACCELERATE / "zero3.yaml"),
            f"student.accelerate_config: {ACCELERATE / 'zero3.yaml'} trains with DeepSpeed, which needs CUDA",
        ),
        (
            dict(num_processes=2, accelerate_config=Path("nowhere.yaml")),
            "student.accelerate_config: nowhere.yaml: no such file",
        ),
    ],
    ids=["qlora", "fp16", "flash-attention", "fsdp", "zero3", "missing-config"],
)
def test_what_needs_a_gpu_is_refused_in_one_line(settings: dict, start: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_student(StudentConfig(**settings))
    assert one_line(error).startswith(start)


def test_a_qlora_fine_tune_is_refused_before_anything_is_loaded_or_written(
    tiny_student_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "iter_1" / "student"
    with pytest.raises(ConfigError, match=r"^student.finetune: qlora"):
        finetune(
            tiny_student_path, length_pairs(8), out, tiny_student(tiny_student_path, finetune="qlora"), seed=0
        )
    assert not (tmp_path / "iter_1").exists()


def test_fsdp_is_refused_before_any_process_starts(
    tiny_student_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: accelerate launch started the processes, and each trained plain DDP on CPU."""
    started: list[object] = []
    monkeypatch.setattr("subprocess.Popen", lambda *a, **k: started.append(a))
    student = tiny_student(tiny_student_path, num_processes=2, accelerate_config=ACCELERATE / "fsdp.yaml")
    data = tmp_path / "sft.jsonl"
    data.write_text('{"prompt": "Q: a\\nA: ", "response": "a"}\n')
    job = FinetuneJob(tiny_student_path, data, tmp_path / "iter_1" / "student", student, 0, "k")
    with pytest.raises(ConfigError, match="trains with FSDP, which needs CUDA GPUs"):
        run_finetune(job)
    assert started == [] and not (tmp_path / "iter_1").exists()


def test_an_fsdp_worker_on_cpu_says_so_in_one_line_and_trains_nothing(
    tiny_student_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The entry point as `accelerate launch --config_file fsdp.yaml` starts it (by hand, or a config that
    does not say FSDP): before, `cpu=True` turned it into plain DDP and it trained."""
    import typer

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    data = tmp_path / "sft.jsonl"
    data.write_text('{"prompt": "Q: a\\nA: ", "response": "a"}\n')
    config = tmp_path / "student.json"
    config.write_text(tiny_student(tiny_student_path, report_to="none").model_dump_json())
    out = tmp_path / "iter_1" / "student"
    with pytest.raises(typer.Exit) as exit_:
        main(base=tiny_student_path, data=data, out=out, config=config, seed=0, key="k")
    assert exit_.value.exit_code == 2
    assert capsys.readouterr().err.strip() == (
        "accelerate launch trains with FSDP, which needs CUDA GPUs, and this machine has none: on CPU set "
        "student.num_processes: 1, or use deployments/accelerate/multi_gpu.yaml (DDP)"
    )
    assert not (tmp_path / "iter_1").exists()


def test_chat_is_refused_for_a_checkpoint_without_a_chat_template(
    tiny_student_path: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(tiny_student_path, plain)
    (plain / "chat_template.jinja").unlink()
    check_student(StudentConfig(prompt_template="chat"), tiny_student_path)  # the tiny student has one
    with pytest.raises(ConfigError) as error:
        check_student(StudentConfig(prompt_template="chat"), plain)
    assert one_line(error).startswith(
        f"student.prompt_template: chat, but the checkpoint {plain} has no chat"
    )
    out = tmp_path / "iter_1" / "student"
    with pytest.raises(ConfigError, match="has no chat template"):
        finetune(plain, length_pairs(8), out, tiny_student(plain, prompt_template="chat"), seed=0)
    assert not (tmp_path / "iter_1").exists()
