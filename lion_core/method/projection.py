"""What a Lion recipe will cost before it runs: API requests, tokens and USD per role, from the config.

Request counts follow from the method (lion_core/method/loop.py), for a seed pool of S instructions, N new per
iteration and K iterations, the Cache Pool of iteration k being S + N·(k − 1):
- teacher: each Train Pool once (S, then N per later iteration, and N more for `loop.final_imitation`'s
  round; the Cache Pool is never re-sent);
- referee: the whole Cache Pool in two orders every iteration (× (1 − identical share) with
  `referee.skip_identical`, × (1 + repair share) for re-asks after an unreadable verdict) — with
  `referee.sample` the sample lion_core.method.sampling plans at its prior hard share, and none under
  `loop.selection: uniform` (the imitation baseline reads no verdict);
- generator: N / keep rate requests per iteration (every iteration generates, the last included);
- `loop.selection: fresh | learnable`: per probed item (`loop.probe_sample` per iteration, else every
  judged item) one more generator, one teacher and two referee requests.
The projection assumes every iteration runs (no early equilibrium stop): an upper bound.

Tokens per request are assumptions, named below: prompts are our templates rendered on the shipped
self-instruct seed tasks at CHARS_PER_TOKEN characters a token; an answer (teacher's and student's) is
ANSWER_TOKENS tokens and a verdict REFEREE_REPLY_TOKENS, each capped by its role's max_tokens; a new
instruction is as long as a seed task's. Each role's price is its endpoint's (`cost_usd`: the batch
price in `mode: batch`). Keep rate, repair and identical shares default to the offline demo's figures.

A run under way knows better: `observed` replaces each role's assumed cost per request by the one its
ledger recorded and projects the total as what was spent plus the requests still to come.
Run as: `lion run` prints the projection first; benchmarks/cost.py tabulates it at paper scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from statistics import mean

from lion_core import data, prompts
from lion_core.api.journal import RoleUsage
from lion_core.config import LionConfig, LoopConfig, RefereeSample
from lion_core.method.sampling import plan_sizes
from lion_core.method.selection import needs_probes, needs_referee
from lion_core.records import read_instructions

PAPER_SEED_POOL = 52_002  # Alpaca's alpaca_data.json, the paper's initial pool (used when no seed file)
CHARS_PER_TOKEN = 4.0  # OpenAI's rule of thumb for English text
ANSWER_TOKENS = 200  # assumed tokens of a teacher or student answer (capped by max_tokens)
REFEREE_REPLY_TOKENS = 80  # assumed tokens of a referee verdict (two score lines and a short reason)
DEMO_KEEP_RATE = 498 / 590  # README demo, iteration 1: kept / generator requests
SIZING_SEEDS = "seed_tasks.jsonl"  # packaged self-instruct tasks the prompt sizes are rendered on
BUDGET_MARGIN = 1.2  # budget to set = projected total × this (token assumptions, retries, in-flight reserve)
SIGNIFICANT_DIGITS = 2  # a suggested budget is rounded up to this many significant digits
ROLES = ("teacher", "referee", "generator")


@dataclass(frozen=True)
class Ratios:
    """Ratios of the method that the request counts depend on."""

    keep_rate: float = DEMO_KEEP_RATE  # kept new instructions per generator request
    repair_share: float = 0.0  # referee repair requests per judged order
    identical_share: float = 0.0  # Cache Pool items whose student answer equals the teacher's


@dataclass(frozen=True)
class Sizes:
    """Tokens per request, (input, output), of each role."""

    teacher: tuple[float, float]
    referee: tuple[float, float]
    generator: tuple[float, float]


@dataclass(frozen=True)
class Recipe:
    """The parts of a run that decide how many requests it sends."""

    seed_pool: int
    new_per_iteration: int
    iterations: int
    skip_identical: bool = True
    probing: bool = False  # selection fresh/learnable: fresh siblings judged every iteration
    probe_sample: int | None = None  # items probed per iteration; None: the whole Cache Pool
    referee: bool = True  # False: a selection that reads no verdict (uniform, the imitation baseline)
    sample: RefereeSample | None = None  # referee.sample: judge a sample of the Cache Pool
    hard_easy_ratio: float = 1.0
    final_imitation: bool = False  # loop.final_imitation: the teacher answers the last generated set too

    @classmethod
    def of(cls, config: LionConfig, seed_pool: int) -> Recipe:
        loop = config.loop
        return cls(
            seed_pool,
            loop.new_per_iteration,
            loop.iterations,
            config.referee.skip_identical,
            needs_probes(loop.selection),
            loop.probe_sample,
            needs_referee(loop.selection),
            config.referee.sample,
            loop.hard_easy_ratio,
            loop.final_imitation,
        )

    def cache_pools(self) -> list[int]:
        """Size of the Cache Pool each iteration."""
        return [self.seed_pool + self.new_per_iteration * k for k in range(self.iterations)]

    def judged(self) -> list[int]:
        """Cache Pool items the student answers and the referee judges each iteration: all of them, a
        `referee.sample` (sized at its prior hard share: no iteration has measured one yet), or none."""
        if not self.referee:
            return [0] * self.iterations
        if self.sample is None:
            return self.cache_pools()
        loop = LoopConfig(new_per_iteration=self.new_per_iteration, hard_easy_ratio=self.hard_easy_ratio)
        out = []
        for k in range(1, self.iterations + 1):
            strata = {0: self.seed_pool, **dict.fromkeys(range(1, k), self.new_per_iteration)}
            out.append(plan_sizes(strata, k, loop, self.sample, None).judged)
        return out

    def probed(self) -> list[int]:
        """Items probed with a fresh sibling each iteration (fresh, learnable)."""
        if not self.probing:
            return [0] * self.iterations
        judged = self.judged()
        return [n if self.probe_sample is None else min(n, self.probe_sample) for n in judged]

    def student_answers(self) -> int:
        """Answers the student generates over the run (judged items and probed siblings): GPU work."""
        return sum(self.judged()) + sum(self.probed())


@dataclass(frozen=True)
class RoleCost:
    """One role's projected requests, tokens and USD."""

    requests: int
    input_tokens: float
    output_tokens: float
    usd: float


@dataclass(frozen=True)
class Projection:
    """A recipe's projected cost per role and in total."""

    seed_pool: int
    roles: dict[str, RoleCost]

    @property
    def usd(self) -> float:
        return sum(r.usd for r in self.roles.values())

    @property
    def tokens(self) -> float:
        return sum(r.input_tokens + r.output_tokens for r in self.roles.values())

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.roles.values())


def tokens(text: str) -> float:
    """Estimated tokens of a text."""
    return len(text) / CHARS_PER_TOKEN


@cache
def _prompt_tokens() -> tuple[float, float, float, float]:
    """Mean prompt tokens of (teacher, referee without answers, generator, a new instruction)."""
    seeds = read_instructions(data.path(SIZING_SEEDS), "self_instruct")

    def prompt(messages: list[dict[str, str]]) -> float:
        return sum(tokens(m["content"]) for m in messages)

    return (
        mean(prompt(prompts.teacher_messages(s.instruction, s.input)) for s in seeds),
        mean(prompt(prompts.referee_messages(s.text, "", "")) for s in seeds),
        mean(prompt(prompts.generator_messages("hard", s.instruction)) for s in seeds),
        mean(tokens(s.instruction) for s in seeds),
    )


def sizes(answer_tokens: float = ANSWER_TOKENS, referee_reply_tokens: float = REFEREE_REPLY_TOKENS) -> Sizes:
    """Tokens per request with answers and verdicts of these lengths."""
    teacher_in, referee_in, generator_in, new_instruction = _prompt_tokens()
    return Sizes(
        (teacher_in, answer_tokens),
        (referee_in + 2 * answer_tokens, referee_reply_tokens),
        (generator_in, new_instruction),
    )


def config_sizes(config: LionConfig) -> Sizes:
    """Tokens per request for this config: the assumed lengths, capped by each role's max_tokens."""
    answer = min(ANSWER_TOKENS, config.teacher.max_tokens, config.student.max_new_tokens)
    base = sizes(answer, min(REFEREE_REPLY_TOKENS, config.referee.max_tokens))
    generator_in, new_instruction = base.generator
    if config.loop.generator_max_tokens_per_word is None:
        new_instruction = min(new_instruction, config.generator.max_tokens)
    return replace(base, generator=(generator_in, new_instruction))


def requests(recipe: Recipe, ratios: Ratios) -> dict[str, int]:
    """API requests per role of the whole run."""
    judged, probed = sum(recipe.judged()), sum(recipe.probed())
    if recipe.skip_identical:
        judged *= 1 - ratios.identical_share
    new = recipe.new_per_iteration
    answered_rounds = recipe.iterations if recipe.final_imitation else recipe.iterations - 1
    teacher = recipe.seed_pool + new * answered_rounds + probed
    referee = 2 * (judged + probed) * (1 + ratios.repair_share)
    generator = recipe.iterations * new / ratios.keep_rate + probed
    return {"teacher": round(teacher), "referee": round(referee), "generator": round(generator)}


def priced(config: LionConfig, counts: Mapping[str, int], s: Sizes) -> dict[str, RoleCost]:
    """Tokens and USD of these request counts at each role's prices (batch price in mode batch)."""
    out = {}
    for role, n in counts.items():
        tin, tout = (n * t for t in getattr(s, role))
        out[role] = RoleCost(n, tin, tout, getattr(config, role).cost_usd(tin, tout))
    return out


def seed_pool_size(config: LionConfig) -> int:
    """Instructions in the configured seed file (pools.max_seed applied); PAPER_SEED_POOL when the file
    is not there (a shipped config names a file the user downloads, or SET-ME)."""
    path = Path(config.pools.seed_path)
    size = len(read_instructions(path, config.pools.format)) if path.is_file() else PAPER_SEED_POOL
    return min(size, config.pools.max_seed or size)


def project(config: LionConfig, seed_pool: int | None = None, ratios: Ratios | None = None) -> Projection:
    """The projected cost of the config's recipe (seed pool: `seed_pool`, else the configured file's)."""
    size = seed_pool_size(config) if seed_pool is None else seed_pool
    counts = requests(Recipe.of(config, size), ratios or Ratios())
    return Projection(size, priced(config, counts, config_sizes(config)))


def observed(projection: Projection, usage: Mapping[str, RoleUsage]) -> Projection:
    """The projection rescaled by a run's ledger (role → usage): each role's spend so far (unsettled
    requests at their worst case, as the budget counts them) plus its requests still to come at the USD
    and tokens per request its ledger recorded (at the assumed ones while none was answered). A role the
    projection does not know (an evaluation judge) counts with its spend only. Cache hits are not
    counted as work done: on a resume they are this run's own replies served again (already counted),
    and a reply another run paid for (a shared cache_dir) is then projected as paid — on the safe side."""
    roles = {}
    for role in {**projection.roles, **usage}:
        u = usage.get(role, RoleUsage())
        cost = projection.roles.get(role, RoleCost(0, 0.0, 0.0, 0.0))
        done, answered = u.requests, u.requests - u.unsettled
        left = max(cost.requests - done, 0)
        if answered > 0:
            per = (u.input_tokens / answered, u.output_tokens / answered, u.cost_usd / answered)
        else:
            per = tuple(x / max(cost.requests, 1) for x in (cost.input_tokens, cost.output_tokens, cost.usd))
        roles[role] = RoleCost(
            done + left,
            u.input_tokens + left * per[0],
            u.output_tokens + left * per[1] + u.unsettled_max_tokens,
            u.cost_usd + u.unsettled_max_usd + left * per[2],
        )
    return Projection(projection.seed_pool, roles)


def round_up(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """`value` rounded up to `digits` significant digits (74.4 → 75, 0.01234 → 0.013)."""
    if value <= 0:
        return 0.0
    step = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    return round(math.ceil(round(value / step, 9)) * step, 12)


def suggested_budget(projected: float) -> float:
    """A budget that finishes a recipe projected at `projected`: with BUDGET_MARGIN, rounded up."""
    return round_up(projected * BUDGET_MARGIN)
