"""An iteration's statistics: what RUN/iter_K/summary.json holds (the report is rendered from these)."""

from __future__ import annotations

from typing import Any

from lion_core.method.discrimination import Split
from lion_core.method.generation import GenerationResult
from lion_core.method.pools import Pools
from lion_core.student.train import TrainResult

# What a strategy reports beyond the referee's split statistics (summary.json's "selection").
SELECTION_STATS = (
    "selection",
    "probed",
    "unprobed",
    "cache_pool_hard",
    "cache_pool_mean_gap",
    "agreement_with_paper",
    "quarantined",
    "quarantined_lineages",
)


def summarize(
    k: int,
    pools: Pools,
    split: Split,
    gen: GenerationResult | None,
    notes: list[str],
    train: TrainResult,
    usage: dict,
    heldout: dict | None,
    stopped: str | None,
) -> dict[str, Any]:
    """The iteration's statistics (RUN/iter_K/summary.json; the report is rendered from these)."""
    return {
        "iteration": k,
        "train_pool": len(pools.train_pool),
        "cache_pool": len(pools.cache_pool),
        **{
            key: split.stats[key]
            for key in ("hard", "easy", "unscorable", "mean_gap", "order_disagreement", "gap_histogram")
        },
        "identical": split.stats.get("identical", 0),  # verdicts without a referee request
        "hard_share": split.hard_share,
        "selection": {key: value for key, value in split.stats.items() if key in SELECTION_STATS},
        **(
            {}
            if gen is None
            else {
                "generated": len(gen.kept),
                "requested": gen.requested,
                "novelty_rejections": gen.novelty_rejections,
                "decontamination_rejections": gen.decontamination_rejections,
                "postfilter_rejections": dict(gen.postfilter_rejections),
            }
        ),
        "notes": notes,
        "train": {
            "steps": train.steps,
            "examples": train.examples,
            "seconds": round(train.seconds, 2),
            "loss_first": train.losses[0] if train.losses else None,
            "loss_last": train.losses[-1] if train.losses else None,
            "losses": list(train.losses),  # per optimizer step: the report's loss curve
        },
        "usage": usage,
        "heldout": heldout,
        "stopped": stopped,
    }
