"""Threads a run starts, which carry the context variables of the thread starting them.

A new thread starts with no context variables (before Python 3.14); a notebook
kernel (ipykernel 7) says by one which cell output belongs to, so what a submitted
run's threads print or show would land in whichever cell runs at the time, not in
the cell that submitted it.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def in_this_context(function: Callable[..., T]) -> Callable[..., T]:
    """``function``, to be run in another thread, in a copy of this thread's context
    variables (a copy per call: one context cannot be entered by two threads at once)."""
    return functools.partial(contextvars.copy_context().run, function)
