"""Ctrl-C: a process-wide stop flag that the command line sets on SIGINT and that the long loops running
outside the event loop's reach check between steps — the fine-tune after every micro-batch, a training
subprocess's follower, the student's batched answers between batches — so that a run stops within
seconds, before anything is saved half-way (every file is written atomically; a stopped fine-tune saves
no checkpoint).

A signal is delivered to the main thread only, while Prefect runs a synchronous task (the fine-tune) in
a worker thread: without the flag the training would go on to the end after the flow was cancelled.
"""

from __future__ import annotations

import threading

STOP = threading.Event()


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop (Ctrl-C). A KeyboardInterrupt, so that nothing on the way (Prefect's
    task retries, `except Exception` handlers) mistakes it for a failure to retry or to record."""


def check(where: str = "") -> None:
    """Raise Interrupted if a stop was asked for."""
    if STOP.is_set():
        raise Interrupted(f"stopped on request{f' ({where})' if where else ''}")
