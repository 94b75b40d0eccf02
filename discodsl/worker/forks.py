"""A process that stage code forked and that went on with the task: a child that returns
from ``os.fork()`` into the stage, and so into the worker, instead of ending.

Such a child reads the task's inputs and writes its record files and protocol messages
as its parent does (the same descriptors: what it reads, its parent never sees), and its
copies cut into the parent's. The worker names its task's process (:func:`own_task`);
the readers and writers check, as they read a buffer of an input, open a file, write a
hunk or send a message, that they run in it. A child that does not is ended at once,
saying why, with nothing read, flushed or removed, and the task goes on in its own
process. Outside a worker (inline) no process is named, and nothing is checked.
"""

from __future__ import annotations

import os

_TASK: list[int | None] = [None]  # the pid of the worker process running the task


def own_task() -> None:
    """Name this process as the one running the worker's task."""
    _TASK[0] = os.getpid()


def check(action: str, what: str) -> None:
    """End this process if it is a child of the task's process, about to ``action``
    (read, write) ``what``."""
    owner = _TASK[0]
    if owner is not None and os.getpid() != owner:
        _end_child(owner, f"{action} {what}")


def _end_child(owner: int, what: str) -> None:
    said = (
        f"discodsl: process {os.getpid()}, which stage code forked from the task's process "
        f"{owner}, went on with the task (it was to {what}): it ends here, and the "
        "task goes on without it; end a forked child with os._exit() when its work is done\n"
    )
    try:
        os.write(2, said.encode("utf-8", "replace"))
    finally:
        os._exit(70)  # no flush, no cleanup: those are the parent's
