"""A world plugin: the keyed family `code`, whose answer is a secret function of the word.

"Encode abcd" → three letters from a keyed hash of the word. Nothing in an instruction reveals the key,
so no amount of data teaches a student the family: an item can be memorised, never generalised. It is
the lab's negative control (a cell out of reach by construction), loaded as a plugin:

    LION_WORLD_PLUGINS=lion_core.world.keyed lion world sample --n 5
    .venv/bin/python benchmarks/replication.py --world-plugin lion_core.world.keyed
"""

from __future__ import annotations

import hashlib
from random import Random

from lion_core.world.families import LETTERS, Slots, TaskFamily, register_family, word, words

KEY = "lion-world-key"
CODE_LENGTH = 3
LENGTHS = {1: (3, 4), 2: (5, 6), 3: (7, 8)}  # word length per level (26^3 words and more per level)


def encode(w: str) -> str:
    """The secret answer: CODE_LENGTH letters from a keyed hash of the word."""
    digest = hashlib.sha256(f"{KEY}:{w.lower()}".encode()).digest()
    return "".join(LETTERS[b % len(LETTERS)] for b in digest[:CODE_LENGTH])


def _make(rng: Random, level: int) -> Slots:
    low, high = LENGTHS[level]
    return {"w": word(rng, rng.randint(low, high))}


def _level(slots: Slots) -> int:
    n = len(slots["w"])
    return next((lvl for lvl, (_, high) in sorted(LENGTHS.items()) if n <= high), max(LENGTHS))


KEYED = TaskFamily(
    "code",
    ("Encode {w}", "Cipher {w}"),
    {"w": "[a-zA-Z]+"},
    _make,
    lambda s: encode(s["w"]),
    _level,
    capacity=lambda level: words(*LENGTHS[level]),
)
register_family(KEYED)
