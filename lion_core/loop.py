"""The Lion loop as plain Python (no Prefect): imitation → discrimination → generation → pools.

For scripts, benchmarks and tests. The Prefect flows (flows/iteration.py) run the same stages as
cached, retried tasks; each stage here is one function of lion_core calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lion_core import referee, teacher
from lion_core.config import LionConfig, StudentConfig
from lion_core.discrimination import Split, split
from lion_core.generation import Ask, GenerationResult, asker, generate
from lion_core.ledger import Ledger
from lion_core.llm import ChatClient, ResponseCache, build_client
from lion_core.novelty import NoveltyIndex
from lion_core.pools import Pools, next_pools
from lion_core.records import Instruction, Judgement, Response
from lion_core.student.data import sft_pairs, student_prompts
from lion_core.student.generate import answer
from lion_core.student.train import TrainResult, finetune


@dataclass(frozen=True)
class Roles:
    """The three roles the proprietary LLM plays (often one endpoint, three clients)."""

    teacher: ChatClient
    referee: ChatClient
    generator: ChatClient
    ledger: Ledger | None = None


def build_roles(config: LionConfig, ledger: Ledger, cache: ResponseCache) -> Roles:
    """One client per role from the config (keys from the environment; raises before any work)."""
    clients = {
        role: build_client(role, endpoint, ledger=ledger, cache=cache, budget=config.budget)
        for role, endpoint in config.endpoints().items()
        if role in ("teacher", "referee", "generator")
    }
    return Roles(**clients, ledger=ledger)


def cache_path(config: LionConfig) -> Path:
    """The response cache file: shared cache_dir, else inside the run directory."""
    return (config.cache_dir or config.run_dir) / "responses.sqlite"


@dataclass
class Discrimination:
    """The judged Cache Pool."""

    teacher: list[Response]
    student: list[Response]
    judgements: list[Judgement]
    split: Split


@dataclass
class IterationOutcome:
    """Everything one iteration produced (`discrimination.teacher`: the teacher's answers to the whole
    Cache Pool)."""

    iteration: int
    pools: Pools
    train: TrainResult
    discrimination: Discrimination
    generation: GenerationResult | None  # None when the loop stopped before generation
    next_pools: Pools | None  # None when the loop stops here
    stopped: str | None  # why the loop stops after this iteration


def training_answers(
    config: LionConfig, pools: Pools, new: list[Response], known: list[Response]
) -> list[Response]:
    """The round's data: the Train Pool's answers (the paper), or the whole Cache Pool's (everything
    taught so far: guards against forgetting)."""
    if config.student.train_data == "cumulative":
        return answers_for(pools.cache_pool, [*known, *new])
    return new


async def imitate(
    roles: Roles, config: LionConfig, pools: Pools, checkpoint: Path, out_dir: Path, known: list[Response]
) -> tuple[list[Response], TrainResult]:
    """The teacher answers the Train Pool; the student is fine-tuned, continuing from `checkpoint`."""
    answers = await teacher.answer_all(roles.teacher, pools.train_pool)
    pairs = sft_pairs(config.student.prompt_template, training_answers(config, pools, answers, known))
    result = finetune(checkpoint, pairs, out_dir, config.student, seed=config.loop.seed)
    return answers, result


def student_answers(
    student: StudentConfig,
    checkpoint: Path,
    items: list[Instruction],
    seed: int,
    on_batch: Callable[[int], None] | None = None,
) -> list[Response]:
    """The student's batched answers to instructions (`seed` matters when sampling)."""
    texts = student_prompts(student.prompt_template, items)
    outputs = answer(checkpoint, texts, student, seed=seed, on_batch=on_batch)
    model = f"student:{Path(checkpoint).parent.name}"
    return [
        Response(id=i.id, instruction=i.instruction, input=i.input, output=o, model=model)
        for i, o in zip(items, outputs)
    ]


async def discriminate(
    roles: Roles,
    config: LionConfig,
    cache_pool: list[Instruction],
    teacher_answers: list[Response],
    checkpoint: Path,
) -> Discrimination:
    """The student answers the Cache Pool; the referee judges both orders; hard iff gap ≥ tau.

    The teacher's answers are the ones already paid for (earlier iterations and this Train Pool): the
    Cache Pool is never re-sent to the teacher.
    """
    student_out = student_answers(config.student, checkpoint, cache_pool, config.loop.seed)
    items = [(i.id, i.text, t.output, s.output) for i, t, s in zip(cache_pool, teacher_answers, student_out)]
    judgements = await referee.judge_all(
        roles.referee, items, tau=config.loop.tau, retries=config.loop.referee_retries
    )
    return Discrimination(teacher_answers, student_out, judgements, split(cache_pool, judgements))


def answers_for(pool: list[Instruction], known: list[Response]) -> list[Response]:
    """The known answers to a pool's instructions, in pool order (KeyError names a missing one)."""
    by_id = {r.id: r for r in known}
    missing = [i.id for i in pool if i.id not in by_id]
    if missing:
        raise KeyError(f"no teacher answer for {len(missing)} Cache Pool instructions, e.g. {missing[:3]}")
    return [by_id[i.id] for i in pool]


async def generate_new(
    ask: Ask, config: LionConfig, iteration: int, cache_pool: list[Instruction], judged: Split
) -> GenerationResult:
    """N new instructions from hard and easy parents, novel against the Cache Pool's instructions
    (without their inputs: a new instruction has none, and the original compares instructions alone).

    `ask` sends generator requests: `asker(client)` here, batched Prefect tasks in the flow.
    """
    loop = config.loop
    index = NoveltyIndex(loop.rouge_threshold, texts=[i.instruction for i in cache_pool])
    return await generate(
        ask,
        judged.hard,
        judged.easy,
        index,
        n=loop.new_per_iteration,
        ratio=loop.hard_easy_ratio,
        min_words=loop.min_words,
        rounds=loop.generation_rounds,
        iteration=iteration,
        seed=loop.seed,
    )


async def run_iteration(
    roles: Roles,
    config: LionConfig,
    iteration: int,
    pools: Pools,
    checkpoint: Path,
    out_dir: Path,
    known: list[Response] | None = None,
) -> IterationOutcome:
    """One adversarial iteration; the new checkpoint is saved under `out_dir / 'student'`.

    `known`: the teacher's answers of earlier iterations (they cover the Cache Pool minus the Train
    Pool); the outcome's `discrimination.teacher` is the next iteration's `known`.
    """
    known = known or []
    answers, train = await imitate(roles, config, pools, checkpoint, out_dir / "student", known)
    teacher_cache = answers_for(pools.cache_pool, [*known, *answers])
    judged = await discriminate(roles, config, pools.cache_pool, teacher_cache, Path(train.checkpoint))
    stopped = stop_after_discrimination(config, judged.split)
    gen = (
        None
        if stopped
        else await generate_new(asker(roles.generator), config, iteration, pools.cache_pool, judged.split)
    )
    stopped = stopped or stop_after_generation(gen)
    after = None if stopped else next_pools(pools, gen.kept)  # type: ignore[union-attr]
    return IterationOutcome(iteration, pools, train, judged, gen, after, stopped)


def stop_after_discrimination(config: LionConfig, split: Split) -> str | None:
    """Why the loop stops before generation, or None: no scorable verdict to learn from, or
    equilibrium (the referee can no longer tell teacher and student apart)."""
    if not split.hard and not split.easy:
        return (
            f"no scorable judgements: all {len(split.unscorable)} Cache Pool instructions are unscorable "
            "(the reasons are in judgements.jsonl)"
        )
    bound = config.loop.equilibrium_hard_share
    if bound and split.hard_share < bound:
        return f"equilibrium: hard share {split.hard_share:.1%} < {bound:.1%}"
    return None


def stop_after_generation(generation: GenerationResult | None) -> str | None:
    """Why the loop stops after generation, or None: no new instruction survived the filters."""
    if generation is None or generation.kept:
        return None
    return f"no new instruction kept: {generation.requested} requested, none passed the filters"
