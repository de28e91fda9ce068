"""lion_core/student/launch.py: the training subprocess followed step by step through its per-step log,
a fine-tune under `accelerate launch`, and the shipped FSDP and DeepSpeed ZeRO-3 accelerate configs as
accelerate reads them from the command line the launcher builds (no GPU needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from lion_core.config import StudentConfig
from lion_core.student.callbacks import StepRecord
from lion_core.student.launch import FinetuneJob, follow_steps, launch_command, read_new_steps
from tests.support.configs import BATCH, length_pairs, watched_student
from tests.support.paths import REPO
from tests.support.spawn import free_port

ACCELERATE = REPO / "deployments" / "accelerate"


def step_line(step: int) -> str:
    return json.dumps(asdict(StepRecord(step, 3, 1.0 / step, 1e-3, 4 * step, 10.0, 0.1 * step))) + "\n"


def test_the_per_step_log_is_read_line_by_line_leaving_a_line_being_written(tmp_path: Path) -> None:
    path = tmp_path / "student.progress.jsonl"
    assert read_new_steps(path, 0) == ([], 0)  # not there yet
    path.write_text(step_line(1) + step_line(2)[:10])
    records, offset = read_new_steps(path, 0)
    assert [r.step for r in records] == [1] and offset == len(step_line(1))
    path.write_text(step_line(1) + step_line(2) + step_line(3))
    records, offset = read_new_steps(path, offset)
    assert [r.step for r in records] == [2, 3] and offset == path.stat().st_size


def writer(path: Path, steps: int, then: str = "") -> subprocess.Popen:
    """A stand-in for the training subprocess: appends step lines to `path`, a half line first."""
    lines = [step_line(s) for s in range(1, steps + 1)]
    script = textwrap.dedent(
        f"""
        import sys, time
        lines = {lines!r}
        with open({str(path)!r}, "a") as f:
            for line in lines:
                f.write(line[:5]); f.flush(); time.sleep(0.2)
                f.write(line[5:]); f.flush(); time.sleep(0.2)
        {then}
        """
    )
    return subprocess.Popen([sys.executable, "-c", script])


def test_following_a_training_subprocess_passes_every_step_on(tmp_path: Path) -> None:
    path = tmp_path / "student.progress.jsonl"
    seen: list[StepRecord] = []
    assert follow_steps(writer(path, 3), path, seen.append) == 0
    assert [r.step for r in seen] == [1, 2, 3]


def test_a_failing_callback_stops_the_training_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "student.progress.jsonl"
    process = writer(path, 1, then="time.sleep(600)")

    def fail(record: StepRecord) -> None:
        raise RuntimeError("the watcher broke")

    with pytest.raises(RuntimeError, match="the watcher broke"):
        follow_steps(process, path, fail)
    assert process.poll() is not None  # not left running


@pytest.mark.slow
def test_a_fine_tune_under_accelerate_launch_reports_every_step(
    tiny_student_path: Path, tmp_path: Path
) -> None:
    """Two CPU processes (torchrun through accelerate launch, gloo): the steps come from the per-step log
    the main process writes, with the losses the result reports and the examples of both processes."""
    from lion_core.student.launch import FinetuneJob, run_finetune

    accelerate_config = tmp_path / "two_processes.yaml"
    accelerate_config.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_machines: 1\n"
        f"num_processes: 2\nmachine_rank: 0\nmain_process_port: {free_port()}\nmixed_precision: 'no'\n"
    )
    data = tmp_path / "sft.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": p.prompt, "response": p.response}) + "\n" for p in length_pairs(64))
    )
    settings = watched_student(
        tiny_student_path,
        max_steps=4,
        gradient_accumulation_steps=1,
        num_processes=2,
        accelerate_config=accelerate_config,
    )
    out = tmp_path / "run" / "iter_1" / "student"
    out.parent.mkdir(parents=True)
    seen: list[StepRecord] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        result = run_finetune(
            FinetuneJob(tiny_student_path, data, out, settings, 0, "two"), on_step=seen.append
        )
    assert result.processes == 2
    assert [r.step for r in seen] == [1, 2, 3, 4]
    assert [r.loss for r in seen] == result.losses
    assert [r.examples for r in seen] == [2 * BATCH * s for s in range(1, 5)]


def accelerate_environment(command: list[str]) -> tuple[object, dict[str, str]]:
    """What `accelerate launch` makes of the launcher's command line: its validated arguments and the
    environment its workers get (the part of `accelerate launch` that runs before any process starts)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    assert command[1] == "launch"
    args, defaults, precision_given = _validate_launch_command(
        launch_command_parser().parse_args(command[2:])
    )
    if args.use_deepspeed:  # as accelerate's launch_command does before its DeepSpeed launcher
        fields = [*defaults.deepspeed_config, *(["mixed_precision"] if precision_given else [])]
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return args, prepare_deepspeed_cmd_env(args)[1]
    return args, prepare_multi_gpu_env(args)


def trl_config(name: str) -> dict:
    """TRL's own accelerate config of that name (trl/accelerate_configs), which its trainers are run with."""
    import trl

    return yaml.safe_load((Path(trl.__file__).parent / "accelerate_configs" / name).read_text())


def test_the_fsdp_config_is_accepted_by_accelerate_as_trl_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accelerate.utils import FullyShardedDataParallelPlugin

    student = StudentConfig(num_processes=8, accelerate_config=ACCELERATE / "fsdp.yaml", precision="bf16")
    job = FinetuneJob(Path("base"), Path("sft.jsonl"), tmp_path / "student", student, 0, "k")
    args, env = accelerate_environment(launch_command(job, tmp_path / "student.json"))
    assert (args.use_fsdp, args.num_processes, args.mixed_precision) == (True, 8, "bf16")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    plugin = FullyShardedDataParallelPlugin()  # what the trainer's Accelerator builds in each worker
    assert plugin.fsdp_version == 2 and "FULL_STATE_DICT" in str(
        plugin.state_dict_type
    )  # whole weights saved
    assert plugin.cpu_ram_efficient_loading and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    ours = yaml.safe_load((ACCELERATE / "fsdp.yaml").read_text())["fsdp_config"]
    theirs = trl_config("fsdp2.yaml")["fsdp_config"]
    assert {k: v for k, v in theirs.items() if k in ours} == ours


def test_the_zero3_config_is_accepted_by_accelerate_as_trl_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accelerate.utils import DeepSpeedPlugin

    student = StudentConfig(num_processes=8, accelerate_config=ACCELERATE / "zero3.yaml", precision="fp32")
    job = FinetuneJob(Path("base"), Path("sft.jsonl"), tmp_path / "student", student, 0, "k")
    args, env = accelerate_environment(launch_command(job, tmp_path / "student.json"))
    assert (args.use_deepspeed, args.num_processes, args.mixed_precision) == (True, 8, "no")  # our precision
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    plugin = DeepSpeedPlugin()  # what the trainer's Accelerator builds in each worker (deepspeed not needed)
    assert plugin.zero_stage == 3 and plugin.zero3_init_flag
    assert plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    assert (
        yaml.safe_load((ACCELERATE / "zero3.yaml").read_text())["deepspeed_config"]
        == (trl_config("zero3.yaml")["deepspeed_config"])
    )


# A process that runs a fine-tune under a stand-in `accelerate launch` (it writes its pid, then sleeps).
LAUNCHER = """
import sys
from pathlib import Path
from lion_core.config import StudentConfig
from lion_core.student import launch

pid_file, out = sys.argv[1], Path(sys.argv[2])
stand_in = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)"
launch.launch_command = lambda job, config_file: [sys.executable, "-c", stand_in, pid_file]
job = launch.FinetuneJob(out, out / "sft.jsonl", out / "student", StudentConfig(), 0, "key")
launch.finetune_in_processes(job)
"""


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_training_processes_do_not_outlive_a_killed_run(tmp_path: Path) -> None:
    """Issue 22, item 4: a SIGKILL of the process that started `accelerate launch` (alone, not its group)
    left the training running for hours."""
    import os
    import signal
    import time

    pid_file = tmp_path / "launcher.pid"
    parent = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(pid_file), str(tmp_path)])
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text()):
        assert parent.poll() is None and time.monotonic() < deadline, "the launcher never started"
        time.sleep(0.1)
    child = int(pid_file.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while running(child):
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            raise AssertionError("the training process outlived the run that started it")
        time.sleep(0.1)
