"""Threads a run starts, which carry the context variables of the thread starting them.

A new thread starts with no context variables (before Python 3.14); a notebook
kernel (ipykernel 7) says by one which cell output belongs to, so what a submitted
run's threads print or show would land in whichever cell runs at the time, not in
the cell that submitted it.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from typing import TypeVar

from discodsl.errors import JobError

T = TypeVar("T")


def in_this_context(function: Callable[..., T]) -> Callable[..., T]:
    """``function``, to be run in another thread, in a copy of this thread's context
    variables (a copy per call: one context cannot be entered by two threads at once)."""
    return functools.partial(contextvars.copy_context().run, function)


def check_threads_start(refused: str) -> None:
    """A JobError (``refused``, then why) if no thread can start now, which a run that is
    not inline needs: Python 3.12 starts none while the interpreter shuts down (an atexit
    hook; before 3.12.3, also a thread still going after the main thread ended), nor does
    any at a limit of threads or memory, and each said so in a bare RuntimeError."""
    try:
        thread = threading.Thread(target=int, name="discodsl thread check", daemon=True)
        thread.start()
    except RuntimeError as exc:
        raise JobError(
            f"{refused}: it needs threads, and this Python starts none ({exc}); run it before "
            "the program ends (not from an atexit hook, nor a thread that outlives the main "
            "one), under a higher limit of threads or memory (ulimit -u, ulimit -v) if that "
            "is the cause, or with mode='inline'"
        ) from exc
    thread.join()
