"""Generation: N new instructions per iteration, hard:easy = r, each from one sampled parent.

A hard parent asks the generator for a new instruction of the same domain and task type; an easy
parent for a rarer one of the same domain. As in the original scripts, each request may produce
`max_tokens_per_word` tokens per word of its parent, and replies pass the original post-filters (a
blacklisted string such as "instruction", cut by the length limit, too few words, starting with
punctuation or a non-ASCII character), then the novelty filter (ROUGE-L F1 < threshold against the
Cache Pool and every kept one). Rounds repeat until N are kept (the original loops until then), up to
`rounds` rounds, stopping early after `patience` consecutive rounds that keep nothing.
"""

from __future__ import annotations

import hashlib
import math
import string
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from random import Random

from lion_core import prompts
from lion_core.chat import ChatClient, Completion, complete_all
from lion_core.config import LoopConfig
from lion_core.method.novelty import NoveltyIndex
from lion_core.method.pools import sample
from lion_core.records import Instruction

_LOOP = LoopConfig.model_fields
DEFAULT_BLACKLIST: tuple[str, ...] = tuple(_LOOP["generator_blacklist"].default_factory())  # type: ignore[misc]
DEFAULT_MAX_TOKENS_PER_WORD: float | None = _LOOP["generator_max_tokens_per_word"].default
DEFAULT_PARENT_SAMPLING: str = _LOOP["parent_sampling"].default


@dataclass(frozen=True)
class GenerationRequest:
    """One new instruction from `parent` in `mode`; `variant` makes it a fresh sample."""

    mode: prompts.Mode
    parent: Instruction
    variant: int
    max_tokens: int | None = None  # this request's token limit; None: the endpoint's max_tokens

    def messages(self) -> prompts.Messages:
        return prompts.generator_messages(self.mode, self.parent.instruction)  # as the original: no input


def max_tokens_for(parent: Instruction, per_word: float | None) -> int | None:
    """The original's limit: `per_word` tokens per (whitespace) word of the parent instruction, at
    least 1; None when per_word is None (the endpoint's max_tokens applies)."""
    if per_word is None:
        return None
    return max(1, int(len(parent.instruction.split()) * per_word))


@dataclass
class GenerationResult:
    """Kept new instructions and what was filtered out on the way."""

    kept: list[Instruction] = field(default_factory=list)
    requested: int = 0
    postfilter_rejections: Counter = field(default_factory=Counter)
    novelty_rejections: int = 0
    decontamination_rejections: int = 0  # shared n-grams with the evaluation sets
    rounds: int = 0
    notes: list[str] = field(default_factory=list)

    def stats(self) -> dict[str, object]:
        return {
            "requested": self.requested,
            "kept": len(self.kept),
            "kept_hard": sum(i.origin == "hard" for i in self.kept),
            "kept_easy": sum(i.origin == "easy" for i in self.kept),
            "postfilter_rejections": dict(self.postfilter_rejections),
            "novelty_rejections": self.novelty_rejections,
            "decontamination_rejections": self.decontamination_rejections,
            "rounds": self.rounds,
            "notes": self.notes,
        }


def variant_id(*parts: object) -> int:
    """A stable request variant for (seed, iteration, round, parent, k): distinct samples (also across
    seeds sharing a response cache), replayable on resume."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def split_counts(
    n: int, ratio: float, n_hard_parents: int, n_easy_parents: int
) -> tuple[int, int, list[str]]:
    """How many hard- and easy-derived requests (a half goes to hard); a side without parents is filled
    from the other."""
    hard = math.floor(n * ratio / (1.0 + ratio) + 0.5)
    easy = n - hard
    notes = []
    if hard and not n_hard_parents:
        notes.append(f"no hard instructions: {hard} hard-derived requests filled from easy ones")
        hard, easy = 0, n
    elif easy and not n_easy_parents:
        notes.append(f"no easy instructions: {easy} easy-derived requests filled from hard ones")
        hard, easy = n, 0
    return hard, easy, notes


def draw_parents(parents: Sequence[Instruction], n: int, rng: Random, how: str) -> list[Instruction]:
    """n parents: independent uniform draws (the original: `random.sample(pool, 1)` per request), or
    `cover`: every parent once before any is used again."""
    if how == "cover":
        return sample(parents, n, rng)
    if how != "uniform":
        raise ValueError(f"unknown parent sampling {how!r} (uniform or cover)")
    return [rng.choice(parents) for _ in range(n)] if parents else []


def plan(
    hard: Sequence[Instruction],
    easy: Sequence[Instruction],
    n_hard: int,
    n_easy: int,
    rng: Random,
    tag: str,
    *,
    max_tokens_per_word: float | None = DEFAULT_MAX_TOKENS_PER_WORD,
    parent_sampling: str = DEFAULT_PARENT_SAMPLING,
) -> list[GenerationRequest]:
    """Requests with seeded parents; each (tag, parent, k) is a distinct variant."""
    requests = []
    for mode, parents, n in (("hard", hard, n_hard), ("easy", easy, n_easy)):
        seen: Counter[str] = Counter()
        for parent in draw_parents(parents, n, rng, parent_sampling):
            seen[parent.id] += 1
            requests.append(
                GenerationRequest(
                    mode,
                    parent,
                    variant_id(tag, mode, parent.id, seen[parent.id]),
                    max_tokens_for(parent, max_tokens_per_word),
                )
            )
    return requests


def postfilter(
    completion: Completion, min_words: int, blacklist: Sequence[str] = DEFAULT_BLACKLIST
) -> str | None:
    """Why a generator reply is unusable, or None if it passes (the original's filters, in its order)."""
    text = completion.content.strip()
    lowered = text.lower()
    hit = next((word for word in blacklist if word.lower() in lowered), None)
    if hit is not None:
        return f"contains {hit!r}"
    if completion.finish_reason == "length":
        return "cut by the length limit"
    if not text:
        return "empty"
    if len(text.split()) <= min_words:
        return f"{min_words} word{'s' if min_words != 1 else ''} or fewer"
    if text[0] in string.punctuation:
        return "starts with punctuation"
    if not text[0].isascii():
        return "starts with a non-ASCII character"
    return None


Ask = Callable[[list[GenerationRequest]], Awaitable[list[Completion]]]


async def send(client: ChatClient, requests: Sequence[GenerationRequest]) -> list[Completion]:
    """The generator's replies to requests, concurrently, each with its own variant and token limit."""
    return await complete_all(
        client,
        [r.messages() for r in requests],
        variants=[r.variant for r in requests],
        max_tokens=[r.max_tokens for r in requests],
    )


def asker(client: ChatClient) -> Ask:
    """Send requests concurrently through one client (the flow swaps in batched Prefect tasks)."""

    async def ask(requests: list[GenerationRequest]) -> list[Completion]:
        return await send(client, requests)

    return ask


async def generate(
    ask: Ask,
    hard: Sequence[Instruction],
    easy: Sequence[Instruction],
    index: NoveltyIndex,
    loop: LoopConfig,
    *,
    iteration: int,
) -> GenerationResult:
    """Generate until `loop.new_per_iteration` new instructions are kept (hard:easy = `hard_easy_ratio`);
    the index grows with them. Every setting comes from the loop config.

    Stops early after `generation_rounds` rounds (None: no limit) or after `generation_patience`
    consecutive rounds that keep nothing (None: never — the original's endless loop; with neither bound
    a generator that can never pass the filters loops forever, as the original did).
    """
    result = GenerationResult()
    if not hard and not easy:
        result.notes.append("no scorable instructions: nothing to generate from")
        return result
    n, rng = loop.new_per_iteration, Random(f"{loop.seed}:{iteration}")
    target_hard, target_easy, notes = split_counts(n, loop.hard_easy_ratio, len(hard), len(easy))
    result.notes += notes
    fruitless = 0
    while loop.generation_rounds is None or result.rounds < loop.generation_rounds:
        kept_hard = sum(i.origin == "hard" for i in result.kept)
        need_hard, need_easy = target_hard - kept_hard, target_easy - (len(result.kept) - kept_hard)
        if need_hard <= 0 and need_easy <= 0:
            break
        if loop.generation_patience is not None and fruitless >= loop.generation_patience:
            result.notes.append(f"stopped after {loop.generation_patience} rounds in a row kept nothing")
            break
        requests = plan(
            hard,
            easy,
            max(need_hard, 0),
            max(need_easy, 0),
            rng,
            f"{loop.seed}:{iteration}:{result.rounds}",
            max_tokens_per_word=loop.generator_max_tokens_per_word,
            parent_sampling=loop.parent_sampling,
        )
        before = len(result.kept)
        _keep(result, requests, await ask(requests), index, loop, iteration)
        fruitless = 0 if len(result.kept) > before else fruitless + 1
        result.rounds += 1
    if len(result.kept) < n:
        result.notes.append(f"kept {len(result.kept)} of {n} after {result.rounds} rounds")
    return result


def _keep(
    result: GenerationResult,
    requests: list[GenerationRequest],
    completions: list[Completion],
    index: NoveltyIndex,
    loop: LoopConfig,
    iteration: int,
) -> None:
    """Post-filter, then novelty-filter one round's replies; kept ones join result and index."""
    result.requested += len(requests)
    passing = []
    for request, completion in zip(requests, completions):
        reason = postfilter(completion, loop.min_words, loop.generator_blacklist)
        if reason is None:
            passing.append((request, completion.content.strip()))
        else:
            result.postfilter_rejections[reason] += 1
    novelty = index.filter([text for _, text in passing])
    result.novelty_rejections += novelty.rejected
    for (request, text), kept in zip(passing, novelty.kept):
        if kept:
            number = len(result.kept) + 1
            result.kept.append(
                Instruction(
                    id=f"it{iteration}-{number:05d}",
                    instruction=text,
                    origin=request.mode,
                    iteration=iteration,
                    parent_id=request.parent.id,
                )
            )
