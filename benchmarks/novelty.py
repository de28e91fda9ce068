"""Run as: .venv/bin/python benchmarks/novelty.py [--quick]

ROUGE-L novelty filtering (keep a candidate iff its F1 against every pool text and every candidate kept
before it is < 0.7): rouge-score as the original Lion/self-instruct scripts use it, against
`lion_core.method.novelty.NoveltyIndex`, side by side in one run, on the same candidates.

Pools: the 587 real texts of the public sets packaged in lion_core/data (self-instruct seed tasks,
user-oriented instructions, Vicuna and MT-Bench first turns; `.text` = instruction + input) extended to 10K
and 70K texts by seeded recombination: the head of one real text (cut in its middle third) joined to the
tail of another (cut in its middle third), then a fifth of the words replaced by words drawn from the real
texts. The 10K pool is the first 10K texts of the 70K pool. Candidates: the same generator with another
seed, except that every fourth candidate (index 1, 5, 9, …) is an edit (1 to len/3 word swaps, drops or
insertions) of a 10K-pool text, so that both decisions occur among the first few candidates.

Rows: (a) `scorer.score(candidate, p)` for every pool text p (self-instruct's loop, without its process
pool); (b) `rouge_scorer._score_lcs` on pool token lists tokenized once beforehand (Lion's loop, without
its process pool); (a') Lion's actual code: a fresh `multiprocessing.Pool(cpu_count)` per candidate
mapping `_score_lcs` over the pre-tokenized pool; (c') ours on the same few candidates as (a);
(c) `NoveltyIndex(texts=pool).filter(candidates)` for 1000 candidates on the 10K pool; (d) the same on the
70K pool. Decisions of (a), (b), (a') and (c') must equal those of (c) on their candidates. For ours,
building the index (tokenizing the pool) is timed apart and also shown amortized over the candidates;
ours is the median of 3 runs (the baselines run once, for seconds each).
Writes benchmarks/results/novelty.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from functools import partial
from importlib.metadata import version
from multiprocessing import Pool
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rouge_score import rouge_scorer  # noqa: E402
from rouge_score.tokenize import tokenize  # noqa: E402

from lion_core import data  # noqa: E402
from lion_core.method.novelty import NoveltyIndex  # noqa: E402
from lion_core.records import atomic_write_text, read_instructions  # noqa: E402

FILES = (
    "seed_tasks.jsonl",
    "user_oriented_instructions.jsonl",
    "vicuna_bench_questions.jsonl",
    "mt_bench_questions.jsonl",
)
RESULTS = REPO / "benchmarks" / "results" / "novelty.json"
THRESHOLD = 0.7
POOL_SEED, CANDIDATE_SEED = 0, 1
NEAR_DUPLICATE_EVERY = 4
REPLACED_FRACTION = 0.2
REPEATS = 3
FULL = {"pools": (10_000, 70_000), "rouge_candidates": 4, "lion_pool_candidates": 2, "ours_candidates": 1000}
QUICK = {"pools": (2_000, 10_000), "rouge_candidates": 2, "lion_pool_candidates": 1, "ours_candidates": 200}


# ----------------------------------------------------------------------------- data


def recombine(rng: random.Random, texts: list[list[str]], vocabulary: list[str]) -> str:
    """First third-to-two-thirds of one text + the rest of another from a cut in its middle third, then
    a fifth of the words replaced by random real words."""
    head, tail = rng.sample(texts, 2)
    cut_head = max(1, rng.randint(len(head) // 3, 2 * len(head) // 3))
    words = head[:cut_head] + tail[rng.randint(len(tail) // 3, 2 * len(tail) // 3) :]
    for _ in range(int(len(words) * REPLACED_FRACTION)):
        words[rng.randrange(len(words))] = rng.choice(vocabulary)
    return " ".join(words)


def edit(rng: random.Random, text: str, vocabulary: list[str]) -> str:
    """1 to a third of the word count of word swaps, drops or insertions."""
    words = text.split()
    for _ in range(rng.randint(1, max(1, len(words) // 3))):
        i = rng.randrange(len(words))
        op = rng.randrange(3)
        if op == 0 and i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op == 1 and len(words) > 1:
            del words[i]
        else:
            words.insert(i, rng.choice(vocabulary))
    return " ".join(words)


def build_data(pool_size: int, n_candidates: int, near_pool: int) -> tuple[list[str], list[str]]:
    """(pool of pool_size texts, candidates) as described in the module docstring."""
    real = [record.text for name in FILES for record in read_instructions(data.path(name))]
    split = [t.split() for t in real if t.split()]
    vocabulary = [w for words in split for w in words]
    rng = random.Random(POOL_SEED)
    pool = list(real)
    while len(pool) < pool_size:
        pool.append(recombine(rng, split, vocabulary))
    rng = random.Random(CANDIDATE_SEED)
    candidates = [
        edit(rng, rng.choice(pool[:near_pool]), vocabulary)
        if i % NEAR_DUPLICATE_EVERY == 1
        else recombine(rng, split, vocabulary)
        for i in range(n_candidates)
    ]
    return pool, candidates


# ----------------------------------------------------------------------------- baselines


def rouge_loop(candidates: list[str], pool: list[str]) -> tuple[list[bool], float]:
    """(a): scorer.score per pair, sequential (kept candidates join the pool); seconds per candidate."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    texts, kept = list(pool), []
    start = time.perf_counter()
    for candidate in candidates:
        best = max(scorer.score(candidate, p)["rougeL"].fmeasure for p in texts)
        kept.append(best < THRESHOLD)
        if kept[-1]:
            texts.append(candidate)
    return kept, (time.perf_counter() - start) / len(candidates)


def rouge_pretokenized(
    candidates: list[str], pool: list[str], processes: int = 0
) -> tuple[list[bool], float]:
    """(b) / (a'): _score_lcs over a pool tokenized once; with processes > 0, a fresh Pool per candidate."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    tokens, kept = [scorer._tokenizer.tokenize(p) for p in pool], []
    start = time.perf_counter()
    for candidate in candidates:
        new = scorer._tokenizer.tokenize(candidate)
        if processes:
            with Pool(processes) as workers:
                scores = workers.map(partial(rouge_scorer._score_lcs, new), tokens)
        else:
            scores = [rouge_scorer._score_lcs(new, t) for t in tokens]
        kept.append(max(s.fmeasure for s in scores) < THRESHOLD)
        if kept[-1]:
            tokens.append(new)
    return kept, (time.perf_counter() - start) / len(candidates)


def ours(candidates: list[str], pool: list[str]) -> tuple[list[bool], float, float]:
    """(c) / (d): (decisions, seconds to build the index, filter seconds per candidate), medians of
    REPEATS runs, each on a fresh index (the first run also pays one-off warm-up costs)."""
    builds, filters, decisions = [], [], []
    for _ in range(REPEATS):
        start = time.perf_counter()
        index = NoveltyIndex(THRESHOLD, pool)
        built = time.perf_counter()
        decisions.append(index.filter(candidates).kept)
        filters.append((time.perf_counter() - built) / len(candidates))
        builds.append(built - start)
    assert all(kept == decisions[0] for kept in decisions)
    return decisions[0], statistics.median(builds), statistics.median(filters)


# ----------------------------------------------------------------------------- report


def row(
    method: str, pool: int, n: int, per_candidate: float, base: float, build: float | None = None
) -> dict:
    amortized = per_candidate + (build or 0.0) / n
    return {
        "method": method,
        "pool": pool,
        "candidates": n,
        "s_per_candidate": per_candidate,
        "index_build_s": build,
        "s_per_candidate_with_build": amortized,
        "speedup_vs_a": base / per_candidate,
        "speedup_vs_a_with_build": base / amortized,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| method | pool | candidates | s/candidate | speed-up vs (a) "
        "| s/candidate incl. index build | speed-up incl. build |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['pool']:,} | {r['candidates']:,} | {r['s_per_candidate']:.3g} "
            f"| {r['speedup_vs_a']:,.0f}× | {r['s_per_candidate_with_build']:.3g} "
            f"| {r['speedup_vs_a_with_build']:,.0f}× |"
        )
    return "\n".join(lines)


def measure(cfg: dict) -> tuple[list[dict], dict]:
    """Run every method on the same data; (table rows, agreement and data figures)."""
    small, large = cfg["pools"]
    pool, candidates = build_data(large, cfg["ours_candidates"], small)
    pool_small, n_a, n_pool = pool[:small], cfg["rouge_candidates"], cfg["lion_pool_candidates"]
    cpus = len(os.sched_getaffinity(0))
    kept_a, t_a = rouge_loop(candidates[:n_a], pool_small)
    kept_b, t_b = rouge_pretokenized(candidates[:n_a], pool_small)
    kept_p, t_p = rouge_pretokenized(candidates[:n_pool], pool_small, processes=cpus)
    kept_same, build_same, t_same = ours(candidates[:n_a], pool_small)
    kept_c, build_c, t_c = ours(candidates, pool_small)
    kept_d, build_d, t_d = ours(candidates, pool)
    rows = [
        row("(a) rouge-score `score` per pair", small, n_a, t_a, t_a),
        row("(b) rouge-score `_score_lcs`, pre-tokenized pool", small, n_a, t_b, t_a),
        row(f"(a') Lion's code: Pool({cpus}) per candidate + `_score_lcs`", small, n_pool, t_p, t_a),
        row("(c') ours, the same candidates as (a)", small, n_a, t_same, t_a, build_same),
        row("(c) ours: NoveltyIndex.filter", small, len(candidates), t_c, t_a, build_c),
        row("(d) ours: NoveltyIndex.filter", large, len(candidates), t_d, t_a, build_d),
    ]
    tokens = [len(tokenize(text, None)) for text in candidates]
    facts = {
        "agree_a_c": kept_a == kept_c[:n_a] == kept_same,
        "agree_b_c": kept_b == kept_c[:n_a],
        "agree_lion_pool_c": kept_p == kept_c[:n_pool],
        "a_kept": kept_a,
        "c_rejected": kept_c.count(False),
        "d_rejected": kept_d.count(False),
        "mean_tokens_a_candidates": statistics.fmean(tokens[:n_a]),
        "mean_tokens_all_candidates": statistics.fmean(tokens),
        "mean_tokens_pool": statistics.fmean(len(tokenize(text, None)) for text in pool_small),
        "cpu_count": cpus,
        "a_s_per_candidate_scaled_to_large_pool": t_a * large / small,  # extrapolated linearly, not measured
        "d_speedup_vs_a_scaled": t_a * large / small / t_d,
    }
    return rows, facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small pools and few candidates (smoke run)")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    rows, facts = measure(cfg)
    print(table(rows))
    print(
        f"\nCPUs: {facts['cpu_count']}; decisions agree (a)=(c): {facts['agree_a_c']}, (b)=(c): "
        f"{facts['agree_b_c']}, (a')=(c): {facts['agree_lion_pool_c']}; (a) kept: {facts['a_kept']}; "
        f"rejected by ours: {facts['c_rejected']}/{cfg['ours_candidates']} at {cfg['pools'][0]:,}, "
        f"{facts['d_rejected']}/{cfg['ours_candidates']} at {cfg['pools'][1]:,}; mean tokens: (a) candidates "
        f"{facts['mean_tokens_a_candidates']:.1f}, all candidates {facts['mean_tokens_all_candidates']:.1f}, "
        f"pool {facts['mean_tokens_pool']:.1f}; (a) scaled linearly to {cfg['pools'][1]:,} (not measured): "
        f"{facts['a_s_per_candidate_scaled_to_large_pool']:.3g} s/candidate, (d) "
        f"{facts['d_speedup_vs_a_scaled']:,.0f}× faster"
    )
    report = {
        "command": " ".join([".venv/bin/python", "benchmarks/novelty.py", *sys.argv[1:]]),
        "quick": args.quick,
        "cpu_count": facts["cpu_count"],
        "os_cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "versions": {name: version(name) for name in ("rouge-score", "rapidfuzz", "numpy")},
        "threshold": THRESHOLD,
        "config": cfg,
        "rows": rows,
        "facts": facts,
        "table": table(rows),
    }
    atomic_write_text(RESULTS, json.dumps(report, indent=2) + "\n")
    if not (facts["agree_a_c"] and facts["agree_b_c"] and facts["agree_lion_pool_c"]):
        raise SystemExit("decisions disagree")


if __name__ == "__main__":
    main()
