"""Decontamination: generated instructions must not copy the evaluation sets the student is judged on.

The lm-evaluation-harness convention: text is normalised (lower case, punctuation removed, whitespace
collapsed) and split into words; an instruction is contaminated when it shares 13-grams (n-grams of
`ngram` words) with an evaluation question — more than `max_overlap` of its own n-grams (0: any one).
An evaluation question shorter than n words is matched whole (its normalised text inside the
instruction's). Generation rejects contaminated instructions as it rejects near-duplicates, and counts
them per iteration (`decontamination_rejections`). `lion decontaminate FILE` checks any instruction file.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lion_core.config import DecontaminationConfig
from lion_core.method.generation import GenerationResult
from lion_core.method.novelty import NoveltyIndex, NoveltyResult
from lion_core.records import read_instructions

PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
REJECTED_SCORE = 1.0  # the novelty score reported for a contaminated candidate (rejected outright)


def words(text: str) -> tuple[str, ...]:
    """Normalised words: lower case, punctuation removed, split on whitespace."""
    return tuple(PUNCTUATION.sub(" ", text.lower()).split())


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@dataclass
class EvalNgrams:
    """The n-grams of evaluation questions (and the whole text of questions shorter than n words)."""

    n: int
    grams: set[tuple[str, ...]] = field(default_factory=set)
    short: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, texts: Iterable[str], n: int) -> EvalNgrams:
        found = cls(n)
        for text in texts:
            tokens = words(text)
            if len(tokens) >= n:
                found.grams |= ngrams(tokens, n)
            elif tokens:
                found.short.add(" ".join(tokens))
        return found

    @classmethod
    def from_files(cls, paths: Iterable[Path], n: int) -> EvalNgrams:
        """From question files (FastChat, self-instruct, Alpaca, JSONL); each question's text and input."""
        return cls.of((item.text for path in paths for item in read_instructions(Path(path))), n)

    def overlap(self, text: str) -> float:
        """The share of the text's n-grams found in the evaluation sets (1.0 if it contains a short
        question whole)."""
        tokens = words(text)
        joined = f" {' '.join(tokens)} "
        if any(f" {q} " in joined for q in self.short):
            return 1.0
        own = ngrams(tokens, self.n)
        return len(own & self.grams) / len(own) if own else 0.0

    def contaminated(self, text: str, max_overlap: float) -> bool:
        return self.overlap(text) > max_overlap


class Index(Protocol):
    """What generation asks of its novelty index."""

    def filter(self, candidates: list[str]) -> NoveltyResult: ...


class DecontaminatedIndex:
    """A novelty index that first rejects candidates contaminated by the evaluation sets; the rest go
    to the novelty index (contaminated ones never join it). `rejected` counts the contaminated."""

    def __init__(self, index: Index, sets: EvalNgrams, max_overlap: float) -> None:
        self.index, self.sets, self.max_overlap = index, sets, max_overlap
        self.rejected = 0

    def filter(self, candidates: list[str]) -> NoveltyResult:
        clean = [not self.sets.contaminated(c, self.max_overlap) for c in candidates]
        self.rejected += clean.count(False)
        inner = self.index.filter([c for c, ok in zip(candidates, clean) if ok])
        verdicts = iter(zip(inner.kept, inner.max_score))
        kept, scores = [], []
        for ok in clean:
            keep, score = next(verdicts) if ok else (False, REJECTED_SCORE)
            kept.append(keep)
            scores.append(score)
        return NoveltyResult(kept=kept, max_score=scores)


@dataclass(frozen=True)
class Finding:
    """One contaminated instruction of a checked file."""

    id: str
    overlap: float
    instruction: str


def check_file(path: Path, sets: EvalNgrams, max_overlap: float) -> tuple[int, list[Finding]]:
    """(instructions read, the contaminated ones) of an instruction file."""
    items = read_instructions(path)
    found = [Finding(i.id, sets.overlap(i.text), i.instruction) for i in items]
    return len(items), [f for f in found if f.overlap > max_overlap]


def decontaminated(index: NoveltyIndex, config: DecontaminationConfig) -> Index:
    """The novelty index behind a decontamination check of the configured sets (unchanged when off)."""
    if not config.enabled:
        return index
    sets = EvalNgrams.from_files(config.eval_sets, config.ngram)
    return DecontaminatedIndex(index, sets, config.max_overlap)


def counted(result: GenerationResult, index: Index) -> GenerationResult:
    """Contaminated candidates counted as such, not as near-duplicates (the index reported both)."""
    if isinstance(index, DecontaminatedIndex):
        result.decontamination_rejections = index.rejected
        result.novelty_rejections -= index.rejected
    return result
