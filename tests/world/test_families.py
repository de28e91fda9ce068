"""lion_core/world/families.py: exact oracles, families with levels, user and plugin families; the paper's
scale (52K distinct seed tasks, draws of the demo's size unchanged, capacity errors at once)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from random import Random

import pytest

from lion_core import prompts
from lion_core.world import families as fam
from lion_core.world.roles import teacher_reply
from tests.support.paths import REPO

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

    (tmp_path / "triple_plugin.py").write_text(PLUGIN)
    env = {
        **os.environ,
        fam.PLUGINS_ENV: "triple_plugin",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
    }
    # a fresh interpreter, as a spawned worker is: the variable alone brings the family in
    done = subprocess.run(
        [sys.executable, "-c", REACHES_EVERY_PART], cwd=REPO, env=env, capture_output=True, text=True
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


PAPER_SEED_SIZE = 52_000
DEMO_LEVELS = (1, 2)
ALL_LEVELS = (1, 2, 3)
FAST_ERROR_S = 2.0  # an impossible request is refused from the capacities, not after minutes of drawing
# sha256 of "instruction\tanswer\tfamily\tlevel\ttemplate\n" per task, recorded from the sampler as it
# was before it learnt to skip exhausted cells (commit 122c74b). The demo's seed pool (1,000, seed 0), its
# held-out draw (seed 1,000,003), `lion eval`'s world draws (seed 7,919) and the replication's benchmarks
# depend on these draws staying exactly what they were.
PINNED_DRAWS = [
    (180, 0, None, DEMO_LEVELS, "be81bb618d624bd2ce16682881c5b1f09b8403ab30f72db5833dcb103d1d92d9"),
    (1000, 0, None, DEMO_LEVELS, "e8d654fec6047c7d1f7d25f28d8d018c87775aa5a999d61a4826a2dac77cb898"),
    (2000, 0, None, DEMO_LEVELS, "aecaacfaab2aaa76e0284959e7123809fffb8858184c43cce25962ee57cac578"),
    (2000, 7919, None, DEMO_LEVELS, "970486ae2d81a01b9300b7498c847585374584b61132a06c8f56a5f3f122ca3c"),
    (2000, 0, None, ALL_LEVELS, "d36c0590d794246d060012bd5f2940bc1ba9caf4dfbbcb0fddf632f832b47631"),
    (3500, 0, None, DEMO_LEVELS, "a0e577dc84fa1ac2bf28bf4f1cbb3748409f776e24b13d897446057107779cf4"),
    (600, 0, ("length",), (1,), "f6814d9084b3cb0dcc856fafdc6b652a5cc4b20da505fc112339409e5907cde3"),
]


def capacity_of(name: str, level: int) -> int | None:
    return fam.cell_capacity(fam.families([name])[0], level)


def digest(tasks: list[fam.Task]) -> str:
    h = hashlib.sha256()
    for t in tasks:
        h.update(f"{t.instruction}\t{t.answer}\t{t.family}\t{t.level}\t{t.template}\n".encode())
    return h.hexdigest()


@pytest.mark.parametrize(("n", "seed", "names", "levels", "expected"), PINNED_DRAWS)
def test_draws_of_the_demos_size_are_what_they_were(n, seed, names, levels, expected) -> None:
    assert digest(fam.sample_tasks(n, Random(seed), names, levels)) == expected


def test_the_papers_seed_size_is_drawn_distinct_and_spread_over_the_cells() -> None:
    tasks = fam.sample_tasks(PAPER_SEED_SIZE, Random(0), levels=DEMO_LEVELS)
    assert len({t.instruction.lower() for t in tasks}) == PAPER_SEED_SIZE
    assert all(fam.solve(t.instruction) == t.answer for t in tasks[:: PAPER_SEED_SIZE // 500])
    per_cell = Counter((t.family, t.level) for t in tasks)
    full = {
        cell
        for cell, count in per_cell.items()
        if count == fam.cell_capacity(fam.families([cell[0]])[0], cell[1])
    }
    assert ("add", 1) in full  # 200 instructions: exhausted long before 52K
    shares = [count for cell, count in per_cell.items() if cell not in full]
    assert max(shares) - min(shares) <= 1  # the other cells take the exhausted ones' share evenly


def test_an_exhausted_cell_stops_being_drawn_and_the_draw_before_it_is_unchanged() -> None:
    before = fam.sample_tasks(3500, Random(0), levels=DEMO_LEVELS)
    after = fam.sample_tasks(5000, Random(0), levels=DEMO_LEVELS)
    assert after[:3500] == before
    assert sum(t.family == "add" and t.level == 1 for t in after) == capacity_of("add", 1)


def test_capacities_count_the_distinct_instructions_of_each_cell() -> None:
    add, shift, repeat = fam.families(["add", "shift", "repeat"])
    assert fam.cell_capacity(add, 1) == 10 * 10 * len(add.templates)
    assert fam.cell_capacity(add, 2) == 90 * 90 * len(add.templates)
    assert fam.cell_capacity(shift, 1) == 26**2 * len(shift.templates)
    assert fam.cell_capacity(repeat, 1) == (26**2 + 26**3) * len(repeat.templates)
    assert fam.cell_capacity(add, 7) == fam.cell_capacity(add, add.max_level)  # levels are capped
    whole = {t.instruction.lower() for t in fam.sample_tasks(200, Random(1), ["add"], (1,))}
    assert len(whole) == fam.cell_capacity(add, 1)  # a cell can be drawn to its last instruction
    assert fam.capacity(["add"], (1,)) == fam.cell_capacity(add, 1)
    assert fam.capacity(None, DEMO_LEVELS) >= PAPER_SEED_SIZE
    assert fam.capacity(None, ALL_LEVELS) >= PAPER_SEED_SIZE


def test_more_tasks_than_the_families_make_is_refused_at_once_with_the_count() -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"make 1552 distinct"):
        fam.sample_tasks(2000, Random(0), ["add", "shift"], (1,))
    assert time.perf_counter() - start < FAST_ERROR_S


def test_a_family_without_a_capacity_is_drawn_until_it_stops_giving_new_tasks() -> None:
    digit = fam.TaskFamily(
        name="digit-test",
        templates=("Digit {n}",),
        slots={"n": r"\d+"},
        make=lambda rng, level: {"n": str(rng.randrange(10**level))},
        answer=lambda s: s["n"],
        level_of=lambda s: len(s["n"]),
    )
    fam.register_family(digit)
    try:
        assert fam.capacity(["digit-test"], (1,)) is None
        assert len(fam.sample_tasks(10, Random(0), ["digit-test"], (1,))) == 10
        with pytest.raises(ValueError, match=r"make 10 distinct"):
            fam.sample_tasks(11, Random(0), ["digit-test"], (1,))
        mixed = fam.sample_tasks(100, Random(0), ["digit-test", "reverse"], (1,))
        assert Counter(t.family for t in mixed) == {"digit-test": 10, "reverse": 90}
    finally:
        fam._REGISTRY.pop("digit-test")
