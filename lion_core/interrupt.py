"""Stopping: a process-wide stop flag that the command line sets on Ctrl-C, SIGTERM or SIGHUP and that
the long loops running outside the event loop's reach check between steps — the fine-tune after every
micro-batch, a training subprocess's follower, the student's batched answers between batches — so that
a run stops within seconds, before anything is saved half-way (every file is written atomically; a
stopped fine-tune saves no checkpoint); and children that end with the process that started them.

A signal is delivered to the main thread only, while Prefect runs a synchronous task (the fine-tune) in
a worker thread: without the flag the training would go on to the end after the flow was cancelled.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Callable

STOP = threading.Event()
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when the thread that started it ends


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop (Ctrl-C, SIGTERM, SIGHUP). A KeyboardInterrupt, so that nothing on the
    way (Prefect's task retries, `except Exception` handlers) mistakes it for a failure to retry or to
    record."""


def check(where: str = "") -> None:
    """Raise Interrupted if a stop was asked for."""
    if STOP.is_set():
        raise Interrupted(f"stopped on request{f' ({where})' if where else ''}")


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess.Popen: the child gets `signum` when the thread that started it
    ends — with its process, however that ends, SIGKILL included (Linux prctl PR_SET_PDEATHSIG; kept
    across exec). None where there is no prctl (not Linux): the caller's own stopping is all there is.

    Start the child from a thread that lives as long as the child should (the main thread, or the one
    that waits for it)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signum)

    return preexec
