"""What a chat request costs in tokens, and when it may be sent.

- `TokenCounter` counts a prompt: with the model's `tiktoken` encoding where tiktoken knows the model
  and the encoding can be loaded (tiktoken downloads it once, then reads its cache; offline it cannot),
  else with an estimate: characters / chars-per-token + a few tokens per message, where chars-per-token
  starts at `BudgetConfig.chars_per_token` and then learns from the prompt_tokens the replies report
  (self-calibrating). Counting never raises and never waits for a download.
- `RateLimiter` spaces requests under requests/min and tokens/min: a request is booked at its prompt
  tokens + max_tokens before it is sent, then `correct`ed to the usage its reply reports; `pause`
  stops the whole limiter (every request of the client) until a time the provider named.
- `provider_wait` reads the provider's rate-limit headers (OpenAI's `x-ratelimit-*`, and
  `retry-after-ms` / `retry-after` on a 429) into the seconds the limiter should pause;
  `provider_limits` reads the per-minute limits they announce, which the limiter adopts where they
  are below its own (or it has none).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

# OpenAI's chat format adds tokens around each message (role markers) and primes the reply.
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3
SECONDS_PER_MINUTE = 60.0
MS_PER_SECOND = 1000.0
TOO_MANY_REQUESTS = 429
# The longest pause a reply can impose (the openai SDK does not retry past a Retry-After of 60 s either).
MAX_PAUSE_S = 60.0
# OpenAI's reset headers: "1s", "6m0s", "120ms", "1.5s", "2h3m"; a bare number is seconds.
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
UNIT_SECONDS = {"ms": 1 / MS_PER_SECOND, "s": 1.0, "m": SECONDS_PER_MINUTE, "h": 3600.0}


def _text(content: Any) -> str:
    """A message's text (content parts as their JSON, so that nothing is counted as free)."""
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def _encoding_name(model: str) -> str | None:
    """tiktoken's encoding for `model`, or None (tiktoken absent, or the model unknown to it)."""
    try:
        from tiktoken.model import encoding_name_for_model
    except ImportError:
        return None
    try:
        return encoding_name_for_model(model)
    except KeyError:
        return None


class TokenCounter:
    """Prompt tokens of a chat request: tiktoken where available, a self-calibrating estimate otherwise.

    The estimate is ceil(characters / chars_per_token) + TOKENS_PER_MESSAGE per message +
    REPLY_PRIMING_TOKENS. chars_per_token starts at `chars_per_token` and, after each reply, becomes
    (all prompt characters seen) / (all prompt tokens the replies reported, less the per-message tokens).
    The encoding loads in a background thread: until it is there (or when it cannot load, offline), the
    estimate is used.
    """

    def __init__(self, model: str, chars_per_token: float) -> None:
        self.initial_chars_per_token = chars_per_token
        self.encoding: Any = None  # anything with .encode(text, disallowed_special=()) -> list
        self._chars = 0
        self._tokens = 0
        name = _encoding_name(model)
        if name is not None:
            threading.Thread(target=self._load, args=(name,), daemon=True).start()

    def _load(self, name: str) -> None:
        try:
            import tiktoken

            self.encoding = tiktoken.get_encoding(name)
        except Exception as err:  # offline, a broken cache: the estimate stays in use
            log.info("tiktoken encoding %s unavailable (%s): prompt tokens are estimated", name, err)

    @property
    def chars_per_token(self) -> float:
        """Characters per token of the estimate: learned from replies once there are some."""
        return self._chars / self._tokens if self._tokens else self.initial_chars_per_token

    @staticmethod
    def overhead(n_messages: int) -> int:
        """Tokens the chat format adds to a prompt of `n_messages` messages."""
        return TOKENS_PER_MESSAGE * n_messages + REPLY_PRIMING_TOKENS

    def count(self, messages: list[dict[str, Any]]) -> int:
        """Prompt tokens of `messages` (exact under tiktoken, else the estimate)."""
        texts = [_text(m.get("content") or "") for m in messages]
        encoding = self.encoding
        if encoding is not None:
            body = sum(len(encoding.encode(t, disallowed_special=())) for t in texts)
        else:
            body = math.ceil(sum(len(t) for t in texts) / self.chars_per_token)
        return body + self.overhead(len(messages))

    def learn(self, messages: list[dict[str, Any]], reported_prompt_tokens: int) -> None:
        """Calibrate the estimate on the prompt tokens a reply reported for `messages`."""
        text_tokens = reported_prompt_tokens - self.overhead(len(messages))
        chars = sum(len(_text(m.get("content") or "")) for m in messages)
        if text_tokens > 0 and chars > 0:
            self._chars += chars
            self._tokens += text_tokens


class RateLimiter:
    """Spaces requests so that requests/min and tokens/min are never exceeded (no bursts).

    Each `book` takes the next free slot on both schedules; `correct` gives back (or charges) the
    difference between a booking and what the request used; `pause` holds every request until a time.
    Safe across threads and event loops.
    """

    def __init__(
        self,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._next_request = 0.0
        self._next_tokens = 0.0
        self._paused_until = 0.0

    def book(self, tokens: int) -> float:
        """Book a slot for one request of `tokens`; returns seconds to wait before sending."""
        with self._lock:
            now = self.clock()
            start = max(now, self._paused_until)
            start = max(
                start, self._next_request if self.rpm else start, self._next_tokens if self.tpm else start
            )
            if self.rpm:
                self._next_request = start + SECONDS_PER_MINUTE / self.rpm
            if self.tpm:
                self._next_tokens = start + SECONDS_PER_MINUTE * tokens / self.tpm
            return start - now

    def correct(self, booked: int, used: int) -> None:
        """A request booked at `booked` tokens used `used`: the schedule moves by the difference."""
        if self.tpm:
            with self._lock:
                self._next_tokens -= SECONDS_PER_MINUTE * (booked - used) / self.tpm

    def cancel(self, tokens: int) -> None:
        """Give back a booking that was not sent (its request slot and its tokens)."""
        with self._lock:
            if self.rpm:
                self._next_request -= SECONDS_PER_MINUTE / self.rpm
        self.correct(tokens, 0)

    def adopt(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        """Limits the provider announced (x-ratelimit-limit-*): each lowers this limiter's own, or sets
        it where it has none."""
        with self._lock:
            if requests_per_minute:
                self.rpm = min(self.rpm or requests_per_minute, requests_per_minute)
            if tokens_per_minute:
                self.tpm = min(self.tpm or tokens_per_minute, tokens_per_minute)

    def pause(self, seconds: float) -> None:
        """No request starts in the next `seconds` (a later pause already set is kept)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock() + seconds)

    def paused_for(self) -> float:
        """Seconds until the pause ends (0 when not paused)."""
        with self._lock:
            return max(0.0, self._paused_until - self.clock())

    async def acquire(self, tokens: int) -> None:
        """Wait for a slot; a request woken inside a pause set meanwhile gives its slot back and books
        again after the pause (so that the queue resumes spaced, not all at once)."""
        while True:
            delay = self.book(tokens)
            if delay > 0:
                await asyncio.sleep(delay)
            if (paused := self.paused_for()) <= 0:
                return
            self.cancel(tokens)
            await asyncio.sleep(paused)


def parse_duration(value: str | None) -> float | None:
    """Seconds in an OpenAI reset header ("1s", "6m0s", "120ms", "1.5s", "20"); None if unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * UNIT_SECONDS[u] for n, u in parts)


def _number(headers: Mapping[str, str], name: str) -> float | None:
    try:
        return float(headers[name])
    except (KeyError, ValueError):
        return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a 429 asks to wait: `retry-after-ms`, else `retry-after` in seconds (a date is ignored)."""
    ms = _number(headers, "retry-after-ms")
    return ms / MS_PER_SECOND if ms is not None else _number(headers, "retry-after")


def _limit_wait(headers: Mapping[str, str], kind: str, need: float) -> float:
    """Seconds until `need` of `kind` (requests, tokens) is available again, from the x-ratelimit headers.

    The provider is out when remaining < need. Its reset header is the time until the whole per-minute
    limit is back; the wait is the time to refill only the shortfall at limit/minute, at most the reset.
    """
    remaining = _number(headers, f"x-ratelimit-remaining-{kind}")
    reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
    if remaining is None or reset is None or remaining >= need:
        return 0.0
    limit = _number(headers, f"x-ratelimit-limit-{kind}")
    if not limit or limit <= 0:
        return reset
    return min(reset, (need - remaining) * SECONDS_PER_MINUTE / limit)


def provider_limits(headers: Mapping[str, str]) -> tuple[float | None, float | None]:
    """(requests/min, tokens/min) a reply's x-ratelimit-limit-* headers announce (None where absent)."""
    return _number(headers, "x-ratelimit-limit-requests"), _number(headers, "x-ratelimit-limit-tokens")


def provider_wait(status: int, headers: Mapping[str, str], tokens: int) -> float:
    """Seconds the whole client should pause after a reply with `status` and `headers`, for a next
    request like this one of `tokens`: the 429's retry-after, or the time until the provider has a
    request and `tokens` again. 0 when the provider is not out (or says nothing)."""
    waits = [_limit_wait(headers, "requests", 1), _limit_wait(headers, "tokens", tokens)]
    if status == TOO_MANY_REQUESTS:
        waits.append(retry_after(headers) or 0.0)
    return min(max(waits), MAX_PAUSE_S)
