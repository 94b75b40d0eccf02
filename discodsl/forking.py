"""The locks a fork of this process waits for, with their ``os.register_at_fork`` hooks
registered as ``import discodsl`` runs, before any run.

A lock that another thread holds when a process forks is held in the child by a thread it
does not have, and the child waits for it for good: each of these is taken by a fork
(before it) and let go after it, in parent and child. Their hooks are registered here,
early, because a hook registered while another thread forks is run after the fork without
having run before it: a module that registered its own on its first import (the first run
imports most of discodsl) let its lock be held in the child, and the child hung.

- :data:`IMPORTING`: held while a run picks its runner, which imports it.
- :data:`PICKLING`: held while cloudpickle's by-value registry, one for the process, is
  changed for a run's pickling (:func:`discodsl.shipping.by_value`), and while the classes an
  inline run may change are noted or put back (:func:`discodsl.shipping.task_classes`).

One lock a fork does not wait for: :data:`TASK_CLASSES`, held for a whole inline task, which
may take long. A child gets a new one instead, and what :func:`in_child` was given mends
what the task left (its classes, with the task's copies of their attributes).
"""

from __future__ import annotations

import logging  # noqa: F401 (its fork hook first: a fork waits for an import before it)
import os
import threading
from collections.abc import Callable

IMPORTING = threading.RLock()
PICKLING = threading.RLock()
TASK_CLASSES = threading.RLock()
_MENDS: list[Callable[[], None]] = []


def in_child(mend: Callable[[], None]) -> None:
    """Have ``mend`` called in each child forked from now on, after it got a new
    TASK_CLASSES."""
    _MENDS.append(mend)


def _in_child() -> None:
    global TASK_CLASSES
    TASK_CLASSES = threading.RLock()  # a thread the child does not have may hold the old one
    for mend in _MENDS:
        mend()


def _waited_for_by_forks(lock: threading.RLock) -> None:
    if hasattr(os, "register_at_fork"):  # not on Windows, where nothing forks
        os.register_at_fork(
            before=lock.acquire, after_in_parent=lock.release, after_in_child=lock.release
        )


# A fork runs the last registered first: it waits for an import, then for a pickling.
_waited_for_by_forks(PICKLING)
_waited_for_by_forks(IMPORTING)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_child)
