"""lion_core.method.novelty gives the same ROUGE-L scores and keep/reject decisions as rouge-score,
pair by pair."""

from __future__ import annotations

import json
import random
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from rouge_score import rouge_scorer
from rouge_score.tokenize import tokenize

from lion_core import data
from lion_core.method import novelty
from lion_core.method.novelty import NoveltyIndex, NoveltyResult, max_rouge_l
from lion_core.records import read_instructions

FILES = (
    "seed_tasks.jsonl",
    "user_oriented_instructions.jsonl",
    "vicuna_bench_questions.jsonl",
    "mt_bench_questions.jsonl",
)
THRESHOLD = 0.7
EXACT = Fraction(str(THRESHOLD))
TOLERANCE = 1e-9
SEED = 20231
N_BASE = 80  # real texts in the all-pairs sample
N_PERTURBED = 220  # perturbed copies (~3 per base text); 305 texts → 46K pairs, ~15 s of rouge-score
MAX_TOKENS = 150  # rouge-score's pure-Python LCS is O(m·n); longer texts would dominate the test's time
ODD_TEXTS = ("", "!!!", "— … —", "Café naïve 3.14 x-ray", "DON'T stop")
PREFIXES = ("Please", "Now", "Also", "Kindly", "Briefly")

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


# ----------------------------------------------------------------------------- the oracle


def oracle(a: str, b: str) -> tuple[float, bool]:
    """rouge-score's F1 for (target a, prediction b) and whether it rejects the pair (F1 ≥ threshold).

    rouge-score computes F1 = 2PR/(P+R) in floating point, so a pair whose exact F1 is 7/10 can come out as
    0.7000000000000001 or 0.6999999999999999 and the comparison with 0.7 would be decided by rounding noise.
    For pairs that close to the threshold the decision is recomputed exactly from rouge-score's own integer
    LCS, recovered as round(precision × number of prediction tokens), with F1 = 2·LCS / (m + n).
    """
    score = SCORER.score(a, b)["rougeL"]
    if abs(score.fmeasure - THRESHOLD) >= TOLERANCE:
        return score.fmeasure, score.fmeasure >= THRESHOLD
    m, n = len(tokenize(a, None)), len(tokenize(b, None))
    lcs = round(score.precision * n)
    return score.fmeasure, 2 * lcs * EXACT.denominator >= EXACT.numerator * (m + n)


# ----------------------------------------------------------------------------- the sample


def _perturb(text: str, rng: random.Random, words_pool: list[str]) -> str:
    """Up to one random edit per word (so F1 spreads over 0.5–1): adjacent swap, case change, punctuation
    added or removed, prefix word added, suffix word removed, word dropped, inserted or replaced."""
    words = text.split() or [""]
    for _ in range(rng.randint(1, max(2, len(words)))):
        i = rng.randrange(len(words))
        op = rng.randrange(9)
        if op == 0 and len(words) > 1:
            j = min(i, len(words) - 2)
            words[j], words[j + 1] = words[j + 1], words[j]
        elif op == 1:
            words[i] = rng.choice((str.upper, str.lower, str.title))(words[i])
        elif op == 2:
            words[i] += rng.choice(",.;!?-'")
        elif op == 3:
            words[i] = re.sub(r"[^\w\s]", "", words[i])
        elif op == 4:
            words.insert(0, rng.choice(PREFIXES))
        elif op == 5 and len(words) > 1:
            words.pop()
        elif op == 6 and len(words) > 1:
            del words[i]
        elif op == 7:
            words.insert(i, rng.choice(words_pool))
        else:
            words[i] = rng.choice(words_pool)
    return " ".join(words)


def _all_texts() -> list[str]:
    """Every record's text from the four public sets in lion_core/data (FastChat: the first turn)."""
    return [record.text for name in FILES for record in read_instructions(data.path(name))]


@pytest.fixture(scope="module")
def sample() -> list[str]:
    """Real instructions, perturbed copies (several per base text) and odd texts, shuffled."""
    rng = random.Random(SEED)
    texts = [t for t in _all_texts() if len(tokenize(t, None)) <= MAX_TOKENS]
    base = rng.sample(texts, N_BASE)
    words_pool = [w for t in texts for w in t.split()]
    perturbed = [_perturb(rng.choice(base), rng, words_pool) for _ in range(N_PERTURBED)]
    out = base + perturbed + list(ODD_TEXTS)
    rng.shuffle(out)
    return out


@pytest.fixture(scope="module")
def truth(sample: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """rouge-score's F1 and rejection for every pair of the sample (both orders filled from i ≤ j)."""
    n = len(sample)
    f1 = np.zeros((n, n))
    reject = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(i, n):
            f1[i, j], reject[i, j] = oracle(sample[i], sample[j])
            f1[j, i], reject[j, i] = f1[i, j], reject[i, j]
    return f1, reject


# ----------------------------------------------------------------------------- exactness on real data


def test_sample_is_convincing(truth: tuple[np.ndarray, np.ndarray]) -> None:
    """The sample has tens of thousands of pairs, hundreds rejected and over a hundred close to 0.7."""
    f1, reject = truth
    upper = np.triu_indices(len(f1), k=1)
    assert reject[upper].sum() >= 200
    assert (~reject[upper]).sum() >= 40_000
    assert (np.abs(f1[upper] - THRESHOLD) < 0.05).sum() >= 100


def test_every_pair_matches_rouge_score(sample: list[str], truth: tuple[np.ndarray, np.ndarray]) -> None:
    """For each pair, the decision and the score of a one-text index equal rouge-score's."""
    f1, reject = truth
    mismatched = []
    for i in range(len(sample)):
        for j in range(i + 1, len(sample)):
            result = NoveltyIndex(THRESHOLD, [sample[j]]).filter([sample[i]])
            if result.kept[0] == reject[i, j] or abs(result.max_score[0] - f1[i, j]) > TOLERANCE:
                mismatched.append((sample[i], sample[j], f1[i, j], result))
    assert not mismatched, mismatched[:5]


def test_max_rouge_l_matches_rouge_score(sample: list[str], truth: tuple[np.ndarray, np.ndarray]) -> None:
    """Row maxima of rouge-score's F1 matrix, one candidate at a time and as one batch."""
    f1, _ = truth
    for i in range(len(sample)):
        others = sample[:i] + sample[i + 1 :]
        expected = np.delete(f1[i], i).max()
        assert max_rouge_l([sample[i]], others)[0] == pytest.approx(expected, abs=TOLERANCE)
    half = len(sample) // 2
    ours = max_rouge_l(sample[:half], sample[half:])
    np.testing.assert_allclose(ours, f1[:half, half:].max(axis=1), rtol=0, atol=TOLERANCE)


def _oracle_greedy(f1: np.ndarray, reject: np.ndarray, pool_size: int) -> tuple[list[bool], list[float]]:
    """The per-candidate loop on rouge-score's results: candidates are the rows from pool_size on."""
    compared = list(range(pool_size))
    kept, best = [], []
    for i in range(pool_size, len(reject)):
        kept.append(not reject[i, compared].any())
        best.append(f1[i, compared].max())
        if kept[-1]:
            compared.append(i)
    return kept, best


CHUNKINGS = [
    (novelty.CDIST_CELLS, novelty.BLOCK_CELLS, novelty.PARALLEL_MIN_CELLS),
    (3000, 700, 0),  # several cdist chunks, several blocks each, worker threads
    (7, 7, 0),  # one row per chunk
]


@pytest.mark.parametrize(("cdist_cells", "block_cells", "parallel_min"), CHUNKINGS)
def test_filter_matches_sequential_rouge_score(
    sample: list[str],
    truth: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    cdist_cells: int,
    block_cells: int,
    parallel_min: int,
) -> None:
    """Whole-batch filtering equals the per-candidate loop, whatever the chunking."""
    monkeypatch.setattr(novelty, "CDIST_CELLS", cdist_cells)
    monkeypatch.setattr(novelty, "BLOCK_CELLS", block_cells)
    monkeypatch.setattr(novelty, "PARALLEL_MIN_CELLS", parallel_min)
    f1, reject = truth
    pool_size = len(sample) // 3
    index = NoveltyIndex(THRESHOLD, sample[:pool_size])
    result = index.filter(sample[pool_size:])
    kept, best = _oracle_greedy(f1, reject, pool_size)
    assert result.kept == kept
    np.testing.assert_allclose(result.max_score, best, rtol=0, atol=TOLERANCE)
    assert 0 < result.rejected < len(kept)
    assert len(index) == pool_size + sum(kept)
    assert max_rouge_l(sample[:pool_size], sample[pool_size:]) == pytest.approx(
        f1[:pool_size, pool_size:].max(axis=1), abs=TOLERANCE
    )


# ----------------------------------------------------------------------------- constructed cases


def _pair(shared: int, m: int, n: int) -> tuple[str, str]:
    """A text of m tokens and one of n tokens whose LCS is exactly `shared` tokens."""
    a = [f"w{k}" for k in range(m)]
    b = a[:shared] + [f"x{k}" for k in range(n - shared)]
    return " ".join(a), " ".join(b)


@pytest.mark.parametrize(
    ("shared", "m", "n", "kept"),
    [
        (7, 10, 10, False),  # exactly 0.7 is not < 0.7: rejected
        (14, 20, 20, False),
        (7, 8, 12, False),  # 14/20; rouge-score's float here is 0.7000000000000001
        (21, 30, 30, False),
        (7, 10, 11, True),  # 14/21 ≈ 0.667
        (13, 20, 20, True),  # 0.65
        (8, 10, 10, False),  # 0.8
        (14, 19, 20, False),  # 28/39 ≈ 0.718
        (27, 40, 38, True),  # 54/78 ≈ 0.692
    ],
)
def test_threshold_boundary(shared: int, m: int, n: int, kept: bool) -> None:
    a, b = _pair(shared, m, n)
    exact = Fraction(2 * shared, m + n)
    assert max_rouge_l([b], [a]) == [pytest.approx(float(exact), abs=TOLERANCE)]
    assert NoveltyIndex(THRESHOLD, [a]).filter([b]).kept == [kept]
    assert oracle(a, b) == (pytest.approx(float(exact), abs=TOLERANCE), not kept)


def test_empty_and_symbol_only_texts_score_zero() -> None:
    odd = ["", "   ", "!!!", "— … —", "日本語"]
    for a in odd:
        for b in [*odd, "hello world"]:
            assert SCORER.score(a, b)["rougeL"].fmeasure == 0
            assert max_rouge_l([a], [b]) == [0.0]
    result = NoveltyIndex(THRESHOLD, odd).filter(odd)
    assert result == NoveltyResult(kept=[True] * len(odd), max_score=[0.0] * len(odd))
    assert max_rouge_l(["hello"], []) == [0.0]


def test_tokens_coded_beyond_the_surrogate_range() -> None:
    """Past U+D800 distinct tokens, codes skip the surrogates and scores stay exact."""
    filler = " ".join(f"t{k}" for k in range(novelty.SURROGATE_FIRST + 100))
    a = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    b = "alpha beta gamma delta epsilon zeta eta x y z"  # LCS 7 of 10 tokens each: exactly 0.7
    c = "alpha beta gamma delta epsilon zeta x y z w"  # 0.6
    index = NoveltyIndex(THRESHOLD, [filler, a])
    codes = [ord(code) for code in index._vocab._chars.values()]
    assert max(codes) > novelty.SURROGATE_FIRST + novelty.SURROGATE_COUNT
    assert not any(
        novelty.SURROGATE_FIRST <= code < novelty.SURROGATE_FIRST + novelty.SURROGATE_COUNT for code in codes
    )
    assert index.filter([b, c]) == NoveltyResult(kept=[False, True], max_score=[0.7, 0.6])
    assert max_rouge_l([b, c], [filler, a]) == [0.7, 0.6]


# ----------------------------------------------------------------------------- semantics and persistence


POOL = [
    "Write a haiku about autumn leaves falling in the park.",
    "Explain how photosynthesis works to a ten year old child.",
    "List five tips for improving sleep quality.",
]
NEW = [
    "Describe the rules of chess for a complete beginner.",
    "Describe the rules of chess for a total beginner.",  # near-duplicate of the one before
    "EXPLAIN how photosynthesis works, to a ten-year-old child!",  # same tokens as a pool entry
    "Translate the following sentence into French: the cat sleeps.",
]


def test_sequential_semantics() -> None:
    index = NoveltyIndex(THRESHOLD, POOL)
    result = index.filter(NEW)
    assert result.kept == [True, False, False, True]
    assert result.rejected == 2
    assert result.max_score[1] == pytest.approx(SCORER.score(NEW[0], NEW[1])["rougeL"].fmeasure)
    assert result.max_score[2] == 1.0
    assert len(index) == len(POOL) + 2
    assert index.filter([NEW[3], NEW[1]]).kept == [False, False]  # kept ones joined the index
    assert NoveltyIndex(THRESHOLD, POOL).filter(NEW[1:]).kept[0]  # rejected above only because of NEW[0]


def test_save_load_round_trip(tmp_path: Path) -> None:
    index = NoveltyIndex(0.5, POOL)
    index.filter(NEW[:2])
    path = tmp_path / "novelty.json"
    index.save(path)
    assert json.loads(path.read_text(encoding="utf-8")) == {"threshold": 0.5, "texts": [*POOL, NEW[0]]}
    loaded = NoveltyIndex.load(path)
    assert len(loaded) == len(index)
    assert loaded.threshold == 0.5
    probe = [*NEW, "Write a haiku about spring rain in the park.", "Summarise the plot of Hamlet."]
    result = loaded.filter(probe)
    assert result == index.filter(probe)
    assert 0 < result.rejected < len(probe)


def test_invalid_threshold() -> None:
    with pytest.raises(ValueError, match="threshold"):
        NoveltyIndex(0.0)
