"""An iteration's outcome and its statistics: what RUN/iter_K/summary.json holds (the report, the
per-iteration table and a resumed run read these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from lion_core.method.discrimination import Split
from lion_core.method.generation import GenerationResult
from lion_core.method.pools import Pools
from lion_core.method.sampling import Estimate
from lion_core.records import Judgement, Response
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
    "mean_loss_drop",
    "mean_loss_after",
)
REFEREE_STATS = ("hard", "easy", "unscorable", "mean_gap", "order_disagreement", "gap_histogram")


@dataclass
class Discrimination:
    """The judged Cache Pool (`estimate`: the whole pool's hard share when only a sample was judged)."""

    teacher: list[Response]
    student: list[Response]
    judgements: list[Judgement]
    split: Split
    estimate: Estimate | None = None
    second_order_changes: float = (
        0.0  # share of labels the second order changed (lion_core.method.discrimination)
    )

    @property
    def hard_share(self) -> float:
        """The Cache Pool's hard share: the sample's estimate, or the judged pool's share."""
        return self.estimate.hard_share if self.estimate is not None else self.split.hard_share


@dataclass
class IterationOutcome:
    """Everything one iteration produced (`discrimination.teacher`: the teacher's answers to the whole
    Cache Pool; `summary`: what RUN/iter_K/summary.json holds, once summarized)."""

    iteration: int
    pools: Pools
    train: TrainResult
    discrimination: Discrimination
    generation: GenerationResult | None  # None when the loop stopped before generation
    next_pools: Pools | None  # None when the loop stops here
    stopped: str | None  # why the loop stops after this iteration
    notes: list[str] = field(default_factory=list)
    preference_pairs: int = 0  # pairs the preference stage trained on (0: no stage)
    preference: TrainResult | None = None  # the preference stage (student.objective: sft+dpo)
    summary: Summary = field(default_factory=dict)  # type: ignore[assignment]


class TrainSummary(TypedDict):
    """The fine-tune of the iteration."""

    steps: int
    examples: int
    seconds: float
    loss_first: float | None
    loss_last: float | None
    losses: list[float]  # per optimizer step: the report's loss curve


class Summary(TypedDict, total=False):
    """RUN/iter_K/summary.json. The generation fields are absent when the loop stopped before
    generation; `seconds` and `stage_seconds` are added when the iteration's files are written."""

    iteration: int
    final_imitation: bool  # loop.final_imitation's round: imitation only (no referee or generator fields)
    train_pool: int
    cache_pool: int
    hard: int
    easy: int
    unscorable: int
    mean_gap: float
    order_disagreement: float
    gap_histogram: dict[str, int]
    identical: int  # verdicts without a referee request
    judged: int  # Cache Pool items the referee judged (all, a sample, or none for the imitation baseline)
    hard_share: float  # of the whole Cache Pool: a sample's stratified estimate when one was judged
    hard_share_ci: list[float] | None  # the estimate's confidence interval (None when all were judged)
    second_order_changes: float  # share of judged labels the second order changed
    selection: dict[str, Any]
    generated: int
    requested: int
    novelty_rejections: int
    decontamination_rejections: int
    postfilter_rejections: dict[str, int]
    notes: list[str]
    train: TrainSummary
    preference: dict[str, Any] | None  # the preference stage's pairs and training (None: no stage)
    usage: dict[str, Any]
    heldout: dict[str, Any] | None
    stopped: str | None
    seconds: float
    stage_seconds: dict[str, float]


def generation_summary(gen: GenerationResult) -> dict[str, Any]:
    """What generation adds to the summary."""
    return {
        "generated": len(gen.kept),
        "requested": gen.requested,
        "novelty_rejections": gen.novelty_rejections,
        "decontamination_rejections": gen.decontamination_rejections,
        "postfilter_rejections": dict(gen.postfilter_rejections),
    }


def train_summary(train: TrainResult) -> TrainSummary:
    return {
        "steps": train.steps,
        "examples": train.examples,
        "seconds": round(train.seconds, 2),
        "loss_first": train.losses[0] if train.losses else None,
        "loss_last": train.losses[-1] if train.losses else None,
        "losses": list(train.losses),
    }


def summarize(outcome: IterationOutcome, usage: dict[str, Any], heldout: dict[str, Any] | None) -> Summary:
    """The iteration's statistics (RUN/iter_K/summary.json; the report is rendered from these)."""
    judged = outcome.discrimination
    split, estimate = judged.split, judged.estimate
    summary: dict[str, Any] = {
        "iteration": outcome.iteration,
        "train_pool": len(outcome.pools.train_pool),
        "cache_pool": len(outcome.pools.cache_pool),
        **{key: split.stats[key] for key in REFEREE_STATS},
        "identical": split.stats.get("identical", 0),
        "judged": len(judged.judgements),
        "hard_share": judged.hard_share,
        "hard_share_ci": [estimate.low, estimate.high] if estimate is not None else None,
        "second_order_changes": judged.second_order_changes,
        "selection": {key: value for key, value in split.stats.items() if key in SELECTION_STATS},
        **({} if outcome.generation is None else generation_summary(outcome.generation)),
        "notes": outcome.notes,
        "train": train_summary(outcome.train),
        "preference": None
        if outcome.preference is None
        else {"pairs": outcome.preference_pairs, **train_summary(outcome.preference)},
        "usage": usage,
        "heldout": heldout,
        "stopped": outcome.stopped,
    }
    return Summary(**summary)  # type: ignore[typeddict-item]


def final_imitation_summary(
    k: int, pools: Pools, train: TrainResult, notes: list[str], usage: dict[str, Any], heldout: dict | None
) -> Summary:
    """The final imitation round's row (loop.final_imitation): what it trained on, no judged or generated
    figures (it judges and generates nothing)."""
    summary: dict[str, Any] = {
        "iteration": k,
        "final_imitation": True,
        "train_pool": len(pools.train_pool),
        "cache_pool": len(pools.cache_pool),
        "judged": 0,
        "notes": notes,
        "train": train_summary(train),
        "usage": usage,
        "heldout": heldout,
        "stopped": None,
    }
    return Summary(**summary)  # type: ignore[typeddict-item]
