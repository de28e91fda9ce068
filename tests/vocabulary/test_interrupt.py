"""lion_core/interrupt.py: a stop is not an error."""

from __future__ import annotations

from lion_core.interrupt import Interrupted


def test_an_interrupt_is_not_an_error_that_prefect_retries() -> None:
    assert issubclass(Interrupted, KeyboardInterrupt) and not issubclass(Interrupted, Exception)
