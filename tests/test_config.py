"""The config model: every shipped YAML loads; bad values fail naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from lion_core.config import (
    ConfigError,
    EndpointConfig,
    LionConfig,
    MissingApiKeyError,
    dump_config,
    load_config,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_the_three_example_configs_ship() -> None:
    assert {p.name for p in CONFIGS} >= {"demo.yaml", "openai.yaml", "local-vllm.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, LionConfig)
    assert config.loop.iterations >= 1


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
    config = load_config(CONFIG_DIR / "openai.yaml")
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
    config = load_config(CONFIG_DIR / "openai.yaml")
    dump_config(config, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "sk-secret" not in text
    assert load_config(tmp_path / "config.yaml") == config
