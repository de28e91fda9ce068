"""The world at the paper's scale: 52K distinct seed tasks, draws of the demo's size unchanged, capacity
errors at once, and `lion world serve` / `sample` without the student's stack (issue 15)."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from random import Random

import pytest
from typer.testing import CliRunner

from lion_cli.main import EXIT_BAD_INPUT, app
from lion_core.world import families as fam

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


def test_lion_world_sample_draws_the_papers_seed_size_and_refuses_too_many() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["world", "sample", "--n", str(PAPER_SEED_SIZE)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len({json.loads(line)["instruction"].lower() for line in lines}) == PAPER_SEED_SIZE
    refused = runner.invoke(app, ["world", "sample", "--n", "201", "--family", "add", "--level", "1"])
    assert refused.exit_code == EXIT_BAD_INPUT
    assert "make 200 distinct" in " ".join(refused.output.split())
    assert "Traceback" not in refused.output


# ----------------------------------------------------------------------------- what the world loads

STUDENT_STACK = ("torch", "transformers")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loaded_after(argv: list[str], prelude: str = "") -> list[str]:
    """The student-stack modules loaded after `lion *argv` ran in a fresh interpreter."""
    probe = (
        "import runpy, sys\n"
        f"{prelude}"
        f"sys.argv = ['lion', *{argv!r}]\n"
        "try:\n    runpy.run_module('lion_cli', run_name='__main__')\n"
        "except SystemExit as done:\n    assert done.code in (0, None), done.code\n"
        f"print(sorted(m for m in {STUDENT_STACK!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_lion_world_sample_loads_neither_torch_nor_transformers() -> None:
    assert loaded_after(["world", "sample", "--n", "5"]) == []


def test_a_serving_world_loads_neither_torch_nor_transformers() -> None:
    port = free_port()
    # Instead of sleeping until interrupted, the served world answers a teacher and a generator request,
    # then is interrupted as by Ctrl-C.
    prelude = (
        "import json, types, urllib.request\n"
        "import lion_cli.world as world_cli\n"
        "from lion_core import prompts\n"
        "def ask(messages):\n"
        "    body = json.dumps({'model': 'world', 'messages': messages}).encode()\n"
        f"    request = urllib.request.Request('http://127.0.0.1:{port}/v1/chat/completions', body,"
        " {'Content-Type': 'application/json'})\n"
        "    reply = urllib.request.urlopen(request, timeout=10)\n"
        "    assert reply.headers['x-ratelimit-limit-tokens'] == '100000', dict(reply.headers)\n"
        "    return json.load(reply)\n"
        "def interrupt(seconds):\n"
        "    answer = ask(prompts.teacher_messages('Reverse abc'))['choices'][0]['message']['content']\n"
        "    assert answer == 'cba', answer\n"
        "    ask(prompts.generator_messages('hard', 'Reverse abc'))\n"
        "    raise KeyboardInterrupt\n"
        "world_cli.time = types.SimpleNamespace(sleep=interrupt)\n"
    )
    serve = ["world", "serve", "--port", str(port), "--rate-limit-tpm", "100000"]
    assert loaded_after(serve, prelude) == []  # and the limit set on the command line is announced


def test_lion_world_families_shows_how_many_distinct_instructions_each_level_holds() -> None:
    result = CliRunner().invoke(app, ["world", "families"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "add levels 1–3 (200 / 16,200 / 1,620,000 distinct)" in text
    assert "shift levels 1–3 (1,352 / 949,104 / 641,594,304 distinct)" in text
