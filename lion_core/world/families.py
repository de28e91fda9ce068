"""Task families of the offline world: short English instructions with exact answers and levels.

A family is a few templates with slots, a sampler of slot values per difficulty level, an exact
answer and a way to read the level back from the slots. Register your own with `register_family`:

    register_family(TaskFamily(
        name="double", templates=("Double {n}", "Twice {n} is?"), slots={"n": r"\\d+"},
        make=lambda rng, level: {"n": str(rng.randrange(10 ** level))},
        answer=lambda s: str(2 * int(s["n"])),
        level_of=lambda s: len(s["n"]),
    ))

Templates keep few fixed words so that two instructions of a family differ in ROUGE-L (< 0.7) unless
their slots are equal — the novelty filter then rejects only real near-duplicates.

Plugins: a module that calls `register_family` at import time, named in the environment variable
LION_WORLD_PLUGINS (comma-separated module names), is imported when this module is — in every process,
spawned workers included (they inherit the environment). `load_plugins(names)` adds modules to the
variable and imports them; the scripts' `--world-plugin MODULE` option calls it.
`lion_core.world.keyed` is such a plugin: a keyed family that no amount of data can teach.
"""

from __future__ import annotations

import importlib
import os
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from random import Random

Slots = dict[str, str]
PLUGINS_ENV = "LION_WORLD_PLUGINS"
LETTERS = string.ascii_lowercase
VOWELS = frozenset("aeiou")


@dataclass(frozen=True)
class TaskFamily:
    """A pluggable task family. `make(rng, level)` draws slot values; `answer(slots)` is the oracle."""

    name: str
    templates: tuple[str, ...]
    slots: dict[str, str]
    make: Callable[[Random, int], Slots]
    answer: Callable[[Slots], str]
    level_of: Callable[[Slots], int]
    max_level: int = 3
    _patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns = []
        for template in self.templates:
            parts = re.split(r"\{(\w+)\}", template)
            regex = "".join(
                f"(?P<{p}>{self.slots[p]})" if i % 2 else re.escape(p) for i, p in enumerate(parts)
            )
            patterns.append(re.compile(rf"^\s*{regex}\s*$", re.IGNORECASE))
        object.__setattr__(self, "_patterns", tuple(patterns))

    def render(self, slots: Slots, template: int = 0) -> str:
        return self.templates[template % len(self.templates)].format(**slots)

    def parse(self, text: str) -> tuple[Slots, int] | None:
        """Slot values and template index if `text` is an instance of this family."""
        for index, pattern in enumerate(self._patterns):
            match = pattern.match(text)
            if match:
                return {k: v.lower() for k, v in match.groupdict().items()}, index
        return None


@dataclass(frozen=True)
class Task:
    """One world instance: the instruction, its exact answer, family and level."""

    instruction: str
    answer: str
    family: str
    level: int
    template: int = 0


_REGISTRY: dict[str, TaskFamily] = {}


def register_family(family: TaskFamily) -> None:
    """Add (or replace) a task family; every part of the world picks it up."""
    _REGISTRY[family.name] = family


def families(names: Iterable[str] | None = None) -> list[TaskFamily]:
    """Registered families, all or the named ones (unknown names raise KeyError with the choices)."""
    if names is None:
        return list(_REGISTRY.values())
    missing = [n for n in names if n not in _REGISTRY]
    if missing:
        raise KeyError(f"unknown task families {missing}; registered: {sorted(_REGISTRY)}")
    return [_REGISTRY[n] for n in names]


def word(rng: Random, length: int) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(length))


def _word_family(
    name: str, templates: tuple[str, ...], lengths: dict[int, tuple[int, int]], answer
) -> TaskFamily:
    """A family over one random word whose length sets the level."""

    def make(rng: Random, level: int) -> Slots:
        low, high = lengths[level]
        return {"w": word(rng, rng.randint(low, high))}

    def level_of(slots: Slots) -> int:
        n = len(slots["w"])
        return next((lvl for lvl, (low, high) in sorted(lengths.items()) if n <= high), max(lengths))

    return TaskFamily(
        name, templates, {"w": "[a-zA-Z]+"}, make, lambda s: answer(s["w"]), level_of, max(lengths)
    )


def _shift(w: str) -> str:
    return "".join(LETTERS[(LETTERS.index(c) + 1) % 26] for c in w)


def _add_family() -> TaskFamily:
    def make(rng: Random, level: int) -> Slots:
        low, high = 10 ** (level - 1) if level > 1 else 0, 10**level - 1
        return {"a": str(rng.randint(low, high)), "b": str(rng.randint(low, high))}

    return TaskFamily(
        "add",
        ("Add {a} and {b}", "{a} plus {b}?"),
        {"a": r"\d+", "b": r"\d+"},
        make,
        lambda s: str(int(s["a"]) + int(s["b"])),
        lambda s: max(len(s["a"]), len(s["b"])),
    )


def _repeat_family() -> TaskFamily:
    def make(rng: Random, level: int) -> Slots:
        return {"w": word(rng, rng.randint(2, 3)), "n": str(level + 1)}

    return TaskFamily(
        "repeat",
        ("Repeat {w} {n}x", "Say {w} {n}x"),
        {"w": "[a-zA-Z]+", "n": r"\d"},
        make,
        lambda s: s["w"] * int(s["n"]),
        lambda s: max(1, int(s["n"]) - 1),
    )


def _builtin() -> list[TaskFamily]:
    short = {1: (3, 4), 2: (5, 6), 3: (7, 8)}
    return [
        _word_family("reverse", ("Reverse {w}", "Spell {w} backwards"), short, lambda w: w[::-1]),
        _add_family(),
        _word_family(
            "sort", ("Alphabetize {w}", "Sort {w} alphabetically"), short, lambda w: "".join(sorted(w))
        ),
        _word_family(
            "vowels",
            ("Vowels in {w}?", "Count vowels {w}"),
            short,
            lambda w: str(sum(c in VOWELS for c in w)),
        ),
        _word_family("upper", ("Uppercase {w}", "Capitalize {w}"), short, str.upper),
        _word_family(
            "shift", ("Advance {w}", "Shift {w} forward"), {1: (2, 2), 2: (3, 4), 3: (5, 6)}, _shift
        ),
        _repeat_family(),
        _word_family(
            "length",
            ("Length of {w}?", "Letters in {w}?"),
            {1: (2, 5), 2: (6, 9), 3: (10, 14)},
            lambda w: str(len(w)),
        ),
        _word_family("copy", ("Copy {w}", "Echo {w}"), {1: (3, 5), 2: (8, 12), 3: (15, 20)}, lambda w: w),
    ]


for _family in _builtin():
    register_family(_family)


def sample_task(family: TaskFamily, rng: Random, level: int) -> Task:
    """One instance of a family at a level (capped to the family's levels), random template."""
    level = max(1, min(level, family.max_level))
    slots = family.make(rng, level)
    template = rng.randrange(len(family.templates))
    return Task(family.render(slots, template), family.answer(slots), family.name, level, template)


def sample_tasks(
    n: int, rng: Random, names: Iterable[str] | None = None, levels: Iterable[int] = (1, 2)
) -> list[Task]:
    """n distinct instructions spread uniformly over families and levels (round-robin)."""
    grid = [(f, lvl) for f in families(names) for lvl in levels]
    tasks: dict[str, Task] = {}
    attempts = 0
    while len(tasks) < n:
        family, level = grid[len(tasks) % len(grid)]
        task = sample_task(family, rng, level)
        tasks.setdefault(task.instruction.lower(), task)
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ValueError(f"cannot draw {n} distinct tasks from families {[f.name for f, _ in grid]}")
    return list(tasks.values())


def identify(text: str) -> tuple[TaskFamily, Slots, int] | None:
    """Which family an instruction belongs to, with its slots and template index."""
    for family in _REGISTRY.values():
        parsed = family.parse(text)
        if parsed is not None:
            return family, parsed[0], parsed[1]
    return None


def solve(text: str) -> str | None:
    """The exact answer to a world instruction (None when no family matches)."""
    found = identify(text)
    return found[0].answer(found[1]) if found else None


def level_of(text: str) -> int | None:
    """The difficulty level of a world instruction (None when no family matches)."""
    found = identify(text)
    return found[0].level_of(found[1]) if found else None


def plugin_names() -> list[str]:
    """The plugin modules named in LION_WORLD_PLUGINS (comma-separated; empty when unset)."""
    return [name.strip() for name in os.environ.get(PLUGINS_ENV, "").split(",") if name.strip()]


def load_plugins(names: Iterable[str] = ()) -> list[str]:
    """Add `names` to LION_WORLD_PLUGINS (so that worker processes import them too) and import every
    plugin named there; returns the plugin modules now loaded."""
    wanted = [*plugin_names(), *(n for n in names if n not in plugin_names())]
    if wanted:
        os.environ[PLUGINS_ENV] = ",".join(wanted)
    for name in wanted:
        importlib.import_module(name)
    return wanted


load_plugins()
