"""`lion export`: the distilled set leaves the run directory as a loadable dataset with a card."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from typer.testing import CliRunner

from lion_cli.main import app
from lion_core.config import LionConfig, dump_config
from lion_core.method.discrimination import make_judgement
from lion_core.records import Instruction, Response, write_jsonl
from lion_core.run.export import export_run, push_to_hub
from lion_core.run.rundir import RunDir, write_json

SEEDS = [
    Instruction(id="seed-0", instruction="Reverse abc"),
    Instruction(id="seed-1", instruction="Sort cab"),
]
NEW = Instruction(id="it1-0", instruction="Reverse abcd", origin="hard", iteration=1, parent_id="seed-0")
LAST = Instruction(id="it2-0", instruction="Sort dcba", origin="easy", iteration=2, parent_id="seed-1")


def answer(item: Instruction) -> Response:
    return Response(id=item.id, instruction=item.instruction, output=f"answer to {item.id}", model="gpt-x")


def iteration(run: RunDir, k: int, pool: list[Instruction], gaps: dict[str, float]) -> None:
    folder = run.iteration(k)
    write_jsonl(folder.file("cache_pool"), pool)
    write_jsonl(folder.file("teacher"), [answer(i) for i in pool])
    write_jsonl(
        folder.file("judgements"),
        [make_judgement(i.id, (8.0, 8.0), (8.0 - gaps[i.id],) * 2, 1.0) for i in pool],
    )
    write_json(folder.summary, {"iteration": k})


@pytest.fixture
def run(tmp_path: Path, monkeypatch) -> RunDir:
    """Two iterations: seeds judged twice, one instruction new in iteration 2, one not yet answered."""
    monkeypatch.setenv("LION_TEST_KEY", "sk-secret-never-exported")
    run = RunDir(tmp_path / "runs" / "two")
    config = LionConfig.model_validate(
        {"run_dir": run.root, "teacher": {"api_key_env": "LION_TEST_KEY"}, "loop": {"iterations": 2}}
    )
    dump_config(config, run.config)
    iteration(run, 1, SEEDS, {"seed-0": 3.0, "seed-1": 0.0})
    iteration(run, 2, [*SEEDS, NEW], {"seed-0": 1.0, "seed-1": 0.5, "it1-0": 2.0})
    write_jsonl(run.iteration(3).file("cache_pool"), [*SEEDS, NEW, LAST])
    return run


def test_export_writes_both_formats_with_lineage_labels_and_a_card(run: RunDir, tmp_path: Path) -> None:
    out = tmp_path / "export"
    exported = export_run(run.root, out)
    assert (exported.rows, exported.unanswered) == (3, 1)  # LAST has no teacher answer yet

    alpaca = datasets.load_from_disk(str(out / "alpaca"))
    by_id = {row["id"]: row for row in alpaca}
    assert by_id["it1-0"]["output"] == "answer to it1-0"
    assert (by_id["it1-0"]["origin"], by_id["it1-0"]["iteration"], by_id["it1-0"]["parent_id"]) == (
        "hard",
        1,
        "seed-0",
    )
    assert by_id["seed-0"]["judgements"] == [
        {"iteration": 1, "label": "hard", "gap": 3.0},
        {"iteration": 2, "label": "hard", "gap": 1.0},
    ]
    assert by_id["seed-1"]["judgements"][1] == {"iteration": 2, "label": "easy", "gap": 0.5}

    messages = datasets.load_from_disk(str(out / "messages"))
    first = next(r for r in messages if r["id"] == "seed-0")
    assert first["messages"] == [
        {"role": "user", "content": "Reverse abc"},
        {"role": "assistant", "content": "answer to seed-0"},
    ]
    hub = datasets.load_dataset("parquet", data_files=str(out / "data" / "messages.parquet"))
    assert hub["train"].num_rows == 3

    card = (out / "README.md").read_text()
    assert "license: other" in card and "terms" in card
    assert "rows: 3 (1 hard, 2 seed)" in card and "not included: 1" in card
    assert "api_key_env: LION_TEST_KEY" in card  # the config, with the variable's name …
    assert "sk-secret" not in card  # … never the key
    assert "sk-secret" not in "".join(p.read_bytes().decode("latin-1") for p in out.rglob("*") if p.is_file())


class FakeHub:
    """Records what a push asks of huggingface_hub.HfApi (the Hub is not reachable from the tests)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id: str, **kwargs) -> None:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs) -> None:
        self.calls.append(("upload_folder", kwargs))


def test_push_creates_a_private_dataset_repo_and_uploads_the_card_and_parquet(run: RunDir, tmp_path) -> None:
    out = tmp_path / "export"
    export_run(run.root, out)
    hub = FakeHub()
    files = push_to_hub(out, "me/lion-two", api=hub)
    assert files == ["README.md", "data/alpaca.parquet", "data/messages.parquet"]
    (create, repo), (upload, args) = hub.calls
    assert create == "create_repo" and repo["repo_type"] == "dataset" and repo["private"] is True
    assert upload == "upload_folder" and args["repo_id"] == "me/lion-two"
    assert args["allow_patterns"] == files and args["folder_path"] == str(out)


def test_lion_export_cli_dry_run_sends_nothing_and_a_broken_run_is_one_line(run: RunDir) -> None:
    result = CliRunner().invoke(app, ["export", str(run.root), "--push-to-hub", "me/x", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "exported 3 instructions" in result.output and "dry run: would upload README.md" in result.output
    assert (run.export / "alpaca").is_dir()

    write_jsonl(run.iteration(2).file("teacher"), [answer(i) for i in SEEDS])  # it1-0 lost its answer
    broken = CliRunner().invoke(app, ["export", str(run.root)])
    assert broken.exit_code == 2
    assert "no teacher answer for Cache Pool item 'it1-0'" in " ".join(broken.output.split())
