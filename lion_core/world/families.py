"""Task families of the offline world: short English instructions with exact answers and levels.

A family is a few templates with slots, a sampler of slot values per difficulty level, an exact
answer and a way to read the level back from the slots. Register your own with `register_family`:

    register_family(TaskFamily(
        name="double", templates=("Double {n}", "Twice {n} is?"), slots={"n": r"\\d+"},
        make=lambda rng, level: {"n": str(rng.randrange(10 ** level))},
        answer=lambda s: str(2 * int(s["n"])),
        level_of=lambda s: len(s["n"]),
    ))

`capacity(level)`, optional, is how many distinct slot values `make` draws at a level: a cell (family,
level) then holds capacity × templates distinct instructions, and `sample_tasks` stops drawing from a cell
it has emptied and refuses at once a request for more tasks than the cells hold.

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
DECIMAL = 10
REPEATED_WORD = (2, 3)  # letters of the word the repeat family repeats, at every level
# Draws in a row that bring no new task after which a cell of unknown capacity counts as exhausted.
STALL_LIMIT = 10_000


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
    capacity: Callable[[int], int] | None = None  # distinct slot values `make` draws at a level
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


def words(low: int, high: int) -> int:
    """How many distinct words of `low` to `high` letters `word` can draw."""
    return sum(len(LETTERS) ** length for length in range(low, high + 1))


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

    def capacity(level: int) -> int:
        low, high = lengths[level]
        return words(low, high)

    return TaskFamily(
        name, templates, {"w": "[a-zA-Z]+"}, make, lambda s: answer(s["w"]), level_of, max(lengths), capacity
    )


def _shift(w: str) -> str:
    return "".join(LETTERS[(LETTERS.index(c) + 1) % 26] for c in w)


def _operands(level: int) -> tuple[int, int]:
    """The range of an addend at a level: its number of digits (level 1 includes 0)."""
    return (DECIMAL ** (level - 1) if level > 1 else 0), DECIMAL**level - 1


def _add_family() -> TaskFamily:
    def make(rng: Random, level: int) -> Slots:
        low, high = _operands(level)
        return {"a": str(rng.randint(low, high)), "b": str(rng.randint(low, high))}

    def capacity(level: int) -> int:
        low, high = _operands(level)
        return (high - low + 1) ** 2

    return TaskFamily(
        "add",
        ("Add {a} and {b}", "{a} plus {b}?"),
        {"a": r"\d+", "b": r"\d+"},
        make,
        lambda s: str(int(s["a"]) + int(s["b"])),
        lambda s: max(len(s["a"]), len(s["b"])),
        capacity=capacity,
    )


def _repeat_family() -> TaskFamily:
    def make(rng: Random, level: int) -> Slots:
        return {"w": word(rng, rng.randint(*REPEATED_WORD)), "n": str(level + 1)}

    return TaskFamily(
        "repeat",
        ("Repeat {w} {n}x", "Say {w} {n}x"),
        {"w": "[a-zA-Z]+", "n": r"\d"},
        make,
        lambda s: s["w"] * int(s["n"]),
        lambda s: max(1, int(s["n"]) - 1),
        capacity=lambda level: words(*REPEATED_WORD),  # the count is fixed by the level
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


def capped_level(family: TaskFamily, level: int) -> int:
    """The level a family is actually drawn at: `level` within 1..max_level."""
    return max(1, min(level, family.max_level))


def sample_task(family: TaskFamily, rng: Random, level: int) -> Task:
    """One instance of a family at a level (capped to the family's levels), random template."""
    level = capped_level(family, level)
    slots = family.make(rng, level)
    template = rng.randrange(len(family.templates))
    return Task(family.render(slots, template), family.answer(slots), family.name, level, template)


def cell_capacity(family: TaskFamily, level: int) -> int | None:
    """How many distinct instructions a family makes at a level (None when it does not say)."""
    if family.capacity is None:
        return None
    return family.capacity(capped_level(family, level)) * len(family.templates)


def capacity(names: Iterable[str] | None = None, levels: Iterable[int] = (1, 2)) -> int | None:
    """How many distinct instructions the families make at the levels, at most (None: a family's
    capacity is unknown). Levels above a family's top count once, as its top level."""
    cells = {(f.name, capped_level(f, lvl)): f for f in families(names) for lvl in levels}
    sizes = [cell_capacity(f, lvl) for (_, lvl), f in cells.items()]
    return None if None in sizes else sum(sizes)  # type: ignore[arg-type]


@dataclass
class _Cell:
    """One (family, level) of the round-robin and what it has drawn so far."""

    family: TaskFamily
    level: int
    capacity: int | None
    seen: set[str] = field(default_factory=set)
    stalled: int = 0  # draws in a row that added no task

    def record(self, key: str, added: bool) -> None:
        if self.capacity is not None:
            self.seen.add(key)
        self.stalled = 0 if added else self.stalled + 1

    def exhausted(self) -> bool:
        """Every instruction of the cell drawn (known capacity), or STALL_LIMIT draws in a row gave no new
        task (unknown capacity)."""
        if self.capacity is not None:
            return len(self.seen) >= self.capacity
        return self.stalled >= STALL_LIMIT


def _too_many(n: int, names: list[str], levels: list[int], made: int) -> ValueError:
    return ValueError(
        f"cannot draw {n} distinct tasks: families {names} at levels {levels} make {made} distinct "
        "instructions"
    )


def sample_tasks(
    n: int, rng: Random, names: Iterable[str] | None = None, levels: Iterable[int] = (1, 2)
) -> list[Task]:
    """n distinct instructions spread uniformly over families and levels: round-robin over the cells
    (family, level), the k-th task from the k-th cell; a cell whose instructions are all drawn leaves
    the round and the others take its share. Until a cell is exhausted, the draw is the same as before
    exhausted cells were skipped. ValueError when the cells cannot make n distinct instructions."""
    chosen, levels = families(names), list(levels)
    total = capacity([f.name for f in chosen], levels)
    if total is not None and n > total:
        raise _too_many(n, [f.name for f in chosen], levels, total)
    active = [_Cell(f, lvl, cell_capacity(f, lvl)) for f in chosen for lvl in levels]
    tasks: dict[str, Task] = {}
    turn = 0
    while len(tasks) < n:
        if not active:
            raise _too_many(n, [f.name for f in chosen], levels, len(tasks))
        cell = active[turn]
        task = sample_task(cell.family, rng, cell.level)
        key = task.instruction.lower()
        added = tasks.setdefault(key, task) is task
        cell.record(key, added)
        if cell.exhausted():
            active.pop(turn)  # the next cell moves up to this turn
            turn = turn % len(active) if active else 0
        elif added:
            turn = (turn + 1) % len(active)
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
