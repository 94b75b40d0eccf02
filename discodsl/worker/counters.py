"""Counters and status lines from stage code: ``count("malformed")``, ``status("half way")``.

Counts are summed per task and reported once at its end (one MSG, so the
master's rate limit is never at risk); runners add them up across tasks and
put them on the results. A status line is printed, which a worker forwards to
the master as a batched MSG and the inline runner shows at once.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

PREFIX = "discodsl-counters: "
# A worker process runs one task, so its counts live in one dict; a task run in the
# caller's process (inline) gets a dict of its own through this context variable, so
# runs in several threads do not mix their counts. A thread the stage code starts does
# not inherit the variable: its counts go to the one task running in this process's
# threads, if there is just one (else to the process's dict, as in a worker).
_process_counts: dict[str, int] = {}
_task_counts: ContextVar[dict[str, int] | None] = ContextVar("discodsl_counts", default=None)
_running: list[dict[str, int]] = []  # the counts of each task counting() is around
_lock = threading.Lock()  # stage code may count from several threads at once


def count(name: str, amount: int = 1) -> None:
    """Add ``amount`` to the counter ``name`` (summed over all tasks of the job)."""
    counts = _task_counts.get()
    if counts is None:
        counts = _running[0] if len(_running) == 1 else _process_counts
    with _lock:
        counts[name] = counts.get(name, 0) + amount


@contextmanager
def counting() -> Iterator[dict[str, int]]:
    """Collect the counts of the code run inside (in this thread, and in threads it starts
    while no other task counts) into a new dict."""
    counts: dict[str, int] = {}
    token = _task_counts.set(counts)
    with _lock:
        _running.append(counts)
    try:
        yield counts
    finally:
        _task_counts.reset(token)
        with _lock:
            _running[:] = [other for other in _running if other is not counts]


def status(text: str) -> None:
    """Report a status line to whoever watches the job."""
    print(f"status: {text}", file=sys.stderr, flush=True)


def take() -> dict[str, int]:
    """The counts so far, resetting them (one task's worth)."""
    with _lock:
        counts = dict(_process_counts)
        _process_counts.clear()
    return counts


def encode(counts: dict[str, int]) -> str:
    """The MSG text reporting ``counts``."""
    return PREFIX + json.dumps(counts, sort_keys=True)
