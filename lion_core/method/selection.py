"""Selection: which Cache Pool items count as hard (and feed the hard generator) — one named step.

The paper's rule is the default: hard iff the two-order gap ≥ τ (the labels the referee's judgements
carry). Other strategies plug in by name (`loop.selection`) without touching the loop or the flow. A
strategy is `select(pool, judgements, evidence) -> Split`; `evidence` holds what a probing strategy
asked for (PROBING): the referee's verdicts on a fresh sibling of each probed item, this iteration's and
earlier ones', which the loop obtains through the same injected effects as everything else.

- paper:     hard iff the gap on the Cache Pool item ≥ τ — an item the student was trained on;
- random:    the referee's hard count, items drawn at random (a control for the referee's choice);
- uniform:   no referee, labels drawn at the generation ratio (parents uniform: imitation); the loop
             then neither asks the student to answer the Cache Pool nor the referee to judge it;
- fresh:     hard iff the gap on a fresh sibling ≥ τ: the student fails what it was not trained on;
- learnable: fresh, and lineages whose siblings stayed hard for `learnable_patience` iterations without
             their mean gap shrinking by `learnable_min_progress` are quarantined: re-probed each
             iteration, but neither hard nor easy parents until their gap moves;
- progress:  no referee: hard iff the student's own loss on the teacher's answer fell most in this
             iteration's fine-tune (learning progress, as teacher–student curriculum learning, arXiv
             1707.00183, on the loss RHO-LOSS and instruction-following difficulty read, arXiv
             2206.07137, 2308.12032) — free with an open student.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from random import Random
from statistics import mean

from pydantic import BaseModel, ConfigDict

from lion_core.config import LoopConfig
from lion_core.method.discrimination import Split, split
from lion_core.records import Instruction, Judgement


class Probe(BaseModel):
    """A fresh sibling of a Cache Pool item (`parent_id`) and the referee's verdict on it
    (RUN/iter_K/probes.jsonl)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parent_id: str
    sibling: Instruction
    judgement: Judgement


@dataclass(frozen=True)
class Evidence:
    """What a probing strategy sees beyond the judged Cache Pool: this iteration's probes and the
    earlier iterations' (oldest first)."""

    probes: list[Probe] = field(default_factory=list)
    history: list[list[Probe]] = field(default_factory=list)
    losses: dict[str, tuple[float, float]] = field(default_factory=dict)  # id → (before, after) fine-tune


Pool = list[Instruction]
Verdicts = list[Judgement]
Selection = Callable[..., Split]  # select(pool, judgements, evidence=Evidence()) -> Split
PROBING = frozenset({"fresh", "learnable"})
SCORING = frozenset({"progress"})  # decide on the student's own loss on the teacher's answers
WITHOUT_REFEREE = frozenset({"uniform", *SCORING})


def paper(seed: int, loop: LoopConfig) -> Selection:
    """Lion's rule: hard iff teacher score − student score ≥ τ (unscorable items are excluded)."""

    def select(pool: Pool, judgements: Verdicts, evidence: Evidence | None = None) -> Split:
        return split(pool, judgements)

    return select


def _relabel(judged: Split, pool: list[Instruction], chosen: set[str], name: str) -> Split:
    """The scorable items of `judged` relabelled: hard iff chosen, in pool order."""
    scorable = {item.id for item in [*judged.hard, *judged.easy]}
    hard = [item for item in pool if item.id in chosen]
    easy = [item for item in pool if item.id in scorable and item.id not in chosen]
    stats = {**judged.stats, "hard": len(hard), "easy": len(easy), "selection": name}
    return Split(hard, easy, judged.unscorable, stats)


def random_labels(seed: int, loop: LoopConfig) -> Selection:
    """A control without the referee's choice: each scorable item is labelled hard or easy by a seeded
    coin, in the proportions the referee found (so only *which* items are hard changes, not how many)."""

    def select(pool: Pool, judgements: Verdicts, evidence: Evidence | None = None) -> Split:
        judged = split(pool, judgements)
        scorable = [*judged.hard, *judged.easy]
        Random(f"{seed}:random-labels:{len(pool)}").shuffle(scorable)
        return _relabel(judged, pool, {item.id for item in scorable[: len(judged.hard)]}, "random")

    return select


def unjudged(pool: Pool) -> Split:
    """A pool nobody judged (the imitation baseline calls no referee): every item a candidate parent."""
    return Split([], list(pool), [], {**split([], []).stats, "judged": 0})


def uniform(seed: int, loop: LoopConfig) -> Selection:
    """The referee ignored: each scorable item is hard with probability r / (1 + r) (the generation
    ratio), so both halves of generation draw their parents uniformly from the pool — imitation with
    the same generator."""
    share = loop.hard_easy_ratio / (1.0 + loop.hard_easy_ratio)

    def select(pool: Pool, judgements: Verdicts, evidence: Evidence | None = None) -> Split:
        judged = split(pool, judgements) if judgements else unjudged(pool)
        coin = Random(f"{seed}:uniform:{len(pool)}")
        chosen = {item.id for item in [*judged.hard, *judged.easy] if coin.random() < share}
        return _relabel(judged, pool, chosen, "uniform")

    return select


def probe_stats(probes: list[Probe]) -> dict[str, object]:
    """The referee's statistics over the probes (the split's mean gap, histogram, order flips)."""
    siblings = [Instruction(id=p.parent_id, instruction=p.sibling.instruction) for p in probes]
    return split(siblings, [p.judgement.model_copy(update={"id": p.parent_id}) for p in probes]).stats


def fresh_split(pool: list[Instruction], judgements: list[Judgement], probes: list[Probe]) -> Split:
    """hard/easy by the probe's label; unprobed items and unscorable probes are left out (unscorable)."""
    label = {p.parent_id: p.judgement.label for p in probes}
    groups: dict[str, list[Instruction]] = {"hard": [], "easy": [], "unscorable": []}
    for item in pool:
        groups[label.get(item.id, "unscorable")].append(item)
    on_pool = split(pool, judgements)
    agree = sum(label.get(i.id) == "hard" for i in on_pool.hard) + sum(
        label.get(i.id) == "easy" for i in on_pool.easy
    )
    stats = {
        **probe_stats(probes),
        "hard": len(groups["hard"]),
        "easy": len(groups["easy"]),
        "unscorable": len(groups["unscorable"]),
        "probed": len(probes),
        "unprobed": len(pool) - len(probes),
        "cache_pool_hard": len(on_pool.hard),
        "cache_pool_mean_gap": on_pool.stats["mean_gap"],
        "agreement_with_paper": agree / len(probes) if probes else 0.0,
        "selection": "fresh",
    }
    return Split(groups["hard"], groups["easy"], groups["unscorable"], stats)


def fresh(seed: int, loop: LoopConfig) -> Selection:
    """hard iff the student fails a fresh sibling: the gap on an instruction it was not trained on."""

    def select(pool: Pool, judgements: Verdicts, evidence: Evidence | None = None) -> Split:
        return fresh_split(pool, judgements, (evidence or Evidence()).probes)

    return select


def lineage_roots(pool: Sequence[Instruction]) -> dict[str, str]:
    """Each item's lineage root: its oldest ancestor in the pool (a seed, or itself)."""
    parent = {item.id: item.parent_id for item in pool}
    roots: dict[str, str] = {}
    for item in pool:
        node, seen = item.id, set()
        while parent.get(node) in parent and node not in seen:
            seen.add(node)
            node = parent[node]  # type: ignore[assignment]
        roots[item.id] = node
    return roots


def lineage_gaps(probes: list[Probe], roots: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Per lineage: (share of hard probes, mean probe gap) over one iteration's scorable probes."""
    groups: dict[str, list[Judgement]] = defaultdict(list)
    for probe in probes:
        if probe.judgement.gap is not None and probe.parent_id in roots:
            groups[roots[probe.parent_id]].append(probe.judgement)
    return {
        root: (mean(j.label == "hard" for j in js), mean(j.gap for j in js))  # type: ignore[misc]
        for root, js in groups.items()
    }


def stalled_lineages(
    rounds: list[dict[str, tuple[float, float]]], patience: int, min_progress: float
) -> set[str]:
    """Lineages hard (a majority of hard probes) in each of the last `patience` rounds whose mean gap
    shrank by less than `min_progress` from the first of them to the last."""
    recent = rounds[-patience:]
    if len(recent) < patience:
        return set()
    stalled = set.intersection(*(set(r) for r in recent))
    return {
        root
        for root in stalled
        if all(r[root][0] > 0.5 for r in recent) and recent[0][root][1] - recent[-1][root][1] < min_progress
    }


def learnable(seed: int, loop: LoopConfig) -> Selection:
    """fresh, with stalled lineages quarantined: neither hard nor easy parents while their siblings stay
    hard without progress (they are still probed each iteration, and released when the gap moves)."""

    def select(pool: Pool, judgements: Verdicts, evidence: Evidence | None = None) -> Split:
        evidence = evidence or Evidence()
        judged = fresh_split(pool, judgements, evidence.probes)
        roots = lineage_roots(pool)
        rounds = [lineage_gaps(p, roots) for p in [*evidence.history, evidence.probes]]
        stalled = stalled_lineages(rounds, loop.learnable_patience, loop.learnable_min_progress)
        quarantined = {item.id for item in pool if roots[item.id] in stalled}
        hard = [i for i in judged.hard if i.id not in quarantined]
        easy = [i for i in judged.easy if i.id not in quarantined]
        stats = {
            **judged.stats,
            "hard": len(hard),
            "easy": len(easy),
            "quarantined": len(quarantined),
            "quarantined_lineages": len(stalled),
            "selection": "learnable",
        }
        return Split(hard, easy, judged.unscorable, stats)

    return select


def progress(seed: int, loop: LoopConfig) -> Selection:
    """No referee: the items whose loss (the student's own, on the teacher's answer) fell most in this
    iteration's fine-tune are hard — the student is learning them: more of the same task — the share
    r / (1 + r) of them; the rest are easy (rarer siblings). Items without a finite loss are left out."""
    share = loop.hard_easy_ratio / (1.0 + loop.hard_easy_ratio)

    def select(pool: Pool, judgements: Verdicts, evidence: Evidence | None = None) -> Split:
        losses = (evidence or Evidence()).losses
        scored = [i for i in pool if i.id in losses and all(map(math.isfinite, losses[i.id]))]
        drop = {i.id: losses[i.id][0] - losses[i.id][1] for i in scored}
        ranked = sorted(scored, key=lambda i: -drop[i.id])  # stable: ties keep pool order
        chosen = {i.id for i in ranked[: math.floor(share * len(ranked) + 0.5)]}
        hard = [i for i in scored if i.id in chosen]
        easy = [i for i in scored if i.id not in chosen]
        stats = {
            **unjudged([]).stats,
            "hard": len(hard),
            "easy": len(easy),
            "unscorable": len(pool) - len(scored),
            "selection": "progress",
            "mean_loss_drop": mean(drop.values()) if drop else 0.0,
            "mean_loss_after": mean(losses[i.id][1] for i in scored) if scored else 0.0,
        }
        return Split(hard, easy, [i for i in pool if i.id not in drop], stats)

    return select


SELECTIONS: dict[str, Callable[[int, LoopConfig], Selection]] = {
    "paper": paper,
    "random": random_labels,
    "uniform": uniform,
    "fresh": fresh,
    "learnable": learnable,
    "progress": progress,
}


def selection(name: str, seed: int, loop: LoopConfig | None = None) -> Selection:
    """The strategy registered under `name` (KeyError lists the known ones), with its settings from
    `loop` (the defaults when None)."""
    if name not in SELECTIONS:
        raise KeyError(f"unknown selection {name!r}; one of {sorted(SELECTIONS)}")
    return SELECTIONS[name](seed, loop or LoopConfig())


def needs_referee(name: str) -> bool:
    """Whether the strategy reads the referee's verdicts (all but `uniform`, the imitation baseline)."""
    return name not in WITHOUT_REFEREE


def needs_losses(name: str) -> bool:
    """Whether the strategy decides on the student's loss before and after the iteration's fine-tune."""
    return name in SCORING


def needs_probes(name: str) -> bool:
    """Whether the strategy judges fresh siblings (the loop then probes before selecting)."""
    return name in PROBING


def probe_sample(pool: list[Instruction], n: int | None, seed: int, k: int) -> list[Instruction]:
    """The items to probe: all (n None or ≥ the pool), or a seeded sample of n stratified by origin
    (each origin in proportion to its share of the pool), in pool order."""
    if n is None or n >= len(pool):
        return list(pool)
    rng = Random(f"{seed}:probe-sample:{k}")
    strata: dict[str, list[Instruction]] = defaultdict(list)
    for item in pool:
        strata[item.origin].append(item)
    chosen: set[str] = set()
    for members in strata.values():
        take = round(n * len(members) / len(pool))
        chosen.update(item.id for item in rng.sample(members, min(take, len(members))))
    return [item for item in pool if item.id in chosen]
