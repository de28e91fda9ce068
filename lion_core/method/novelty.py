"""Fast, exact ROUGE-L novelty filter for generated instructions.

Lion keeps a generated instruction only if its ROUGE-L F1 against every Cache Pool instruction (and every
instruction kept before it) is strictly below a threshold. The original scripts score each pair with
rouge-score in Python; here each text is tokenized once exactly as `RougeScorer(["rougeL"])` does, every
distinct token becomes one code point, and rapidfuzz's C++ Indel distance gives all-pairs LCS lengths:
d = m + n − 2·LCS, so F1 = 2·LCS / (m + n). Decisions use exact integer arithmetic on a Fraction threshold.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from rapidfuzz.distance import Indel
from rapidfuzz.process import cdist
from rouge_score.tokenize import tokenize

from lion_core.records import atomic_write_text

DEFAULT_THRESHOLD = 0.7
CDIST_CELLS = 10_000_000  # distance-matrix cells per rapidfuzz call (int32: 40 MB)
BLOCK_CELLS = 250_000  # cells per block of int64 arithmetic: small temporaries stay in cache
PARALLEL_MIN_CELLS = 100_000  # smaller chunks run on one thread: starting threads costs ~0.3 ms
SURROGATE_FIRST = 0xD800
SURROGATE_COUNT = 0x800  # U+D800–U+DFFF cannot be used as code points of a str
MAX_CODE_POINT = 0x10FFFF


class _Vocab:
    """Maps each distinct rouge-score token to one code point, so a text becomes a short str.

    New tokens of a batch get code points in order of their frequency in it: rapidfuzz looks characters
    below 256 up in a flat table and the others in a hash map, so frequent tokens should get small codes.
    """

    def __init__(self) -> None:
        self._chars: dict[str, str] = {}

    def encode(self, texts: Iterable[str]) -> list[str]:
        """Tokenize texts as rouge-score does (no stemmer) and encode each one character per token."""
        tokens = [tokenize(text, None) for text in texts]
        counts = Counter(token for row in tokens for token in row if token not in self._chars)
        for token, _ in counts.most_common():
            code = len(self._chars)
            code += SURROGATE_COUNT if code >= SURROGATE_FIRST else 0
            if code > MAX_CODE_POINT:
                raise ValueError("more distinct tokens than Unicode code points")
            self._chars[token] = chr(code)
        return ["".join(map(self._chars.__getitem__, row)) for row in tokens]


def _blocks(rows: int, cols: int, cells: int) -> Iterator[tuple[int, int]]:
    """(start, stop) row ranges whose rows × cols matrix has at most `cells` cells (at least one row)."""
    step = max(1, cells // max(1, cols))
    for start in range(0, rows, step):
        yield start, min(start + step, rows)


def _lengths(codes: list[str]) -> np.ndarray:
    return np.fromiter(map(len, codes), dtype=np.int64, count=len(codes))


def _pair_blocks(queries: list[str], choices: list[str]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first row, 2·LCS, m + n) int64 matrices for row blocks of queries × choices.

    One rapidfuzz cdist call per CDIST_CELLS; the integer arithmetic then runs on BLOCK_CELLS at a time.
    """
    choice_len = _lengths(choices)
    for start, stop in _blocks(len(queries), len(choices), CDIST_CELLS):
        query_len = _lengths(queries[start:stop])
        workers = -1 if len(query_len) * len(choice_len) >= PARALLEL_MIN_CELLS else 1
        dist = (
            cdist(queries[start:stop], choices, scorer=Indel.distance, dtype=np.int32, workers=workers)
            if choices
            else np.zeros((stop - start, 0), dtype=np.int32)
        )
        for low, high in _blocks(stop - start, len(choices), BLOCK_CELLS):
            total = query_len[low:high, None] + choice_len[None, :]
            yield start + low, total - dist[low:high], total


def _f1(lcs2: np.ndarray, total: np.ndarray) -> np.ndarray:
    """ROUGE-L F1 = 2·LCS / (m + n); 0 where LCS is 0, e.g. a text with no tokens (as rouge-score)."""
    return np.divide(lcs2, total, out=np.zeros(lcs2.shape, dtype=np.float64), where=total > 0)


def max_rouge_l(candidates: list[str], pool: list[str]) -> list[float]:
    """For each candidate, its highest ROUGE-L F1 against the pool (0.0 for an empty pool)."""
    vocab = _Vocab()
    choices = vocab.encode(pool)
    queries = vocab.encode(candidates)
    best = np.zeros(len(queries), dtype=np.float64)
    for start, lcs2, total in _pair_blocks(queries, choices):
        best[start : start + len(lcs2)] = _f1(lcs2, total).max(axis=1, initial=0.0)
    return best.tolist()


@dataclass(frozen=True)
class NoveltyResult:
    """Decisions of one `NoveltyIndex.filter` call, in candidate order."""

    kept: list[bool]
    max_score: list[float]  # highest F1 against the index and the candidates kept before it

    @property
    def rejected(self) -> int:
        """How many candidates were rejected."""
        return self.kept.count(False)


class NoveltyIndex:
    """The texts a new instruction must differ from; grows as `filter` keeps candidates."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, texts: Iterable[str] = ()) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        frac = Fraction(str(threshold))
        self._num, self._den = frac.numerator, frac.denominator
        self._vocab = _Vocab()
        self._texts: list[str] = []
        self._encoded: list[str] = []
        self.add(texts)

    def __len__(self) -> int:
        return len(self._texts)

    def add(self, texts: Iterable[str]) -> None:
        """Add texts to the index unconditionally."""
        texts = list(texts)
        self._encoded += self._vocab.encode(texts)
        self._texts += texts

    def _too_similar(self, lcs2: np.ndarray, total: np.ndarray) -> np.ndarray:
        """F1 ≥ threshold, exactly: 2·LCS·den ≥ num·(m + n), and LCS > 0 (two empty texts score 0)."""
        return (lcs2 * self._den >= total * self._num) & (lcs2 > 0)

    def filter(self, candidates: list[str]) -> NoveltyResult:
        """Keep candidate i iff its F1 against the index and every earlier kept candidate is < threshold.

        Kept candidates are added to the index. Each chunk of candidates is compared in one cdist call
        with the index and the candidates up to the chunk's end; the greedy pass then runs over the matrix
        (no cdist call per candidate).
        """
        encoded = self._vocab.encode(candidates)
        size = len(self._encoded)
        choices = self._encoded + encoded
        kept = np.zeros(len(encoded), dtype=bool)
        scores = np.zeros(len(encoded), dtype=np.float64)
        for start, stop in _blocks(len(encoded), len(choices), CDIST_CELLS):
            for offset, lcs2, total in _pair_blocks(encoded[start:stop], choices[: size + stop]):
                self._greedy(start + offset, lcs2, total, size, kept, scores)
        self._texts += [text for text, keep in zip(candidates, kept, strict=True) if keep]
        self._encoded += [code for code, keep in zip(encoded, kept, strict=True) if keep]
        return NoveltyResult(kept=kept.tolist(), max_score=scores.tolist())

    def _greedy(
        self, start: int, lcs2: np.ndarray, total: np.ndarray, size: int, kept: np.ndarray, scores: np.ndarray
    ) -> None:
        """Sequential decisions for candidates start.. from their rows against index + candidates."""
        blocked = self._too_similar(lcs2, total)
        f1 = _f1(lcs2, total)
        index_blocked = blocked[:, :size].any(axis=1)
        index_best = f1[:, :size].max(axis=1, initial=0.0)
        for row in range(len(lcs2)):
            i = start + row
            earlier = kept[:i]
            pair_blocked = blocked[row, size : size + i][earlier]
            scores[i] = max(index_best[row], f1[row, size : size + i][earlier].max(initial=0.0))
            kept[i] = not (index_blocked[row] or pair_blocked.any())

    def save(self, path: Path) -> None:
        """Write the index as JSON {"threshold", "texts"} atomically."""
        payload = {"threshold": self.threshold, "texts": self._texts}
        atomic_write_text(Path(path), json.dumps(payload, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> NoveltyIndex:
        """Read an index written by `save` (texts are tokenized again)."""
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(threshold=payload["threshold"], texts=payload["texts"])
