"""Run as: .venv/bin/python benchmarks/cost.py [--from-run runs/demo] [--answer-tokens 200]

What a paper-scale Lion run (52,002 seed instructions, 3 iterations × 6K new: 70K) costs at gpt-4o-mini list
prices ($0.15 / $0.60 per 1M input / output tokens; the Batch API at half), in four ways of running it:
the original scripts (the whole Cache Pool re-sent to the teacher every iteration, sync, sleep(20) per
call), this project synchronous, this project with every role in batch mode, batch mode with the
referee's identical-answer rule, and batch mode judging only a sample of the Cache Pool
(`referee.sample`, configs/economy.yaml: the newest generation and a stratified sample of the older
pool, sized `auto` at `--multiples` × the parents the generator draws, at the prior hard share 0.5).
The imitation baseline (`loop.selection: uniform`) calls no referee at all: a last row for it.

How the figures are made (extrapolated, not measured at paper scale) — by lion_core/method/projection.py, the
projection `lion run` prints and a budget stop reports; this script adds the original scripts' counts, the
sampled recipes and wall time:
- request counts follow from the method exactly: the teacher answers each Train Pool (the original: each
  Cache Pool); the referee judges the Cache Pool in two orders every iteration, plus repair turns; the
  generator makes N kept instructions from N / keep-rate requests. Keep rate, referee repair share and
  identical-answer share are measured from a finished run directory (`--from-run`, e.g. the demo's on the
  offline world) or default to the demo figures in the README (498 kept of 590 requests; 0 repairs; 0
  identical answers, since a 7B student's sampled answers rarely equal ChatGPT's word for word);
- tokens per request: our prompt templates rendered on the shipped self-instruct seed tasks (4 characters a
  token), with answers of `--answer-tokens` tokens (teacher and student alike) and referee replies of
  `--referee-reply-tokens`;
- wall time: the original's sleep(20) per call, one call at a time; synchronous at `--rpm` requests and
  `--tpm` tokens per minute (gpt-4o-mini at OpenAI's usage tier 3: 5,000 and 4M); batch mode as the number
  of batch rounds, each finishing within its 24 h window (usually much sooner).
Writes benchmarks/results/cost.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from lion_core.config import LionConfig, RefereeSample
from lion_core.method.projection import (
    ANSWER_TOKENS,
    DEMO_KEEP_RATE,
    PAPER_SEED_POOL,
    REFEREE_REPLY_TOKENS,
    Ratios,
    Recipe,
    Sizes,
    priced,
    requests,
    sizes,
)

NEW, ITERATIONS = 6_000, 3  # the paper's setting (with PAPER_SEED_POOL seeds)
PRICE_IN_PER_1K, PRICE_OUT_PER_1K = 0.00015, 0.0006  # gpt-4o-mini list prices, USD per 1K tokens
MODEL = "gpt-4o-mini"
ORIGINAL_SLEEP_S = 20.0  # the original scripts' time.sleep(20) per call
BATCH_WINDOW_H = 24
SECONDS_PER_HOUR, HOURS_PER_DAY = 3600, 24


def paper_config(mode: str) -> LionConfig:
    """The paper's recipe with every role at gpt-4o-mini prices, in `mode` (sync or batch)."""
    role = {"model": MODEL, "mode": mode, "price_input_per_1k": PRICE_IN_PER_1K}
    role["price_output_per_1k"] = PRICE_OUT_PER_1K
    loop = {"iterations": ITERATIONS, "new_per_iteration": NEW}
    return LionConfig(teacher=role, referee=role, generator=role, loop=loop)


def paper_recipe(skip_identical: bool = False, **settings) -> Recipe:
    return Recipe(PAPER_SEED_POOL, NEW, ITERATIONS, skip_identical, **settings)


def measured_from(run: Path) -> Ratios:
    """Keep rate, repair share and identical share from a finished run's summaries."""
    summaries = [json.loads(p.read_text()) for p in sorted(run.glob("iter_*/summary.json"))]
    if not summaries:
        raise SystemExit(f"{run}: no iter_*/summary.json")
    kept = sum(s.get("generated", 0) for s in summaries)
    asked = sum(s.get("requested", 0) for s in summaries)
    pool = sum(s["cache_pool"] for s in summaries)
    referee = sum(s.get("usage", {}).get("referee", {}).get("requests", 0) for s in summaries)
    identical = sum(s.get("identical", 0) for s in summaries)
    judged_orders = 2 * (pool - identical)
    repair = max(0.0, referee / judged_orders - 1) if judged_orders else 0.0
    return Ratios(kept / asked if asked else DEMO_KEEP_RATE, repair, identical / pool if pool else 0.0)


def original_requests(m: Ratios) -> dict[str, int]:
    """The original scripts: as ours, but the teacher answers the whole Cache Pool every iteration."""
    recipe = paper_recipe()
    return {**requests(recipe, m), "teacher": sum(recipe.cache_pools())}


def cost(config: LionConfig, counts: dict[str, int], s: Sizes) -> tuple[float, float, float]:
    """(input tokens, output tokens, USD) at the config's prices and modes."""
    roles = priced(config, counts, s).values()
    return sum(r.input_tokens for r in roles), sum(r.output_tokens for r in roles), sum(r.usd for r in roles)


def sync_hours(counts: dict[str, int], s: Sizes, rpm: float, tpm: float) -> float:
    """Hours at the rate limit: each role's requests limited by requests/min or tokens/min."""
    minutes = 0.0
    for role, n in counts.items():
        per = sum(getattr(s, role))
        minutes += max(n / rpm, n * per / tpm)
    return minutes / 60


def wall_time(name: str, batch: bool, counts: dict[str, int], s: Sizes, m: Ratios, limits: tuple) -> str:
    if batch:
        rounds = ITERATIONS * (3 if m.repair_share else 2) + math.ceil(ITERATIONS / m.keep_rate - ITERATIONS)
        return f"{rounds}+ batch rounds, each ≤ {BATCH_WINDOW_H} h"
    if name.startswith("original"):
        days = sum(counts.values()) * ORIGINAL_SLEEP_S / SECONDS_PER_HOUR / HOURS_PER_DAY
        return f"{days:,.0f} days (sleep 20 s/call)"
    rpm, tpm = limits
    return f"{sync_hours(counts, s, rpm, tpm):,.1f} h at {rpm:,.0f} RPM / {tpm / 1e6:g}M TPM"


def rows(m: Ratios, s: Sizes, rpm: float, tpm: float, multiples: list[float]) -> list[dict[str, object]]:
    sync, batch = paper_config("sync"), paper_config("batch")
    original = paper_recipe()
    modes = [
        ("original scripts (sync, Cache Pool re-sent)", original_requests(m), original, sync),
        ("this project, sync", requests(original, m), original, sync),
        ("this project, batch (every role)", requests(original, m), original, batch),
        ("batch + identical-answer rule", requests(paper_recipe(True), m), paper_recipe(True), batch),
    ]
    for multiple in multiples:
        recipe = paper_recipe(True, sample=RefereeSample(parents_multiple=multiple))
        modes.append((f"batch + referee.sample auto ×{multiple:g}", requests(recipe, m), recipe, batch))
    imitation = paper_recipe(True, referee=False)
    modes.append(("imitation baseline, batch (no referee)", requests(imitation, m), imitation, batch))
    _, _, base = cost(sync, original_requests(m), s)
    out = []
    for name, counts, recipe, config in modes:
        tin, tout, usd = cost(config, counts, s)
        out.append(
            {
                "mode": name,
                "teacher req.": f"{counts['teacher']:,}",
                "referee req.": f"{counts['referee']:,}",
                "generator req.": f"{counts['generator']:,}",
                "student answers": f"{recipe.student_answers():,}",
                "tokens in / out (M)": f"{tin / 1e6:,.1f} / {tout / 1e6:,.1f}",
                "cost $": f"{usd:,.2f}",
                "× original": f"{usd / base:.2f}",
                "wall time": wall_time(name, config.teacher.mode == "batch", counts, s, m, (rpm, tpm)),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-run", type=Path, help="measure keep rate, repairs, identical share here")
    parser.add_argument("--answer-tokens", type=int, default=ANSWER_TOKENS, help="tokens of an answer")
    parser.add_argument("--referee-reply-tokens", type=int, default=REFEREE_REPLY_TOKENS, help="of a verdict")
    parser.add_argument("--rpm", type=float, default=5_000, help="requests per minute (sync wall time)")
    parser.add_argument("--tpm", type=float, default=4_000_000, help="tokens per minute (sync wall time)")
    parser.add_argument(
        "--multiples", type=float, nargs="+", default=[2.0, 4.0], help="referee.sample parents_multiple rows"
    )
    args = parser.parse_args()
    m = measured_from(args.from_run) if args.from_run else Ratios()
    s = sizes(args.answer_tokens, args.referee_reply_tokens)
    table = rows(m, s, args.rpm, args.tpm, args.multiples)
    from common import markdown, save  # benchmarks/common.py (run from the repository root)

    command = "python benchmarks/cost.py" + (f" --from-run {args.from_run}" if args.from_run else "")
    save("cost", command, table, measured=m.__dict__, sizes=s.__dict__, answer_tokens=args.answer_tokens)
    print(f"measured: {m}\ntokens per request (in, out): {s}\n")
    print(markdown(table))


if __name__ == "__main__":
    main()
