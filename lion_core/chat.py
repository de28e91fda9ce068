"""The chat vocabulary every role speaks: a conversation (`Messages`), a reply (`Completion`), the
`ChatClient` protocol the roles need, the error of an endpoint that kept failing, and `complete_all`,
many conversations at once through any client. The OpenAI client (lion_core.api.client), the Batch API
client (lion_core.api.batch), the offline world's in-process client and the tests' fakes implement it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

Messages = list[dict[str, str]]


class LLMError(RuntimeError):
    """A request failed after all retries; names the role and the endpoint, never the key."""


@dataclass(frozen=True)
class Completion:
    """One chat reply with its usage."""

    content: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    cached: bool = False


class ChatClient(Protocol):
    """What every role needs from an LLM; tests and the in-process world implement it too."""

    role: str
    model_name: str

    async def complete(
        self, messages: Messages, *, variant: int = 0, max_tokens: int | None = None
    ) -> Completion: ...


async def complete_all(
    client: ChatClient,
    conversations: Sequence[Messages],
    *,
    variants: Sequence[int] | None = None,
    max_tokens: Sequence[int | None] | None = None,
    on_done: Callable[[int], None] | None = None,
) -> list[Completion]:
    """Replies to many conversations concurrently (the client bounds concurrency), in input order.

    `max_tokens`: a per-conversation limit (None entries, or no list: the endpoint's own).
    """
    done = 0

    async def one(messages: Messages, variant: int, limit: int | None) -> Completion:
        nonlocal done
        result = (
            await client.complete(messages, variant=variant)
            if limit is None
            else await client.complete(messages, variant=variant, max_tokens=limit)
        )
        done += 1
        if on_done is not None:
            on_done(done)
        return result

    variants = variants if variants is not None else [0] * len(conversations)
    limits = max_tokens if max_tokens is not None else [None] * len(conversations)
    return list(
        await asyncio.gather(*(one(m, v, t) for m, v, t in zip(conversations, variants, limits, strict=True)))
    )
