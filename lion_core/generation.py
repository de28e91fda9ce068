"""Generation: N new instructions per iteration, hard:easy = r, each from one sampled parent.

A hard parent asks the generator for a new instruction of the same domain and task type; an easy
parent for a rarer one of the same domain. Replies pass the original post-filters (cut by the length
limit, too few words, starting with punctuation or a non-ASCII character) plus one for echoed prompt
markers, then the novelty filter (ROUGE-L F1 < threshold against the Cache Pool and every kept one).
Rounds repeat until N are kept or `generation_rounds` is spent.
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
from lion_core.llm import ChatClient, Completion, complete_all
from lion_core.novelty import NoveltyIndex
from lion_core.pools import sample
from lion_core.records import Instruction

MARKERS = ("#given instruction#", "#created instruction#", "given instruction", "created instruction")


@dataclass(frozen=True)
class GenerationRequest:
    """One new instruction from `parent` in `mode`; `variant` makes it a fresh sample."""

    mode: prompts.Mode
    parent: Instruction
    variant: int

    def messages(self) -> prompts.Messages:
        return prompts.generator_messages(self.mode, self.parent.instruction)  # as the original: no input


@dataclass
class GenerationResult:
    """Kept new instructions and what was filtered out on the way."""

    kept: list[Instruction] = field(default_factory=list)
    requested: int = 0
    postfilter_rejections: Counter = field(default_factory=Counter)
    novelty_rejections: int = 0
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


def plan(
    hard: Sequence[Instruction], easy: Sequence[Instruction], n_hard: int, n_easy: int, rng: Random, tag: str
) -> list[GenerationRequest]:
    """Requests with seeded parents; each (tag, parent, k) is a distinct variant."""
    requests = []
    for mode, parents, n in (("hard", hard, n_hard), ("easy", easy, n_easy)):
        seen: Counter[str] = Counter()
        for parent in sample(parents, n, rng):
            seen[parent.id] += 1
            requests.append(
                GenerationRequest(mode, parent, variant_id(tag, mode, parent.id, seen[parent.id]))
            )
    return requests


def postfilter(completion: Completion, min_words: int) -> str | None:
    """Why a generator reply is unusable, or None if it passes."""
    text = completion.content.strip()
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
    if any(marker in text.lower() for marker in MARKERS):
        return "echoes the prompt's markers"
    return None


Ask = Callable[[list[GenerationRequest]], Awaitable[list[Completion]]]


def asker(client: ChatClient) -> Ask:
    """Send requests concurrently through one client (the flow swaps in batched Prefect tasks)."""

    async def ask(requests: list[GenerationRequest]) -> list[Completion]:
        return await complete_all(
            client, [r.messages() for r in requests], variants=[r.variant for r in requests]
        )

    return ask


async def generate(
    ask: Ask,
    hard: Sequence[Instruction],
    easy: Sequence[Instruction],
    index: NoveltyIndex,
    *,
    n: int,
    ratio: float,
    min_words: int,
    rounds: int,
    iteration: int,
    seed: int,
) -> GenerationResult:
    """Generate until n new instructions are kept (or rounds run out); the index grows with them."""
    result = GenerationResult()
    if not hard and not easy:
        result.notes.append("no scorable instructions: nothing to generate from")
        return result
    rng = Random(f"{seed}:{iteration}")
    target_hard, target_easy, notes = split_counts(n, ratio, len(hard), len(easy))
    result.notes += notes
    for round_no in range(rounds):
        kept_hard = sum(i.origin == "hard" for i in result.kept)
        need_hard, need_easy = target_hard - kept_hard, target_easy - (len(result.kept) - kept_hard)
        if need_hard <= 0 and need_easy <= 0:
            break
        tag = f"{seed}:{iteration}:{round_no}"
        requests = plan(hard, easy, max(need_hard, 0), max(need_easy, 0), rng, tag)
        completions = await ask(requests)
        _keep(result, requests, completions, index, min_words, iteration)
        result.rounds = round_no + 1
    if len(result.kept) < n:
        result.notes.append(f"kept {len(result.kept)} of {n} after {result.rounds} rounds")
    return result


def _keep(
    result: GenerationResult,
    requests: list[GenerationRequest],
    completions: list[Completion],
    index: NoveltyIndex,
    min_words: int,
    iteration: int,
) -> None:
    """Post-filter, then novelty-filter one round's replies; kept ones join result and index."""
    result.requested += len(requests)
    passing = []
    for request, completion in zip(requests, completions):
        reason = postfilter(completion, min_words)
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
