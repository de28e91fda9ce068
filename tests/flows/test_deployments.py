"""deployments/: prefect.yaml names nothing outside the repository; every entrypoint imports and its
parameters validate; serve.py builds its deployment."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from tests.support.paths import REPO


def test_prefect_yaml_names_no_path_outside_the_repository() -> None:
    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    text = json.dumps(spec)
    assert "../" not in text and '"/' not in text
    nightly = next(d for d in spec["deployments"] if d["entrypoint"].endswith("evaluate_from_file"))
    assert nightly["parameters"]["questions"] == "package:vicuna_bench_questions.jsonl"


def test_schedules_ship_inactive() -> None:
    """Issue 22, item 6: `prefect deploy --all` switched on schedules against endpoints a new user does
    not have, and created scheduled runs at once."""
    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    schedules = [s for d in spec["deployments"] for s in d.get("schedules") or []]
    assert schedules and all(s.get("active") is False for s in schedules)


@pytest.mark.slow  # as when it stood with the flow runs (now tests/e2e/test_distill.py)
def test_every_deployment_entrypoint_imports_and_its_parameters_validate() -> None:
    import importlib.util

    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    assert {d["name"] for d in spec["deployments"]} >= {"form", "openai", "demo", "nightly"}
    assert any(d.get("schedules") for d in spec["deployments"])
    for deployment in spec["deployments"]:
        file, name = deployment["entrypoint"].split(":")
        module_spec = importlib.util.spec_from_file_location("entry", REPO / file)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        flow = getattr(module, name)
        flow.validate_parameters(deployment.get("parameters", {}))
        config_path = deployment.get("parameters", {}).get("config_path")
        if config_path:
            from lion_core.config import load_config

            load_config(REPO / config_path)
    sys.path.insert(0, str(REPO / "deployments"))
    try:
        import serve

        built = serve.deployment("configs/demo.yaml")
        assert built.schedules and built.parameters["config_path"] == "configs/demo.yaml"
    finally:
        sys.path.remove(str(REPO / "deployments"))
