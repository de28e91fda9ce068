"""Agreement of sampled judging with full judging (config `referee.sample`), measured on a finished run
that judged its whole Cache Pool (the replication's `lion` arm).

For each round, the referee's verdicts on the whole Cache Pool are at hand; judging a sample gives, for
the sampled items, exactly those verdicts (a verdict depends on the item's answers, not on which other
items are judged), so a sampled round is replayed without a request: the sample lion_core.method.sampling
draws, restricted labels, parents drawn only from the judged hard items. What generation receives is
compared through the distribution of its expected hard parents over the world's cells (family × level):
generation draws parents uniformly from the hard items, so a cell's expected share of hard parents is
its share of the hard items. Total-variation distance TV(p, q) = ½ Σ |p_c − q_c|.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from lion_core.config import LoopConfig, RefereeSample
from lion_core.method import sampling
from lion_core.records import Instruction, Judgement, read_jsonl
from lion_core.run.rundir import RunDir
from lion_core.world.families import identify

# The sample settings replayed on every full-judging round: auto at several multiples, fixed sizes.
SETTINGS: dict[str, RefereeSample] = {
    "auto ×1": RefereeSample(parents_multiple=1.0),
    "auto ×2": RefereeSample(parents_multiple=2.0),
    "auto ×4": RefereeSample(parents_multiple=4.0),
    "older 50": RefereeSample(size=50, min_per_stratum=10),
    "older 100": RefereeSample(size=100, min_per_stratum=10),
    "older 200": RefereeSample(size=200, min_per_stratum=10),
}


def cell(item: Instruction) -> str:
    """family@Llevel of a world instruction ('other' when no family claims it)."""
    found = identify(item.instruction)
    return f"{found[0].name}@L{found[0].level_of(found[1])}" if found else "other"


def parent_shares(hard: list[Instruction]) -> dict[str, float]:
    """Each cell's share of the hard items: its expected share of the hard parents drawn."""
    counts = Counter(cell(item) for item in hard)
    total = sum(counts.values())
    return {c: n / total for c, n in sorted(counts.items())} if total else {}


def tv(p: dict[str, float], q: dict[str, float]) -> float:
    """Total-variation distance of two distributions over cells."""
    return 0.5 * sum(abs(p.get(c, 0.0) - q.get(c, 0.0)) for c in {*p, *q})


def replay(run: RunDir, k: int, loop: LoopConfig, share: float | None) -> dict[str, Any]:
    """Round k of a full-judging run replayed with every sample setting: parent shares and judged items
    (`share`: the hard share the previous round measured, for the auto settings)."""
    pool = read_jsonl(run.iteration(k).file("cache_pool"), Instruction)
    label = {j.id: j.label for j in read_jsonl(run.iteration(k).file("judgements"), Judgement)}
    full = [i for i in pool if label[i.id] == "hard"]
    out: dict[str, Any] = {"full": parent_shares(full), "pool": len(pool), "sampled": {}}
    for name, setting in SETTINGS.items():
        judged = sampling.draw(pool, sampling.plan(pool, k, loop, setting, share), loop.seed, k)
        hard = [i for i in judged if label[i.id] == "hard"]
        out["sampled"][name] = {"shares": parent_shares(hard), "judged": len(judged), "hard": len(hard)}
    return out


def replay_run(root: Path, loop: LoopConfig, rounds: int, summaries: list[dict[str, Any]]) -> list[dict]:
    """Every round of a finished full-judging run, replayed (see `replay`)."""
    run = RunDir(root)
    shares = [None, *(s["hard_share"] for s in summaries)]
    return [replay(run, k, loop, shares[k - 1]) for k in range(1, rounds + 1)]


def agreement(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean TV of each setting against full judging (same run, same round), and the noise floor: the
    mean TV between two full-judging runs of different seeds (same round)."""
    replays = [r for r in runs if r.get("replay")]
    rounds = min(len(r["replay"]) for r in replays) if replays else 0
    settings: dict[str, Any] = {}
    for name in SETTINGS:
        rows = [(rnd["full"], rnd["sampled"][name]) for r in replays for rnd in r["replay"][:rounds]]
        settings[name] = {
            "tv": sum(tv(full, s["shares"]) for full, s in rows) / len(rows) if rows else 0.0,
            "judged_share": sum(s["judged"] for _, s in rows)
            / max(1, sum(rnd["pool"] for r in replays for rnd in r["replay"][:rounds])),
        }
    pairs = [
        tv(a["replay"][k]["full"], b["replay"][k]["full"])
        for i, a in enumerate(replays)
        for b in replays[i + 1 :]
        for k in range(rounds)
    ]
    return {"settings": settings, "noise_floor": sum(pairs) / len(pairs) if pairs else 0.0}
