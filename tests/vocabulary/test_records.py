"""Record readers and atomic writers: real public data and bad input that must fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lion_core import data
from lion_core.config import ConfigError, config_from_dict, dump_config, load_config
from lion_core.records import (
    Instruction,
    Judgement,
    RecordError,
    Response,
    read_instructions,
    read_jsonl,
    write_jsonl,
)
from lion_core.run.rundir import RunDir, check_same_seed, write_json

PUBLIC_FILES = {
    "seed_tasks.jsonl": 175,
    "user_oriented_instructions.jsonl": 252,
    "vicuna_bench_questions.jsonl": 80,
    "mt_bench_questions.jsonl": 80,
}


@pytest.mark.parametrize(("name", "rows"), PUBLIC_FILES.items())
def test_reads_every_public_instruction_file(public_data: Path, name: str, rows: int) -> None:
    records = read_instructions(public_data / name)
    assert len(records) == rows
    assert len({r.id for r in records}) == rows
    assert all(r.instruction.strip() for r in records)


def test_fastchat_keeps_category_and_first_turn(public_data: Path) -> None:
    questions = read_instructions(public_data / "vicuna_bench_questions.jsonl")
    first = json.loads((public_data / "vicuna_bench_questions.jsonl").read_text().splitlines()[0])
    assert questions[0].id == str(first["question_id"])
    assert questions[0].instruction == first["turns"][0]
    assert questions[0].category == first["category"]


def test_self_instruct_takes_first_instance_input(public_data: Path) -> None:
    records = read_instructions(public_data / "seed_tasks.jsonl")
    raw = [json.loads(line) for line in (public_data / "seed_tasks.jsonl").read_text().splitlines()]
    with_input = next(i for i, r in enumerate(raw) if r["instances"][0]["input"])
    assert records[with_input].input == raw[with_input]["instances"][0]["input"]


# ----------------------------------------------------------------------------- the packaged public sets

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_the_public_sets_ship_in_the_package_with_their_licence() -> None:
    assert data.names() == sorted([*PUBLIC_FILES, "judge_prompts.jsonl"])
    readme = (data.path("seed_tasks.jsonl").parent / "README.md").read_text(encoding="utf-8")
    assert "Apache License, Version 2.0" in readme
    for name in data.names():
        assert f"`{name}`" in readme  # each file has its row: source, rows, licence
    with pytest.raises(
        ValueError, match=r"no packaged data file 'vicuna80\.jsonl' \(packaged: .*vicuna_bench"
    ):
        data.path("vicuna80.jsonl")


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


def test_reads_alpaca_json(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.json"
    path.write_text(
        json.dumps(
            [
                {"instruction": "Say hi", "input": "", "output": "hi"},
                {"instruction": "Add", "input": "1 2", "output": "3"},
            ],
            indent=2,
        )
    )
    records = read_instructions(path)
    assert [(r.id, r.instruction, r.input) for r in records] == [
        ("seed-000000", "Say hi", ""),
        ("seed-000001", "Add", "1 2"),
    ]


def test_own_records_round_trip(tmp_path: Path) -> None:
    items = [Instruction(id="a", instruction="Reverse abc", origin="hard", iteration=1, parent_id="s1")]
    write_jsonl(tmp_path / "pool.jsonl", items)
    assert read_instructions(tmp_path / "pool.jsonl") == items
    judgement = Judgement(
        id="a",
        teacher_scores=[9, 9],
        student_scores=[2, 3],
        teacher_score=9,
        student_score=2.5,
        gap=6.5,
        label="hard",
    )
    write_jsonl(tmp_path / "j.jsonl", [judgement])
    assert read_jsonl(tmp_path / "j.jsonl", Judgement) == [judgement]


BAD_INPUTS = [
    # (file name, bytes, expected line, expected words in the message)
    ("bad.jsonl", b'{"instruction": "a"}\n{"instruction": \n', 2, "invalid JSON"),
    ("missing.jsonl", b'{"instruction": "a"}\n{"input": "x"}\n', 2, "field 'instruction': missing"),
    ("type.jsonl", b'{"instruction": "a"}\n{"instruction": 42}\n', 2, "field 'instruction'"),
    ("latin1.jsonl", b'{"instruction": "a"}\n{"instruction": "caf\xe9"}\n', 2, "not UTF-8"),
    ("empty.jsonl", b"", None, "empty file"),
    ("blank.jsonl", b"\n  \n\n", None, "empty file"),
    ("dup.jsonl", b'{"id": "x", "instruction": "a"}\n{"id": "x", "instruction": "b"}\n', 2, "duplicate id"),
    ("open.json", b'[\n {"instruction": "a"},\n {"instruction": "b"}\n', 3, "JSON"),
    ("object.json", b'{"instruction": "a"}', 1, "expected a JSON list"),
    ("strings.json", b'[\n "just text"\n]', 2, "expected a JSON object"),
    ("turns.jsonl", b'{"question_id": 1, "category": "x", "turns": []}\n', 1, "field 'turns'"),
    ("instances.jsonl", b'{"id": "t", "instruction": "a", "instances": "no"}\n', 1, "field 'instances'"),
    ("emptytext.jsonl", b'{"instruction": ""}\n', 1, "field 'instruction'"),
    ("origin.jsonl", b'{"id": "a", "instruction": "b", "origin": "alien"}\n', 1, "field 'origin'"),
]


@pytest.mark.parametrize(("name", "data", "line", "words"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_names_file_line_and_field(
    tmp_path: Path, name: str, data: bytes, line: int | None, words: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(RecordError) as caught:
        read_instructions(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    if line is not None:
        assert message.startswith(f"{path}:{line}:")
    assert words in message


def test_missing_file_is_a_record_error(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="no such file"):
        read_instructions(tmp_path / "nope.jsonl")


def test_judgement_with_bad_label_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "judgements.jsonl"
    row = {
        "id": "a",
        "teacher_scores": [1, 2],
        "student_scores": [1, 2],
        "teacher_score": 1.5,
        "student_score": 1.5,
        "gap": 0,
        "label": "medium",
    }
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(RecordError, match=r"judgements.jsonl:1: field 'label'"):
        read_jsonl(path, Judgement)


def test_failed_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "teacher.jsonl"
    old = [Response(id="1", instruction="i", output="o", model="m")]
    write_jsonl(path, old)

    def rows():
        yield {"id": "2"}
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert read_jsonl(path, Response) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher.jsonl"]


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    write_jsonl(tmp_path / "pool.jsonl", [Instruction(id="a", instruction="b")])
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "pool.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask


def test_run_summaries_are_this_runs_iterations_only(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for k, stopped in ((1, None), (2, None), (3, "equilibrium"), (4, None), (6, None)):
        write_json(run.iteration(k).summary, {"iteration": k, "stopped": stopped})
    assert [s["iteration"] for s in run.summaries()] == [1, 2, 3]  # iter_4 is from an older, longer run
    (tmp_path / "config.yaml").write_text("loop:\n  iterations: 2\n")
    assert [s["iteration"] for s in run.summaries()] == [1, 2]


def test_a_run_directory_refuses_another_seed_pool(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    pools = {"seed_path": "a.jsonl", "format": "auto", "max_seed": None}
    check_same_seed(run, pools)  # a new directory: anything goes
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"pools": pools}))
    (tmp_path / "iter_1").mkdir()
    (tmp_path / "iter_1" / "cache_pool.jsonl").write_text('{"id": "a", "instruction": "x"}\n')
    check_same_seed(run, dict(pools))  # the same seeds: it resumes
    with pytest.raises(
        ConfigError, match=r"config\.yaml: .* other seeds \(pools\.max_seed was None, now 10\)"
    ):
        check_same_seed(run, {**pools, "max_seed": 10})
