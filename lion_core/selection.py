"""Selection: which Cache Pool items count as hard (and feed the hard generator) — one named step.

The paper's rule is the default: hard iff the two-order gap ≥ τ (the labels the referee's judgements
carry). Other strategies plug in by name (`loop.selection`) without touching the loop or the flow: a
strategy receives the judged Cache Pool and returns a Split.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from lion_core.discrimination import Split, split
from lion_core.records import Instruction, Judgement

Selection = Callable[[list[Instruction], list[Judgement]], Split]


def paper(seed: int) -> Selection:
    """Lion's rule: hard iff teacher score − student score ≥ τ (unscorable items are excluded)."""
    return split


def random_labels(seed: int) -> Selection:
    """A control without the referee: each scorable item is labelled hard or easy by a seeded coin, in
    the proportions the referee found (so only *which* items are hard changes, not how many)."""

    def select(pool: list[Instruction], judgements: list[Judgement]) -> Split:
        judged = split(pool, judgements)
        scorable = [*judged.hard, *judged.easy]
        Random(f"{seed}:random-labels:{len(pool)}").shuffle(scorable)
        chosen = {item.id for item in scorable[: len(judged.hard)]}
        scorable_ids = {item.id for item in scorable}
        hard = [item for item in pool if item.id in chosen]
        easy = [item for item in pool if item.id in scorable_ids and item.id not in chosen]
        return Split(hard, easy, judged.unscorable, {**judged.stats, "selection": "random"})

    return select


SELECTIONS: dict[str, Callable[[int], Selection]] = {"paper": paper, "random": random_labels}


def selection(name: str, seed: int) -> Selection:
    """The strategy registered under `name` (KeyError lists the known ones)."""
    if name not in SELECTIONS:
        raise KeyError(f"unknown selection {name!r}; one of {sorted(SELECTIONS)}")
    return SELECTIONS[name](seed)
