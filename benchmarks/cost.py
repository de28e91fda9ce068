"""Run as: .venv/bin/python benchmarks/cost.py [--from-run runs/demo] [--answer-tokens 200]

What a paper-scale Lion run (52K seed instructions, 3 iterations × 6K new: 70K) costs at gpt-4o-mini list
prices ($0.15 / $0.60 per 1M input / output tokens; the Batch API at half), in four ways of running it:
the original scripts (the whole Cache Pool re-sent to the teacher every iteration, sync, sleep(20) per
call), this project synchronous, this project with every role in batch mode, and batch mode with the
referee's identical-answer rule. A last row projects `referee.sample` (not built: judge only a share of
the older Cache Pool), labelled as a projection.

How the figures are made (extrapolated, not measured at paper scale):
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
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from lion_core import data, prompts
from lion_core.records import read_instructions

SEED, NEW, ITERATIONS = 52_000, 6_000, 3  # the paper's setting
PRICE_IN, PRICE_OUT = 0.15 / 1e6, 0.60 / 1e6  # gpt-4o-mini, USD per token
BATCH_FACTOR = 0.5  # the Batch API's price
CHARS_PER_TOKEN = 4.0  # OpenAI's rule of thumb for English text
ORIGINAL_SLEEP_S = 20.0  # the original scripts' time.sleep(20) per call
DEMO_KEEP_RATE = 498 / 590  # README demo, iteration 1: kept / generator requests
BATCH_WINDOW_H = 24
SECONDS_PER_HOUR, HOURS_PER_DAY = 3600, 24


@dataclass(frozen=True)
class Measured:
    """Ratios of the method that cost depends on."""

    keep_rate: float = DEMO_KEEP_RATE
    repair_share: float = 0.0  # referee repair requests per judged order
    identical_share: float = 0.0  # Cache Pool items whose student answer equals the teacher's


@dataclass(frozen=True)
class Sizes:
    """Tokens per request: (input, output) for each role."""

    teacher: tuple[float, float]
    referee: tuple[float, float]
    generator: tuple[float, float]


def tokens(text: str) -> float:
    return len(text) / CHARS_PER_TOKEN


def sizes(answer_tokens: int, referee_reply_tokens: int) -> Sizes:
    """Prompt sizes from our templates on the shipped self-instruct seed tasks."""
    seeds = read_instructions(data.path("seed_tasks.jsonl"), "self_instruct")

    def prompt(messages: list[dict[str, str]]) -> float:
        return sum(tokens(m["content"]) for m in messages)

    teacher_in = mean(prompt(prompts.teacher_messages(s.instruction, s.input)) for s in seeds)
    referee_in = mean(prompt(prompts.referee_messages(s.text, "", "")) for s in seeds) + 2 * answer_tokens
    generator_in = mean(prompt(prompts.generator_messages("hard", s.instruction)) for s in seeds)
    new_instruction = mean(tokens(s.instruction) for s in seeds)
    return Sizes(
        (teacher_in, answer_tokens), (referee_in, referee_reply_tokens), (generator_in, new_instruction)
    )


def measured_from(run: Path) -> Measured:
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
    return Measured(kept / asked if asked else DEMO_KEEP_RATE, repair, identical / pool if pool else 0.0)


def cache_pools() -> list[int]:
    return [SEED + NEW * k for k in range(ITERATIONS)]


def requests(
    original: bool, m: Measured, referee_share: float = 1.0, identical: bool = False
) -> dict[str, int]:
    """API requests per role of the whole run."""
    teacher = sum(cache_pools()) if original else SEED + NEW * (ITERATIONS - 1)
    judged = 0.0
    for k, pool in enumerate(cache_pools()):
        new = SEED if k == 0 else NEW  # instructions this iteration judges for the first time
        judged += new + referee_share * (pool - new)
    if identical:
        judged *= 1 - m.identical_share
    referee = 2 * judged * (1 + m.repair_share)
    generator = ITERATIONS * NEW / m.keep_rate
    return {"teacher": teacher, "referee": round(referee), "generator": round(generator)}


def cost(counts: dict[str, int], s: Sizes, factor: float) -> tuple[float, float, float]:
    """(input tokens, output tokens, USD)."""
    tin = sum(counts[r] * getattr(s, r)[0] for r in counts)
    tout = sum(counts[r] * getattr(s, r)[1] for r in counts)
    return tin, tout, factor * (tin * PRICE_IN + tout * PRICE_OUT)


def sync_hours(counts: dict[str, int], s: Sizes, rpm: float, tpm: float) -> float:
    """Hours at the rate limit: each role's requests limited by requests/min or tokens/min."""
    minutes = 0.0
    for role, n in counts.items():
        per = sum(getattr(s, role))
        minutes += max(n / rpm, n * per / tpm)
    return minutes / 60


def rows(m: Measured, s: Sizes, rpm: float, tpm: float, sample_share: float) -> list[dict[str, object]]:
    original = requests(True, m)
    modes = [
        ("original scripts (sync, Cache Pool re-sent)", original, 1.0, None),
        ("this project, sync", requests(False, m), 1.0, None),
        ("this project, batch (every role)", requests(False, m), BATCH_FACTOR, "batch"),
        ("batch + identical-answer rule", requests(False, m, identical=True), BATCH_FACTOR, "batch"),
        (
            f"projection: batch + referee.sample {sample_share:.0%} (not built)",
            requests(False, m, referee_share=sample_share, identical=True),
            BATCH_FACTOR,
            "batch",
        ),
    ]
    _, _, base = cost(original, s, 1.0)
    out = []
    for name, counts, factor, kind in modes:
        tin, tout, usd = cost(counts, s, factor)
        if kind == "batch":
            rounds = ITERATIONS * (3 if m.repair_share else 2) + math.ceil(
                ITERATIONS / m.keep_rate - ITERATIONS
            )
            wall = f"{rounds}+ batch rounds, each ≤ {BATCH_WINDOW_H} h"
        elif name.startswith("original"):
            days = sum(counts.values()) * ORIGINAL_SLEEP_S / SECONDS_PER_HOUR / HOURS_PER_DAY
            wall = f"{days:,.0f} days (sleep 20 s/call)"
        else:
            wall = f"{sync_hours(counts, s, rpm, tpm):,.1f} h at {rpm:,.0f} RPM / {tpm / 1e6:g}M TPM"
        out.append(
            {
                "mode": name,
                "teacher req.": f"{counts['teacher']:,}",
                "referee req.": f"{counts['referee']:,}",
                "generator req.": f"{counts['generator']:,}",
                "tokens in / out (M)": f"{tin / 1e6:,.1f} / {tout / 1e6:,.1f}",
                "cost $": f"{usd:,.2f}",
                "× original": f"{usd / base:.2f}",
                "wall time": wall,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-run", type=Path, help="measure keep rate, repairs, identical share here")
    parser.add_argument("--answer-tokens", type=int, default=200, help="tokens of a teacher/student answer")
    parser.add_argument("--referee-reply-tokens", type=int, default=80, help="tokens of a referee reply")
    parser.add_argument("--rpm", type=float, default=5_000, help="requests per minute (sync wall time)")
    parser.add_argument("--tpm", type=float, default=4_000_000, help="tokens per minute (sync wall time)")
    parser.add_argument("--sample-share", type=float, default=0.2, help="referee.sample projection share")
    args = parser.parse_args()
    m = measured_from(args.from_run) if args.from_run else Measured()
    s = sizes(args.answer_tokens, args.referee_reply_tokens)
    table = rows(m, s, args.rpm, args.tpm, args.sample_share)
    from common import markdown, save  # benchmarks/common.py (run from the repository root)

    command = "python benchmarks/cost.py" + (f" --from-run {args.from_run}" if args.from_run else "")
    save("cost", command, table, measured=m.__dict__, sizes=s.__dict__, answer_tokens=args.answer_tokens)
    print(f"measured: {m}\ntokens per request (in, out): {s}\n")
    print(markdown(table))


if __name__ == "__main__":
    main()
