"""Evaluate a candidate (a student checkpoint or any endpoint) as the paper did, as a Prefect flow.

Run as:
    lion eval configs/demo.yaml --candidate runs/demo/iter_3/student \\
        --questions package:vicuna_bench_questions.jsonl --world 180
    lion eval configs/openai.yaml --candidate runs/openai/iter_3/student --harness bbh,agieval

Judge protocol (`evaluation.protocol`, or --protocol): the reference (the teacher endpoint: with its
own prompt for `lion`, as FastChat's ChatGPT baseline for `vicuna`) and the candidate answer every
question; the judge scores both in both orders; relative score = sum(candidate) / sum(reference). Answers and
judgements go through the response cache like every other paid call. Results: RUN/eval/<name>/.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections import Counter
from pathlib import Path
from random import Random
from typing import Any

from prefect import flow

from flows.fanout import api_fan_out, in_run_dir
from lion_core import data as packaged_data
from lion_core.api.build import build_client
from lion_core.api.cache import ResponseCache
from lion_core.api.ledger import Ledger
from lion_core.chat import ChatClient
from lion_core.config import EndpointConfig, LionConfig, load_config
from lion_core.evaluation.harness import HarnessError
from lion_core.evaluation.protocols import (
    REVIEW_TEMPERATURE,
    check_inputs,
    reference_endpoint,
    relative_score,
    resolve_protocol,
    verdict,
)
from lion_core.records import Instruction, Judgement, Response, read_instructions, write_jsonl
from lion_core.run.rundir import RunDir, RunLock, check_endpoints, response_cache
from lion_core.run.state import check_cache
from lion_core.student.checkpoint import fingerprint
from lion_core.world.evaluation import read_world_set, score_world
from lion_core.world.families import Task, sample_tasks
from tasks.api import referee_batch, teacher_batch
from tasks.evaluation import harness_task, publish, reference_batch, review_batch
from tasks.student import answers_step

WORLD_LEVELS = (1, 2)
WORLD_SEED_OFFSET = 7919  # a stream of its own, apart from the seed pool's


def question_path(questions: str | None) -> str | None:
    """The question file's path: `package:NAME` names a set shipped in lion_core/data."""
    return None if questions is None else str(packaged_data.resolve(questions))


def default_out(config: LionConfig, candidate: str) -> Path:
    """RUN/eval/<candidate as a file name>."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", candidate.rstrip("/")).strip("_")[-80:]
    return config.run_dir / "eval" / name


async def answers(
    config: LionConfig,
    answerer: Path | ChatClient,
    items: list[Instruction],
    ledger: Ledger,
    label: str,
    out: Path,
) -> list[Response]:
    """A checkpoint's batched answers (one cached task, through OUT/<label>-{questions,answers}.jsonl),
    or an endpoint's (batched API tasks); `label` (reference, candidate, …) names the tasks."""
    if isinstance(answerer, Path):
        questions = out / f"{label}-questions.jsonl"
        write_jsonl(questions, items)
        return answers_step(
            config, answerer, questions, out / f"{label}-answers.jsonl", f"{label}-student-answers", True
        )
    description = f"{label}: answers of {answerer.model_name}"
    return await api_fan_out(
        config, teacher_batch, answerer, items, description, ledger, run_name=f"{label}-batch-{{first}}"
    )


async def judgements_of(
    config: LionConfig,
    protocol: str,
    judge: ChatClient,
    items: list[Instruction],
    reference: list[Response],
    candidate: list[Response],
    ledger: Ledger,
) -> list[Judgement]:
    """Both orders judged per question: FastChat's review prompts (vicuna) or the referee's (lion)."""
    rows = list(zip(items, reference, candidate))
    if protocol == "vicuna":
        reviews = [(q.id, q.text, q.category, r.output, c.output) for q, r, c in rows]
        description = "judge (FastChat review), both orders"
        return await api_fan_out(config, review_batch, judge, reviews, description, ledger)
    triples = [(q.id, q.text, r.output, c.output) for q, r, c in rows]
    return await api_fan_out(
        config,
        referee_batch,
        judge,
        triples,
        "judge, both orders",
        ledger,
        tau=0.0,
        retries=config.loop.referee_retries,
    )


async def reference_of(
    config: LionConfig,
    protocol: str,
    clients: dict[str, ChatClient],
    items: list[Instruction],
    ledger: Ledger,
    out: Path,
) -> list[Response]:
    """The reference answers: the teacher's (Lion's teacher prompt; protocol lion), or FastChat's ChatGPT
    baseline's from the teacher's endpoint (the bare question, its system prompt, T 1.0; vicuna)."""
    if protocol != "vicuna":
        return await answers(config, clients["teacher"], items, ledger, "reference", out)
    client = clients["reference"]
    description = f"reference: FastChat baseline answers of {client.model_name}"
    return await api_fan_out(
        config, reference_batch, client, items, description, ledger, run_name="reference-batch-{first}"
    )


async def judge_protocol(
    config: LionConfig,
    candidate: Path | ChatClient,
    clients: dict[str, ChatClient],
    questions: Path,
    out: Path,
    ledger: Ledger,
    protocol: str,
) -> dict[str, Any]:
    """Reference and candidate answer; the judge scores both orders; relative score per category."""
    items = read_instructions(questions)
    reference = await reference_of(config, protocol, clients, items, ledger, out)
    candidate_answers = await answers(config, candidate, items, ledger, "candidate", out)
    judgements = await judgements_of(
        config, protocol, clients["judge"], items, reference, candidate_answers, ledger
    )
    write_jsonl(out / "reference.jsonl", reference)
    write_jsonl(out / "candidate.jsonl", candidate_answers)
    categories = {q.id: q.category for q in items}
    verdicts = [verdict(j, categories[j.id]) for j in judgements]
    write_jsonl(out / "judgements.jsonl", verdicts)
    return {
        **relative_score(judgements, categories).to_dict(),
        "protocol": protocol,
        "winners": dict(Counter(v.winner for v in verdicts)),
    }


def world_tasks(config: LionConfig, n: int) -> list[Task]:
    """The held-out world set (its first n), else n fresh tasks uniform over families and levels."""
    path = config.evaluation.heldout_path
    if path is not None:
        return read_world_set(Path(path))[:n]
    families = config.world.families if config.world else None
    return sample_tasks(n, Random(config.loop.seed + WORLD_SEED_OFFSET), families, WORLD_LEVELS)


def world_source(config: LionConfig) -> str:
    """Where the world tasks come from, for the report (a fresh draw may overlap training data)."""
    path = config.evaluation.heldout_path
    if path is not None:
        return f"held-out set {path}"
    return "a fresh draw, not checked against training data (set evaluation.heldout_path for a held-out set)"


async def world_protocol(
    config: LionConfig, candidate: Path | ChatClient, teacher: ChatClient, n: int, ledger: Ledger, out: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Exact match of the candidate and of the teacher (the oracle: 100%) per family and level."""
    tasks = world_tasks(config, n)
    items = [Instruction(id=f"world-{i:05d}", instruction=t.instruction) for i, t in enumerate(tasks)]
    mine = await answers(config, candidate, items, ledger, "world-candidate", out)
    oracle = await answers(config, teacher, items, ledger, "world-teacher", out)
    return (
        score_world(tasks, [a.output for a in mine]).to_dict(),
        score_world(tasks, [a.output for a in oracle]).to_dict(),
    )


def role_endpoints(config: LionConfig, protocol: str, questions: str | None) -> dict[str, EndpointConfig]:
    """The endpoints the evaluation asks: the teacher (world oracle, lion reference), and for the judge
    protocol the judge, and for vicuna the reference at FastChat's baseline decoding."""
    roles: dict[str, EndpointConfig | None] = {"teacher": config.teacher}
    if questions:
        roles["judge"] = judge_endpoint(config, protocol)
        if protocol == "vicuna":
            roles["reference"] = reference_endpoint(config.teacher)
    return {role: endpoint for role, endpoint in roles.items() if endpoint is not None}


def judge_endpoint(config: LionConfig, protocol: str) -> EndpointConfig | None:
    """The judge's endpoint; the vicuna protocol judges at FastChat's temperature whatever the config says."""
    judge = config.evaluation.judge
    if judge is None or protocol != "vicuna":
        return judge
    return judge.model_copy(update={"temperature": REVIEW_TEMPERATURE})


def resolve_candidate(
    config: LionConfig, candidate: str, model: str | None, ledger: Ledger, cache: ResponseCache
) -> Path | ChatClient:
    """A local checkpoint directory, or an OpenAI-compatible endpoint URL (with `model`)."""
    if Path(candidate).is_dir():
        return Path(candidate)
    endpoint = EndpointConfig(
        **{**config.teacher.model_dump(), "base_url": candidate, "model": model or "candidate"}
    )
    return build_client("candidate", endpoint, ledger=ledger, cache=cache, budget=config.budget)


def endpoints_used(
    config: LionConfig, candidate: str, questions: str | None, protocol: str
) -> dict[str, EndpointConfig]:
    """The endpoints an evaluation asks, by the field that names each (the candidate's when it is one)."""
    used = {"teacher.base_url": config.teacher}
    judge = judge_endpoint(config, protocol)
    if questions and judge is not None:
        used["evaluation.judge.base_url"] = judge
    if not Path(candidate).is_dir():
        used["--candidate"] = config.teacher.model_copy(update={"base_url": candidate})
    return used


@flow(name="evaluate")
async def evaluate(
    config: LionConfig,
    candidate: str,
    questions: str | None = None,
    world: int = 0,
    harness: str | None = None,
    candidate_model: str | None = None,
    out_dir: str | None = None,
    protocol: str | None = None,
) -> dict[str, Any]:
    """Judge protocol (`lion` or `vicuna`; None: the config's evaluation.protocol) on `questions`, world
    exact match on `world` tasks, lm-eval `harness` tasks. `questions` may name a packaged set
    (package:vicuna_bench_questions.jsonl). Like a run, it takes the run directory's lock, asks each
    endpoint once and checks the response cache before any work."""
    questions = question_path(questions)
    protocol = resolve_protocol(config, protocol)
    check_inputs(config, candidate, questions, world, harness, protocol)
    run = RunDir(config.run_dir)
    with RunLock(run):  # a deployment run's own; inside `lion eval`, the command's
        check_endpoints(config, endpoints_used(config, candidate, questions, protocol))
        check_cache(response_cache(config), run)
        out = Path(out_dir) if out_dir else default_out(config, candidate)
        ledger = Ledger(run.ledger, scope="eval")
        try:
            result = await evaluation(
                config, candidate, questions, world, harness, candidate_model, out, protocol, ledger
            )
        finally:
            with contextlib.suppress(OSError, sqlite3.Error):  # a view: a full disk must not hide a failure
                ledger.settle_unrecorded()
            ledger.save_quietly()
    result["report"] = str(out / "report.md")
    publish(result, out)
    return result


async def evaluation(
    config: LionConfig,
    candidate: str,
    questions: str | None,
    world: int,
    harness: str | None,
    candidate_model: str | None,
    out: Path,
    protocol: str,
    ledger: Ledger,
) -> dict[str, Any]:
    """The evaluation's parts (see `evaluate`), into `out`, paid through `ledger`."""
    cache = ResponseCache(response_cache(config))
    clients: dict[str, ChatClient] = {
        role: build_client(role, endpoint, ledger=ledger, cache=cache, budget=config.budget)
        for role, endpoint in role_endpoints(config, protocol, questions).items()
    }
    subject = resolve_candidate(config, candidate, candidate_model, ledger, cache)
    result: dict[str, Any] = {"candidate": candidate}
    if questions:
        result["judge"] = await judge_protocol(
            config, subject, clients, Path(questions), out, ledger, protocol
        )
    if world:
        result["world"], result["world_teacher"] = await world_protocol(
            config, subject, clients["teacher"], world, ledger, out
        )
        result["world_source"] = world_source(config)
    if harness:
        assert isinstance(subject, Path)  # check_inputs: the harness needs a checkpoint
        names = [t.strip() for t in harness.split(",") if t.strip()]
        try:
            result["harness"] = harness_task(
                str(subject), names, config.student.precision, fingerprint(subject)
            )
        except HarnessError as err:  # the other results stand; the error is reported with them
            result["harness_error"] = str(err)
    return result


@flow(name="evaluate-from-file")
async def evaluate_from_file(
    config_path: str,
    candidate: str,
    questions: str | None = None,
    world: int = 0,
    harness: str | None = None,
    candidate_model: str | None = None,
    protocol: str | None = None,
) -> dict[str, Any]:
    """The evaluate flow with its config read from a YAML file (for deployments and schedules)."""
    config = load_config(config_path)
    return await in_run_dir(config, evaluate)(
        config, candidate, questions, world, harness, candidate_model, protocol=protocol
    )
