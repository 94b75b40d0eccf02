"""Counters and status lines from stage code: ``count("malformed")``, ``status("half way")``.

Counts are summed per task and reported once at its end (as few MSGs as hold
them, so the master's rate limit is never at risk); runners add them up across tasks and
put them on the results. A status line is printed, which a worker forwards to
the master as a batched MSG and the inline runner shows at once.
"""

from __future__ import annotations

import json
import operator
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from discodsl.worker.errors import brief

PREFIX = "discodsl-counters: "
# The longest counter name, as the JSON that carries it (non-ASCII escaped, as a worker
# sends it): a Disco master keeps only an event's first 8 KB, and a name past that would
# be lost there without a word.
MAX_NAME_JSON = 1024
# A worker process runs one task, in its main thread: its counts live in one dict. A task
# run in the caller's process (inline) gets a dict of its own through this context
# variable, so runs in several threads do not mix their counts. A thread the stage code
# starts inherits neither: it counts into a dict of its own (no lock on anyone's path),
# meant for the one task running in this process's threads if there is just one, else for
# the process's; the task takes those in when it ends (take(), counting()).
_process_counts: dict[str, int] = {}
_task_counts: ContextVar[dict[str, int] | None] = ContextVar("discodsl_counts", default=None)
_running: list[dict[str, int]] = []  # the counts of each task counting() is around
_owner = threading.get_ident()  # the thread whose counts are _process_counts
_threads: list[_ThreadCounts] = []  # the counts of threads stage code started
_here = threading.local()  # a thread's own _ThreadCounts
_lock = threading.RLock()  # around _running and _threads (a signal handler may take it again)


def count(name: str, amount: int = 1) -> None:
    """Add ``amount`` to the counter ``name`` (summed over all tasks of the job).

    A name is a ``str`` and an amount an integer (an ``IntEnum`` or a NumPy integer is
    taken as the int it stands for), as a counter travels to the master: anything else
    is a TypeError here, in every mode.
    """
    if name.__class__ is not str or amount.__class__ is not int:
        name, amount = _counter(name, amount)
    counts = _task_counts.get()
    if counts is None:
        counts = _process_counts if threading.get_ident() == _owner else _of_this_thread()
    old = counts.get(name)
    if old is None:  # a name new to this task's counts: checked once
        _check_name(name)
        old = 0
    counts[name] = old + amount


def _check_name(name: str) -> None:
    """A ValueError if ``name`` is too long to reach a Disco master whole."""
    size = len(json.dumps(name))
    if size > MAX_NAME_JSON:
        raise ValueError(
            f"count({brief(name, 40)}, ...): a counter's name is {size} bytes as the JSON "
            f"that reports it, over the {MAX_NAME_JSON} a name may take (a Disco master "
            "keeps only an event's first 8 KB): give it a shorter name"
        )


def _counter(name: Any, amount: Any) -> tuple[str, int]:
    """``name`` and ``amount`` as a counter's, or a TypeError saying what to pass instead."""
    if not isinstance(name, str):
        raise TypeError(
            f"count({brief(name, 40)}, ...): a counter's name is a str, not {type(name).__name__} "
            f"({brief(name, 40)}): name it with text, e.g. count(f'status {{code}}')"
        )
    try:
        return str(name), operator.index(amount)
    except TypeError:
        raise TypeError(
            f"count({name!r}, {brief(amount, 40)}) adds {brief(amount, 40)} "
            f"({type(amount).__name__}): "
            "counters count in integers, as Disco's do: round it, or count a smaller unit "
            "(milliseconds, not seconds)"
        ) from None


class _ThreadCounts:
    """One thread's counts, for ``target`` (a task's counts) until taken in."""

    def __init__(self, target: dict[str, int]) -> None:
        self.target, self.taken = target, False
        self.counts: dict[str, int] = {}


def _of_this_thread() -> dict[str, int]:
    """This thread's own counts for the task it counts for (see above)."""
    target = _running[0] if len(_running) == 1 else _process_counts
    mine: _ThreadCounts | None = getattr(_here, "counts", None)
    if mine is None or mine.taken or mine.target is not target:
        mine = _here.counts = _ThreadCounts(target)
        with _lock:
            _threads.append(mine)
    return mine.counts


def _take_in(target: dict[str, int]) -> None:
    """Add the counts threads made for ``target`` to it (call with _lock held: a signal
    handler's task, in this thread, may take it again, and change the list meanwhile)."""
    for mine in list(_threads):
        if mine.target is target:
            mine.taken = True
            for name, value in dict(mine.counts).items():  # a copy: it may still count
                target[name] = target.get(name, 0) + value
    _threads[:] = [mine for mine in _threads if not mine.taken]


def _forked() -> None:
    global _owner
    _owner = threading.get_ident()  # a worker forked by a fork server: its task's thread


if hasattr(os, "register_at_fork"):  # not on Windows, where nothing forks
    os.register_at_fork(after_in_child=_forked)


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
            _take_in(counts)


def status(text: str) -> None:
    """Report a status line to whoever watches the job: one write, so that the lines of
    threads reporting at once stay whole (print writes the newline apart)."""
    stream = sys.stderr
    if stream is not None:
        stream.write(f"status: {text}\n")
        stream.flush()


def take() -> dict[str, int]:
    """The counts so far, resetting them (one task's worth)."""
    with _lock:
        _take_in(_process_counts)
        counts = dict(_process_counts)
        _process_counts.clear()
    return counts


def decode(text: str) -> dict[str, int] | None:
    """The counts in a MSG text :func:`encode` made: the whole text, PREFIX and a JSON
    object (a trailing newline aside); None for any other text. A worker never sends
    printed output that starts with PREFIX (see capture), so a printed line is never
    counted."""
    if not text.startswith(PREFIX):
        return None
    try:
        counts = json.loads(text[len(PREFIX) :])
    except ValueError:
        return None
    if not isinstance(counts, dict):
        return None
    return {name: value for name, value in counts.items() if value.__class__ is int}


def encode(counts: dict[str, int], limit: int) -> list[str]:
    """The MSG texts reporting ``counts``: as few as hold them in ``limit`` bytes each (a
    Disco master keeps only the start of a longer event, and the JSON would not parse); a
    runner adds them up. A count too long to fit goes alone."""
    texts: list[str] = []
    parts: list[str] = []
    size = len(PREFIX) + 2  # the braces
    for name, value in sorted(counts.items()):
        part = f"{json.dumps(name)}: {json.dumps(value)}"
        if parts and size + 2 + len(part) > limit:
            texts.append(PREFIX + "{" + ", ".join(parts) + "}")
            parts, size = [], len(PREFIX) + 2
        size += len(part) + (2 if parts else 0)
        parts.append(part)
    if parts:
        texts.append(PREFIX + "{" + ", ".join(parts) + "}")
    return texts
