"""Prefect tasks for the API roles: one batch of requests per task, retried alone.

The client is never part of a cache key (`INPUTS - "client"`); the endpoint's identity is, through
the `endpoint` parameter. Every reply is also in the response cache, so a retried batch pays only
for the requests that had not been answered.
"""

from __future__ import annotations

from prefect import Task, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.tasks import exponential_backoff

from lion_core.api.budget import BudgetExceededError
from lion_core.chat import ChatClient, Completion
from lion_core.method import generation, referee, teacher
from lion_core.method.generation import GenerationRequest
from lion_core.records import Instruction, Judgement, RecordError, Response, write_failure

API_CACHE = INPUTS - "client" + TASK_SOURCE
JITTER = 0.5  # each retry delay varies by up to ±50%


def not_over_budget(task, task_run, state) -> bool:
    """Retry a failed batch unless retrying cannot help: it stopped at the budget, or the run's state
    could not be written (a full disk) or is damaged."""
    error = getattr(state, "data", None)
    if not isinstance(error, BaseException):
        return True
    return not (isinstance(error, BudgetExceededError | RecordError) or write_failure(error) is not None)


def endpoint_id(client: ChatClient) -> str:
    """What makes one endpoint's replies differ from another's (part of the batch cache key)."""
    endpoint = getattr(client, "endpoint", None)
    params = getattr(client, "params", {})
    return f"{getattr(endpoint, 'identity', '')}|{client.model_name}|{sorted(params.items())}"


api_task = task(cache_policy=API_CACHE, persist_result=True, retry_condition_fn=not_over_budget)


def with_retries(api: Task, retries: int, first_delay_s: float) -> Task:
    """The batch task with the run's retry policy: exponential backoff with jitter."""
    return api.with_options(
        retries=retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=first_delay_s) if first_delay_s else 0,
        retry_jitter_factor=JITTER,
    )


@api_task(name="teacher-batch", task_run_name="teacher-batch-{first}")
async def teacher_batch(
    client: ChatClient, endpoint: str, items: list[Instruction], first: int, send_inputs: bool = True
) -> list[Response]:
    """The teacher's answers to one batch of instructions (`send_inputs`: config `loop.send_inputs`)."""
    return await teacher.answer_all(client, items, send_inputs=send_inputs)


@api_task(name="referee-batch", task_run_name="referee-batch-{first}")
async def referee_batch(
    client: ChatClient,
    endpoint: str,
    items: list[tuple[str, str, str, str]],
    tau: float,
    retries: int,
    first: int,
    skip_identical: bool = False,
) -> list[Judgement]:
    """Two-order judgements of one batch of (id, instruction, teacher answer, student answer); equal
    answers get the verdict `identical` without a request when `skip_identical`."""
    return await referee.judge_all(client, items, tau=tau, retries=retries, skip_identical=skip_identical)


@api_task(name="generator-batch", task_run_name="generator-batch-{first}")
async def generator_batch(
    client: ChatClient, endpoint: str, requests: list[GenerationRequest], first: int
) -> list[Completion]:
    """The generator's replies to one batch of requests (each a distinct variant with its own token
    limit)."""
    return await generation.send(client, requests)
