"""The offline world: exact oracles, the three roles, the OpenAI-compatible server, the tiny student."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from random import Random

import httpx
import openai
import pytest
from typer.testing import CliRunner

from lion_cli.main import app
from lion_core import prompts
from lion_core.evaluation.protocols import parse_review_scores, review_messages
from lion_core.world import families as fam
from lion_core.world.roles import (
    CORRECT_SCORE,
    RoleSettings,
    classify,
    generator_reply,
    referee_reply,
    reply,
    teacher_reply,
)
from lion_core.world.server import WorldServer, count_tokens, reset_header

KNOWN = [
    ("Reverse abcd", "dcba"),
    ("Spell hello backwards", "olleh"),
    ("Add 12 and 30", "42"),
    ("7 plus 8?", "15"),
    ("Alphabetize dcba", "abcd"),
    ("Sort banana alphabetically", "aaabnn"),
    ("Vowels in education?", "5"),
    ("Count vowels rhythm", "0"),
    ("Uppercase abc", "ABC"),
    ("Capitalize xyz", "XYZ"),
    ("Advance abz", "bca"),
    ("Shift ab forward", "bc"),
    ("Repeat ab 3x", "ababab"),
    ("Say xyz 2x", "xyzxyz"),
    ("Length of banana?", "6"),
    ("Letters in ab?", "2"),
    ("Copy hello", "hello"),
    ("Echo abcdefgh", "abcdefgh"),
]


@pytest.mark.parametrize(("instruction", "answer"), KNOWN)
def test_oracle_answers_known_instructions(instruction: str, answer: str) -> None:
    assert fam.solve(instruction) == answer


def test_at_least_eight_families_with_levels() -> None:
    assert len(fam.families()) >= 8
    assert all(f.max_level >= 2 for f in fam.families())


def test_sampled_tasks_are_solved_and_levels_read_back() -> None:
    rng = Random(3)
    for family in fam.families():
        for level in range(1, family.max_level + 1):
            for _ in range(20):
                task = fam.sample_task(family, rng, level)
                assert fam.solve(task.instruction) == task.answer
                assert fam.level_of(task.instruction) == level, task


def test_sample_tasks_is_uniform_and_distinct() -> None:
    tasks = fam.sample_tasks(180, Random(0), levels=(1, 2))
    assert len({t.instruction.lower() for t in tasks}) == 180
    per_family = {f.name: sum(t.family == f.name for t in tasks) for f in fam.families()}
    assert set(per_family.values()) == {180 // len(per_family)}


def test_a_user_can_register_a_family() -> None:
    double = fam.TaskFamily(
        name="double-test",
        templates=("Double {n}",),
        slots={"n": r"\d+"},
        make=lambda rng, level: {"n": str(rng.randrange(10**level))},
        answer=lambda s: str(2 * int(s["n"])),
        level_of=lambda s: len(s["n"]),
    )
    fam.register_family(double)
    try:
        assert fam.solve("Double 21") == "42"
        assert teacher_reply(prompts.teacher_messages("Double 21")) == "42"
    finally:
        fam._REGISTRY.pop("double-test")


def test_roles_are_read_from_the_prompt() -> None:
    assert classify(prompts.teacher_messages("Reverse abc")) == "teacher"
    assert classify(prompts.referee_messages("Reverse abc", "cba", "abc")) == "referee"
    assert classify(prompts.generator_messages("hard", "Reverse abc")) == "generator"
    assert classify(prompts.generator_messages("easy", "Reverse abc")) == "generator"
    assert classify([{"role": "user", "content": "Hello there"}]) == "teacher"


@pytest.mark.parametrize(("category", "first_line"), [("writing", True), ("coding", True), ("math", False)])
def test_the_world_reviews_in_the_vicuna_contract(category: str, first_line: bool) -> None:
    messages = review_messages("Reverse abc", "cba", "abd", category)
    assert classify(messages) == "reviewer"
    role, text = reply(messages, Random(0), RoleSettings())
    assert role == "reviewer"
    correct, wrong = parse_review_scores(text)
    assert correct == CORRECT_SCORE and wrong < correct
    pair_on_first_line = text.splitlines()[0] == f"{correct:.0f} {wrong:g}"
    assert pair_on_first_line == first_line  # math: the Python tuple closes the review instead
    assert text.splitlines()[-1] == f"({correct:.0f}, {wrong:g})" or first_line


def test_generator_keeps_family_and_level_for_hard_and_draws_any_level_of_the_family_for_easy() -> None:
    clean = RoleSettings(near_duplicate_share=0.0, malformed_share=0.0)
    rng = Random(0)
    easy_levels = set()
    for _ in range(60):
        hard = generator_reply(prompts.generator_messages("hard", "Reverse abcd"), rng, clean)
        easy = generator_reply(prompts.generator_messages("easy", "Reverse abcd"), rng, clean)
        assert fam.identify(hard)[0].name == "reverse" and fam.level_of(hard) == 1
        assert fam.identify(easy)[0].name == "reverse"
        easy_levels.add(fam.level_of(easy))
    assert easy_levels == {1, 2, 3}  # "same domain, rarer": the family's whole range, not one level up


def test_generator_makes_near_duplicates_and_malformed_replies() -> None:
    rng = Random(1)
    given = "Reverse abcd"
    replies = [
        generator_reply(prompts.generator_messages("hard", given), rng, RoleSettings()) for _ in range(400)
    ]
    parsed = [r for r in replies if fam.identify(r)]
    assert len(parsed) > 300
    assert any(r.lower().rstrip(".") == given.lower() for r in replies)
    assert any(fam.identify(r) is None for r in replies)


def test_referee_scores_follow_correctness_and_bias() -> None:
    messages = prompts.referee_messages("Reverse abcd", "dcba", "abcd")
    fair = referee_reply(messages, Random(0), RoleSettings())
    assert "Score of the Assistant 1: 9" in fair
    biased = referee_reply(messages, Random(0), RoleSettings(referee_bias=1.0))
    assert "Score of the Assistant 1: 10" in biased


def test_openai_client_talks_to_the_server(world: WorldServer) -> None:
    async def ask() -> tuple[list[str], object]:
        async with openai.AsyncOpenAI(base_url=world.url, api_key="none") as client:
            models = await client.models.list()
            reply = await client.chat.completions.create(
                model="world", messages=prompts.teacher_messages("Reverse abcd"), max_tokens=16
            )
            return [m.id for m in models.data], reply

    models, reply = asyncio.run(ask())
    assert models == ["world"]
    assert reply.choices[0].message.content == "dcba"
    assert reply.usage.completion_tokens == count_tokens("dcba")
    assert reply.usage.prompt_tokens == world.stats.prompt_tokens


def test_reply_over_max_tokens_is_cut_with_finish_reason_length(world: WorldServer) -> None:
    async def ask():
        async with openai.AsyncOpenAI(base_url=world.url, api_key="none") as client:
            return await client.chat.completions.create(
                model="world", messages=prompts.referee_messages("Reverse ab", "ba", "ab"), max_tokens=5
            )

    reply = asyncio.run(ask())
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5


def _post_chat(world: WorldServer, messages: list[dict[str, str]], max_tokens: int) -> httpx.Response:
    body = {"model": "world", "messages": messages, "max_tokens": max_tokens}
    return httpx.post(f"{world.url}/chat/completions", json=body, timeout=10)


def test_world_answers_429_over_its_token_limit_counting_usage(world: WorldServer) -> None:
    """A token limit of 600/min holds 10 tokens: the first request (bucket full) is answered and charged
    its usage; the next one finds the bucket in debt and gets a 429 saying how long to wait."""
    world.faults.rate_limit_tpm = 600
    world.faults.reply_min_tokens = 40
    messages = prompts.teacher_messages("Reverse abcd")
    first = _post_chat(world, messages, max_tokens=1024)
    assert first.status_code == 200
    usage = first.json()["usage"]
    assert usage["completion_tokens"] == 40  # padded to reply_min_tokens
    assert first.headers["x-ratelimit-limit-tokens"] == "600"
    assert first.headers["x-ratelimit-remaining-tokens"] == "0"  # 10 in the bucket, ~80 used
    second = _post_chat(world, messages, max_tokens=1024)
    assert second.status_code == 429
    # the bucket holds 10 - total_tokens; 10 are needed back, at 10 tokens/s (less what refilled meanwhile)
    full_wait_ms = usage["total_tokens"] * 1000 / 10
    assert 0.9 * full_wait_ms <= float(second.headers["retry-after-ms"]) <= full_wait_ms
    assert world.stats.faults["rate_limit"] == 1


def test_world_sends_request_limit_headers_on_every_reply(world: WorldServer) -> None:
    world.faults.rate_limit_rpm = 60
    reply = _post_chat(world, prompts.teacher_messages("Reverse abcd"), max_tokens=16)
    assert reply.status_code == 200
    assert reply.headers["x-ratelimit-limit-requests"] == "60"
    assert reply.headers["x-ratelimit-remaining-requests"] == "0"  # one second of 60/min: 1 request
    assert reply.headers["x-ratelimit-reset-requests"].endswith("ms")
    again = _post_chat(world, prompts.teacher_messages("Reverse abcd"), max_tokens=16)
    assert again.status_code == 429 and 0 < float(again.headers["retry-after-ms"]) <= 1000


def test_world_rate_limits_hold_for_every_role_whatever_the_injected_faults(world: WorldServer) -> None:
    """Faults aimed at the referee only, and a fault budget already spent, leave the limits in force."""
    world.faults.rate_limit_rpm = 60
    world.faults.roles = ["referee"]
    world.faults.max_faults = 1
    teacher = prompts.teacher_messages("Reverse abcd")
    codes = [_post_chat(world, teacher, max_tokens=16).status_code for _ in range(3)]
    assert codes == [200, 429, 429]  # the second 429 comes after max_faults 429s: limits never run out


def test_reset_headers_are_written_as_openai_writes_them() -> None:
    assert [reset_header(s) for s in (0.12, 1.5, 360.0, 61.25)] == ["120ms", "1.5s", "6m0s", "1m1.25s"]


def test_tiny_student_round_trips_through_from_pretrained(tiny_student_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_student_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_student_path)
    text = "Q: Reverse abcd\nA: dcba"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text
    assert len(ids) == len(text)  # one token per character
    assert tokenizer.padding_side == "left"
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tokenizer))


def test_cli_sample_prints_jsonl() -> None:
    result = CliRunner().invoke(app, ["world", "sample", "--n", "5", "--seed", "3"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 5
    assert set(rows[0]) == {"instruction", "input", "output", "family", "difficulty"}
    assert all(fam.solve(r["instruction"]) == r["output"] for r in rows)


PLUGIN = """
from lion_core.world.families import TaskFamily, register_family

register_family(TaskFamily(
    name="triple", templates=("Triple {n}", "Thrice {n}?"), slots={"n": r"\\d+"},
    make=lambda rng, level: {"n": str(rng.randrange(10 ** (level - 1), 10 ** level))},
    answer=lambda s: str(3 * int(s["n"])),
    level_of=lambda s: len(s["n"]),
))
"""

REACHES_EVERY_PART = """
import sys
from random import Random
sys.path.insert(0, "benchmarks")
from lion_core import prompts
from lion_core.world import families as fam
from lion_core.world.roles import CORRECT_SCORE, RoleSettings, generator_reply, referee_reply, teacher_reply
import replication

settings = replication.Settings(initial=60, test_per_cell=2)
tests = replication.test_set(settings)
assert {t.level for t in tests if t.family == "triple"} == {1, 2, 3}, "held-out set"
pool = replication.seed_pool(settings, 0, {t.instruction.lower() for t in tests})
triple = [t for t in pool if t.family == "triple"]
assert triple, "seed pool"
parent = triple[0].instruction
clean = RoleSettings(near_duplicate_share=0.0, malformed_share=0.0)
child = generator_reply(prompts.generator_messages("hard", parent), Random(0), clean)
assert fam.identify(child)[0].name == "triple", "generator"
answer = teacher_reply(prompts.teacher_messages(parent))
assert answer == triple[0].answer, "teacher"
verdict = referee_reply(prompts.referee_messages(parent, answer, "0"), Random(0), RoleSettings())
assert f"Score of the Assistant 1: {CORRECT_SCORE:.0f}" in verdict, "referee"
print("ok")
"""


def test_a_plugin_family_reaches_every_process_and_every_part_of_the_world(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "triple_plugin.py").write_text(PLUGIN)
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        fam.PLUGINS_ENV: "triple_plugin",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)]),
    }
    # a fresh interpreter, as a spawned worker is: the variable alone brings the family in
    done = subprocess.run(
        [sys.executable, "-c", REACHES_EVERY_PART], cwd=root, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_load_plugins_imports_them_and_names_them_for_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "triple_plugin_b.py").write_text(PLUGIN.replace('"triple"', '"triple-b"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(fam.PLUGINS_ENV, "")  # restored after the test: load_plugins writes to it
    try:
        assert fam.load_plugins(["triple_plugin_b"]) == ["triple_plugin_b"]
        assert fam.plugin_names() == ["triple_plugin_b"]  # inherited by spawned workers
        assert fam.solve("Triple 14") == "42"
    finally:
        fam._REGISTRY.pop("triple-b", None)


def test_the_keyed_family_is_a_plugin_whose_answers_no_rule_of_the_word_gives() -> None:
    from lion_core.world import keyed

    fam.register_family(keyed.KEYED)  # (imported once per process: register again after a test popped it)
    try:
        assert fam.identify("Encode abcd")[0].name == "code"
        assert fam.solve("Cipher ABC") == keyed.encode("abc") and fam.level_of("Encode abcdefg") == 3
    finally:
        fam._REGISTRY.pop("code", None)
    answers = {keyed.encode(w) for w in ("abc", "abd", "abe", "bbc")}
    assert len(answers) == 4 and all(len(a) == keyed.CODE_LENGTH for a in answers)
