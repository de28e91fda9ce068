"""One async OpenAI-compatible chat client for every role (teacher, referee, generator, judge).

- the real `openai` SDK does the HTTP work and its retries: exponential backoff with jitter on 429
  (honouring Retry-After), 5xx, connection errors and timeouts;
- every HTTP request (retries included) passes a rate limiter (requests/min, tokens/min) and is
  counted in the ledger: it is booked at its prompt tokens (tiktoken, or a self-calibrating estimate:
  lion_core.api.tokens) + max_tokens, then corrected to the usage its reply reports; when the provider's
  rate-limit headers say it is out (or a 429 names a Retry-After) the whole client pauses;
- a persistent SQLite response cache keyed by (base_url, model, messages, decoding params): an
  identical request is paid once, ever; identical requests in flight at once are sent once;
- every request is journaled in the cache's database before it is sent, and its usage is committed
  with its reply (lion_core.api.journal): a kill loses no spend, and re-buys at most what was in flight;
- a budget guard refuses a request that could cross the budget (counting every unsettled request of
  the run at its worst case, across processes), before it is sent;
- the API key lives only in memory (SecretStr); it is never cached, logged or written.

The chat types are in lion_core.chat, the cache in lion_core.api.cache, a role's client is built
by lion_core.api.build. Run as (against a local world server): see `lion world serve`.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import openai
from pydantic import SecretStr

from lion_core.api.cache import ResponseCache, cache_key
from lion_core.api.journal import Ticket
from lion_core.api.ledger import BudgetGuard, Ledger
from lion_core.api.tokens import RateLimiter, TokenCounter, provider_limits, provider_wait
from lion_core.chat import Completion, LLMError, Messages
from lion_core.config import BudgetConfig, EndpointConfig

# Tokens a chat message costs beyond its text (role markers); used only for budget reservations.
MESSAGE_OVERHEAD_TOKENS = 4
CHAT_PATH = "/chat/completions"  # the requests the rate limiter books and paces

SEED_RANGE = 2**31  # OpenAI's `seed` is a signed 32-bit integer


@dataclass(frozen=True)
class Booking:
    """What one HTTP request was booked at in the rate limiter: prompt tokens + max_tokens."""

    messages: Messages
    prompt_tokens: int
    max_tokens: int

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.max_tokens


# The journaled request the current task is sending: the HTTP hook counts its attempts (retries).
_SENDING: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar("lion_sending", default=None)


class OpenAIChatClient:
    """A role's chat client over any OpenAI-compatible endpoint; see the module docstring."""

    def __init__(
        self,
        role: str,
        endpoint: EndpointConfig,
        *,
        cache: ResponseCache | None,
        ledger: Ledger,
        budget: BudgetConfig | None = None,
        api_key: SecretStr | None = None,
        accept: Callable[[str], bool] | None = None,
    ) -> None:
        self.role = role
        self.endpoint = endpoint
        self.model_name = endpoint.model
        self.cache = cache
        self.ledger = ledger
        ledger.attach(cache.journal if cache is not None else ledger.journal)
        self.guard = BudgetGuard(budget or BudgetConfig(), ledger)
        self.accept = accept
        self.chars_per_token = (budget or BudgetConfig()).chars_per_token
        self.limiter = RateLimiter(endpoint.requests_per_minute, endpoint.tokens_per_minute)
        self.counter = TokenCounter(endpoint.model, self.chars_per_token)
        self._bookings: weakref.WeakKeyDictionary[object, Booking] = weakref.WeakKeyDictionary()
        self._api_key = api_key
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sdk: openai.AsyncOpenAI | None = None
        self._slots: asyncio.Semaphore | None = None
        self._inflight: dict[str, asyncio.Future[Completion]] = {}

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIChatClient({self.role!r}, {self.endpoint.base_url!r}, model={self.model_name!r})"

    @property
    def params(self) -> dict[str, object]:
        """Decoding parameters sent with every request (part of the cache key)."""
        e = self.endpoint
        return {"temperature": e.temperature, "top_p": e.top_p, "max_tokens": e.max_tokens}

    def request_params(self, max_tokens: int | None = None) -> dict[str, object]:
        """The decoding parameters of one request: `max_tokens` overrides the endpoint's limit."""
        return self.params if max_tokens is None else {**self.params, "max_tokens": max_tokens}

    def sent_params(self, max_tokens: int | None = None, variant: int = 0) -> dict[str, object]:
        """What a request sends: its decoding parameters, and for the k-th sample of an otherwise
        identical request (variant > 0) the OpenAI `seed` parameter, so that a provider that honours
        seeds (the offline world does) answers each sample the same way whatever order they arrive in."""
        params = self.request_params(max_tokens)
        return {**params, "seed": variant % SEED_RANGE} if variant else params

    def key(self, messages: Messages, variant: int = 0, max_tokens: int | None = None) -> str:
        params = self.request_params(max_tokens)
        params = dict(params, variant=variant) if variant else params
        return cache_key(self.endpoint.identity, self.model_name, messages, params)

    def _bind(self) -> openai.AsyncOpenAI:
        """SDK client and semaphore of the running event loop (they cannot cross loops)."""
        loop = asyncio.get_running_loop()
        if self._sdk is None or self._loop is not loop:
            http = self._http_client()
            key = self._api_key.get_secret_value() if self._api_key else "no-key"
            self._sdk = openai.AsyncOpenAI(
                api_key=key,
                base_url=self.endpoint.base_url,
                timeout=self.endpoint.timeout_s,
                max_retries=self.endpoint.max_retries,
                http_client=http,
            )
            self._slots = asyncio.Semaphore(self.endpoint.concurrency)
            self._loop = loop
            self._inflight = {}
        return self._sdk

    def _http_client(self) -> openai.DefaultAsyncHttpxClient:
        """The SDK's HTTP client: each request is rate-limited and counted (`_on_http_request`), each
        reply corrects its booking and passes on the provider's rate-limit news (`_on_http_response`)."""
        hooks = {"request": [self._on_http_request], "response": [self._on_http_response]}
        return openai.DefaultAsyncHttpxClient(event_hooks=hooks)

    def booking(self, body: bytes) -> Booking:
        """A request body's booking: its prompt tokens (`TokenCounter`) + its max_tokens."""
        try:
            sent = json.loads(body)
            messages = [m for m in sent.get("messages") or [] if isinstance(m, dict)]
            out = int(sent.get("max_tokens") or sent.get("max_completion_tokens") or self.endpoint.max_tokens)
        except (ValueError, AttributeError, TypeError):
            messages, out = [{"content": body.decode("utf-8", "replace")}], self.endpoint.max_tokens
        return Booking(messages, self.counter.count(messages), out)

    async def _on_http_request(self, request: object) -> None:
        """Every chat request, retries included: rate-limit it, then count it on its journal ticket
        (other requests — the Batch API's files and batches, /models — are neither booked nor paced)."""
        if not str(getattr(getattr(request, "url", None), "path", "")).endswith(CHAT_PATH):
            return
        booking = self.booking(getattr(request, "content", b"") or b"")
        self._bookings[request] = booking
        await self.limiter.acquire(booking.tokens)
        ticket = _SENDING.get()
        if ticket is not None:
            ticket.attempts += 1

    async def _on_http_response(self, response: object) -> None:
        """Every reply: correct its booking to the usage it reports (a failed request used nothing),
        calibrate the token estimate, adopt the provider's announced limits where they are lower, and
        pause the whole client when the provider says it is out."""
        booking = self._bookings.pop(getattr(response, "request", None), None)
        if booking is None:
            return
        status = getattr(response, "status_code", 0)
        used = 0
        if getattr(response, "is_success", False):
            await response.aread()  # type: ignore[attr-defined]
            used = self._reported_usage(response, booking)
        self.limiter.correct(booking.tokens, used)
        headers = getattr(response, "headers", {})
        self.limiter.adopt(*provider_limits(headers))
        if (wait := provider_wait(status, headers, booking.tokens)) > 0:
            self.limiter.pause(wait)

    def _reported_usage(self, response: object, booking: Booking) -> int:
        """Total tokens a successful reply reports (its booking when it reports none)."""
        try:
            usage = json.loads(response.content)["usage"]  # type: ignore[attr-defined]
            prompt, total = int(usage["prompt_tokens"]), int(usage["total_tokens"])
        except (ValueError, KeyError, TypeError):
            return booking.tokens
        self.counter.learn(booking.messages, prompt)
        return total

    def _reservation(self, messages: Messages, max_tokens: int | None = None) -> tuple[float, int]:
        chars = sum(len(m.get("content", "")) for m in messages)
        prompt = math.ceil(chars / self.chars_per_token) + MESSAGE_OVERHEAD_TOKENS * (len(messages) + 1)
        out = self.endpoint.max_tokens if max_tokens is None else max_tokens
        return self.endpoint.cost_usd(prompt, out), prompt + out

    async def complete(
        self, messages: Messages, *, variant: int = 0, max_tokens: int | None = None
    ) -> Completion:
        """The reply to `messages`, from the cache if it was ever paid for.

        `variant` > 0 asks anew for an otherwise identical request (a retry, the k-th sample);
        `max_tokens` overrides the endpoint's limit for this request (part of the cache key).
        """
        sdk = self._bind()
        key = self.key(messages, variant, max_tokens)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self.ledger.add_cache_hit(self.role)
            return hit
        if key in self._inflight:
            self.ledger.add_cache_hit(self.role)
            return await asyncio.shield(self._inflight[key])
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            completion = await self._send(sdk, key, messages, max_tokens, variant)
            future.set_result(completion)
            return completion
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._inflight.pop(key, None)

    async def _send(
        self,
        sdk: openai.AsyncOpenAI,
        key: str,
        messages: Messages,
        max_tokens: int | None = None,
        variant: int = 0,
    ) -> Completion:
        """Journal the request (in flight, worst case; refused over budget), send it, then store the
        reply with its usage in one transaction. A request cut off here (a kill, a cancelled task)
        stays in flight in the journal, counted at its worst case."""
        worst = self._reservation(messages, max_tokens)
        assert self._slots is not None
        async with self._slots:  # only requests in flight hold a reservation, not the queue
            ticket = self.ledger.open(self.role, key, worst, self.guard.config)
            sending = _SENDING.set(ticket)
            try:
                reply = await sdk.chat.completions.create(
                    model=self.model_name, messages=messages, **self.sent_params(max_tokens, variant)
                )
            except openai.APIError as err:
                self.ledger.journal.fail(ticket)
                name = type(err).__name__
                raise LLMError(
                    f"{self.role} at {self.endpoint.base_url} failed after retries: {name}: {err}"
                ) from None
            finally:
                _SENDING.reset(sending)
            usage = reply.usage
            in_tok, out_tok = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
            choice = reply.choices[0]
            completion = Completion(
                choice.message.content or "", choice.finish_reason or "stop", in_tok, out_tok
            )
            self._record(key, completion, ticket)
        return completion

    def _record(self, key: str, completion: Completion, ticket: Ticket) -> None:
        """The reply and its usage, committed together (a rejected reply is kept but never served)."""
        usd = self.endpoint.cost_usd(completion.input_tokens, completion.output_tokens)
        if self.cache is not None:
            accepted = self.accept is None or self.accept(completion.content)
            self.cache.put(key, completion, settles=(ticket, usd), accepted=accepted)
            return
        journal = self.ledger.journal
        with journal.transaction() as db:
            journal.settle(db, ticket, (completion.input_tokens, completion.output_tokens, usd))
