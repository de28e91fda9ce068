"""lion_core/api/tokens.py: the rate limiter, OpenAI's reset durations, token counts."""

from __future__ import annotations

from lion_core.api.tokens import RateLimiter, TokenCounter, parse_duration


def test_rate_limiter_spaces_requests_and_tokens() -> None:
    now = [100.0]
    limiter = RateLimiter(requests_per_minute=60, tokens_per_minute=600, clock=lambda: now[0])
    delays = [limiter.book(tokens=5) for _ in range(4)]
    assert delays == [0.0, 1.0, 2.0, 3.0]  # one request per second
    heavy = RateLimiter(requests_per_minute=None, tokens_per_minute=600, clock=lambda: now[0])
    assert [heavy.book(tokens=100) for _ in range(3)] == [0.0, 10.0, 20.0]  # 100 tokens = 10 s at 600/min


def test_openai_reset_durations_are_read() -> None:
    assert parse_duration("1s") == 1 and parse_duration("6m0s") == 360 and parse_duration("120ms") == 0.12
    assert parse_duration("1.5s") == 1.5 and parse_duration("2h3m") == 7380 and parse_duration("20") == 20
    assert parse_duration("soon") is None and parse_duration("") is None


def test_an_encoding_counts_exactly_and_a_missing_one_never_fails() -> None:
    counter = TokenCounter("gpt-4o-mini", chars_per_token=2.0)  # offline, its encoding cannot load
    messages = [{"role": "user", "content": "count <|endoftext|> these words"}]
    assert counter.count(messages) > 0

    class Words:
        def encode(self, text: str, disallowed_special: tuple = ()) -> list[str]:
            return text.split()

    counter.encoding = Words()
    assert counter.count(messages) == 4 + TokenCounter.overhead(1)
