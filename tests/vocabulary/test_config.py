"""lion_core/config.py: every shipped YAML loads; bad values fail naming file, line and field; the
roles' and the student's defaults; packaged data named by package name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lion_core import data
from lion_core.config import (
    ConfigError,
    EndpointConfig,
    LionConfig,
    MissingApiKeyError,
    StudentConfig,
    config_from_dict,
    dump_config,
    load_config,
)
from lion_core.records import read_instructions
from tests.support.paths import CONFIGS, REPO

SHIPPED = sorted(CONFIGS.glob("*.yaml"))


def test_the_example_configs_ship() -> None:
    assert {p.name for p in SHIPPED} >= {"demo.yaml", "openai.yaml", "local-vllm.yaml", "paper.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_config_loads_and_survives_the_run_directory_round_trip(
    path: Path, tmp_path: Path
) -> None:
    config = load_config(path)  # raises ConfigError naming file, line and field if it does not validate
    dump_config(config, tmp_path / "config.yaml")  # what a run records as RUN/config.yaml
    assert load_config(tmp_path / "config.yaml") == config


def test_every_field_has_help_text() -> None:
    def walk(model: type) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{model.__name__}.{name}")
            annotation = field.annotation
            for inner in getattr(annotation, "__args__", (annotation,)):
                if isinstance(inner, type) and hasattr(inner, "model_fields"):
                    missing += walk(inner)
        return missing

    assert walk(LionConfig) == []


def test_openai_config_reads_the_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(CONFIGS / "openai.yaml")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingApiKeyError, match="OPENAI_API_KEY"):
        config.check_credentials()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    config.check_credentials()
    assert config.teacher.api_key().get_secret_value() == "sk-test-not-a-real-key"


def test_local_endpoint_needs_no_key() -> None:
    assert EndpointConfig(base_url="http://localhost:8000/v1").api_key() is None
    with pytest.raises(MissingApiKeyError):
        EndpointConfig(base_url="https://api.example.com/v1").api_key()


def test_bad_value_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("run_dir: runs/x\nloop:\n  iterations: 3\n  tau: 1.0\n  rouge_threshold: 1.5\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:5: field 'loop.rouge_threshold'")


def test_unknown_field_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("loop:\n  iteratons: 3\n")
    with pytest.raises(ConfigError, match=r"typo.yaml:2: field 'loop.iteratons'"):
        load_config(path)


def test_an_unknown_section_is_named_at_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "section.yaml"
    path.write_text("run_dir: runs/x\nlop:\n  iterations: 3\n")
    with pytest.raises(ConfigError, match=r"section.yaml:2: field 'lop'"):
        load_config(path)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("loop:\n  iterations: [1,\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+: invalid YAML"):
        load_config(path)


def test_dump_round_trips_without_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value-123456789012345")
    config = load_config(CONFIGS / "openai.yaml")
    dump_config(config, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "sk-secret" not in text
    assert load_config(tmp_path / "config.yaml") == config


def test_paper_config_is_the_papers_recipe() -> None:
    config = load_config(CONFIGS / "paper.yaml")
    for role, temperature, max_tokens in (("teacher", 0.7, 1024), ("referee", 0.2, 512)):
        endpoint = getattr(config, role)
        assert (endpoint.model, endpoint.temperature, endpoint.max_tokens) == (
            "gpt-3.5-turbo",
            temperature,
            max_tokens,
        )
    assert (config.generator.model, config.generator.temperature, config.generator.top_p) == (
        "gpt-3.5-turbo",
        1.0,
        1.0,
    )
    assert {e.api_key_env for e in config.endpoints().values()} == {"OPENAI_API_KEY"}
    s = config.student
    assert (s.finetune, s.learning_rate, s.epochs, s.max_steps) == ("full", 2e-5, 3, None)
    assert (s.lr_scheduler, s.warmup_ratio, s.max_length, s.weight_decay) == ("cosine", 0.03, 1024, 0.0)
    assert s.train_batch_size * s.gradient_accumulation_steps * s.num_processes == 128
    # as the original: FSDP over 8 GPUs, 2 a GPU x 8 accumulated, bf16 mixed precision over fp32 weights
    assert (s.num_processes, s.train_batch_size, s.gradient_accumulation_steps) == (8, 2, 8)
    assert s.accelerate_config is not None and (REPO / s.accelerate_config).is_file()
    assert yaml.safe_load((REPO / s.accelerate_config).read_text())["distributed_type"] == "FSDP"
    assert (s.precision, s.master_weights) == ("bf16", "fp32")
    assert (s.prompt_template, s.do_sample, s.temperature, s.max_new_tokens) == ("lion", True, 0.7, 1024)
    assert s.train_data == "train_pool"
    loop = config.loop
    assert (loop.iterations, loop.new_per_iteration, loop.hard_easy_ratio) == (3, 6000, 1.0)
    assert (loop.tau, loop.rouge_threshold, loop.equilibrium_hard_share) == (1.0, 0.7, 0.0)
    assert (loop.min_words, loop.generator_blacklist, loop.generator_max_tokens_per_word) == (
        3,
        ["instruction"],
        4,
    )
    assert (config.pools.format, config.pools.seed_path.name) == ("alpaca", "alpaca_data.json")
    assert "SET-ME" in str(config.pools.seed_path) and "SET-ME" in str(s.model_path)  # the user must set them
    assert config.evaluation.judge is not None and config.evaluation.judge.temperature == 0.2


def test_paper_config_samples_judges_loops_and_evaluates_as_the_paper() -> None:
    config = load_config(CONFIGS / "paper.yaml")
    s = config.student
    assert (s.top_k, s.top_p) == (50, 1.0)  # lion_inference.py's fresh GenerationConfig
    assert config.referee.skip_identical is False  # equal answers are judged, as chatgpt_referee.py does
    loop = config.loop
    assert loop.final_imitation is True  # 52K + 3 x 6K = the paper's 70K trained on
    assert (loop.parent_sampling, loop.send_inputs, loop.referee_retries) == ("uniform", True, 2)
    assert (loop.generation_patience, loop.seed) == (3, 42)
    assert config.evaluation.protocol == "vicuna"  # `lion eval configs/paper.yaml` runs the paper's protocol
    assert config.evaluation.judge.model == "gpt-4" and config.evaluation.questions.name == (
        "vicuna_bench_questions.jsonl"
    )


def test_a_role_section_keeps_the_roles_decoding_defaults(tmp_path: Path) -> None:
    path = tmp_path / "roles.yaml"
    path.write_text("teacher: {model: m}\nreferee: {model: m}\ngenerator: {model: m}\n")
    config = load_config(path)
    assert (config.teacher.temperature, config.teacher.max_tokens) == (0.7, 1024)
    assert (config.referee.temperature, config.referee.max_tokens) == (0.2, 512)
    assert config.generator.temperature == 1.0


def test_lora_without_a_learning_rate_trains_at_loras_rate_and_the_dump_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "lora.yaml"
    path.write_text("student: {finetune: lora}\n")
    config = load_config(path)
    assert config.student.learning_rate == config.student.lora.learning_rate == 2e-4
    dump_config(config, tmp_path / "again.yaml")
    assert load_config(tmp_path / "again.yaml").student.learning_rate == 2e-4


def test_lora_trains_at_a_rate_lora_learns_with() -> None:
    assert StudentConfig(finetune="lora").learning_rate == 2e-4
    assert StudentConfig(finetune="lora", lora={"learning_rate": 1e-4}).learning_rate == 1e-4
    assert StudentConfig(finetune="lora", learning_rate=3e-5).learning_rate == 3e-5  # explicit wins
    assert StudentConfig(finetune="full").learning_rate == 2e-5


def test_report_to_takes_a_name_or_a_list_and_defaults_to_auto(tiny_student_path: Path) -> None:
    assert StudentConfig().report_to == ["auto"]
    assert StudentConfig(report_to="wandb").report_to == ["wandb"]
    assert StudentConfig(report_to=["tensorboard", "mlflow"]).report_to == ["tensorboard", "mlflow"]
    with pytest.raises(ValueError, match="report_to"):
        StudentConfig(report_to="tensorbored")


def test_a_config_names_packaged_files_by_package_name(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "pools:\n  seed_path: package:seed_tasks.jsonl\n  format: self_instruct\n"
        "evaluation:\n  questions: package:vicuna_bench_questions.jsonl\n"
    )
    config = load_config(path)
    assert config.pools.seed_path == data.path("seed_tasks.jsonl")
    assert len(read_instructions(config.pools.seed_path, config.pools.format)) == 175
    assert config.evaluation.questions is not None
    assert len(read_instructions(config.evaluation.questions)) == 80
    # a saved config keeps the name, not this machine's install path, and loads back to the same files
    dump_config(config, tmp_path / "saved.yaml")
    saved = yaml.safe_load((tmp_path / "saved.yaml").read_text())
    assert saved["pools"]["seed_path"] == "package:seed_tasks.jsonl"
    assert saved["evaluation"]["questions"] == "package:vicuna_bench_questions.jsonl"
    assert load_config(tmp_path / "saved.yaml") == config
    # so does the JSON a flow parameter or a training subprocess receives
    assert type(config).model_validate_json(config.model_dump_json()) == config


def test_other_paths_are_left_as_written(tmp_path: Path) -> None:
    config = config_from_dict({"pools": {"seed_path": "data/package:x.jsonl"}})
    assert config.pools.seed_path == Path("data/package:x.jsonl")
    assert config.model_dump(mode="json")["pools"]["seed_path"] == "data/package:x.jsonl"
    assert config_from_dict({}).evaluation.questions is None


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("loop:\n  iterations: 2\npools:\n  seed_path: package:seeds.jsonl\n", 4, "pools.seed_path"),
        ("evaluation:\n  questions: package:vicuna80.jsonl\n", 2, "evaluation.questions"),
    ],
)
def test_an_unknown_package_name_is_one_line_naming_the_field(
    tmp_path: Path, text: str, line: int, field: str
) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: field '{field}': ")
    assert "no packaged data file" in message and "vicuna_bench_questions.jsonl" in message


def test_the_example_configs_read_packaged_data() -> None:
    """configs/ point at files inside the package, not at anything beside the repository."""
    questions = load_config(CONFIGS / "openai.yaml").evaluation.questions
    assert questions == data.path("vicuna_bench_questions.jsonl")
    assert len(read_instructions(questions)) == 80
    pools = load_config(CONFIGS / "local-vllm.yaml").pools
    assert pools.seed_path == data.path("seed_tasks.jsonl")
    assert len(read_instructions(pools.seed_path, pools.format)) == 175


def test_local_vllm_config_shares_one_gpu_between_the_teacher_server_and_the_students_engine() -> None:
    # the server command the file's header gives, and the student's own engine, fit one GPU together
    text = (CONFIGS / "local-vllm.yaml").read_text()
    server = float(re.search(r"vllm serve .*--gpu-memory-utilization ([0-9.]+)", text)[1])
    student = load_config(CONFIGS / "local-vllm.yaml").student
    assert student.backend == "vllm" and student.vllm.python is not None  # vLLM's own environment
    assert server + student.vllm.gpu_memory_utilization < 1.0
