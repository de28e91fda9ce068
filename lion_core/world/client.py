"""The offline world as an in-process ChatClient: the same roles as the HTTP server, without HTTP.

For benchmarks that run the loop many times (benchmarks/replication.py); everything else talks to
the server through the real `openai` client.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from random import Random

from lion_core.chat import Completion, Messages
from lion_core.world.roles import RoleSettings, reply
from lion_core.world.server import count_tokens, prompt_tokens, truncate_tokens


class WorldChatClient:
    """Answers like `lion world serve` (seeded per request and per repeat), in process."""

    def __init__(self, role: str, settings: RoleSettings | None = None, seed: int = 0) -> None:
        self.role = role
        self.model_name = "world"
        self.settings = settings or RoleSettings()
        self.seed = seed
        self.requests = 0
        self.input_tokens = 0  # usage as the server reports it: what a provider would bill
        self.output_tokens = 0
        self._seen: Counter[str] = Counter()

    async def complete(
        self, messages: Messages, *, variant: int = 0, max_tokens: int | None = None
    ) -> Completion:
        key = hashlib.sha256(json.dumps([messages, variant], sort_keys=True).encode()).hexdigest()
        self._seen[key] += 1
        self.requests += 1
        _, content = reply(messages, Random(f"{self.seed}:{key}:{self._seen[key]}"), self.settings)
        prompt = prompt_tokens(messages)
        finish = "stop"
        if max_tokens is not None and count_tokens(content) > max_tokens:  # as the server does
            content, finish = truncate_tokens(content, max_tokens), "length"
        self.input_tokens += prompt
        self.output_tokens += count_tokens(content)
        return Completion(content, finish, prompt, count_tokens(content))
