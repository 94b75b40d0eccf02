"""The task a stage runs in, :func:`this_task`: what Disco's ``this_name()``,
``this_host()``, ``this_master()``, ``this_partition()`` and ``this_inputs()`` tell a
classic job's functions.

A task is this thread's while it runs; in a worker (locally or on a cluster), which runs
one task at a time, a thread the stage starts sees it too. Inline, in the program's own
process, only the task's thread does (another may be the program's, or outlive its task).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from discodsl.worker.errors import StageError


class ThisTask:
    """What task a stage runs in.

    ``job``: the run's name (Disco's ``this_name()``, ``wordcount@...``; inline, the
    job's). ``stage`` and ``taskid``: the stage and the task's number in the job.
    ``partition``: a reduce's (a ``group_label`` stage's) partition, else the task's
    number, as Disco's ``this_partition()`` gives them. ``host``: the node running it.
    ``master``: the master's URL ("" locally and inline: no master). ``input``: the URL of
    the input a map is reading now ("" in a reduce, and after the last record).
    """

    __slots__ = ("_where", "host", "job", "master", "partition", "stage", "taskid")

    def __init__(
        self, job: str, stage: str, taskid: int, partition: Any, host: str, master: str, where: Any
    ) -> None:
        self.job, self.stage, self.taskid, self.partition = job, stage, taskid, partition
        self.host, self.master, self._where = host, master, where

    @property
    def input(self) -> str:
        """The URL of the input a map (or a ``split`` stage) is reading now; "" in a reduce,
        whose keys come from all of its inputs, and after the last record (a done hook)."""
        where = self._where
        if where is None or getattr(where, "past_records", False):
            return ""
        try:
            return str(where.url)
        except Exception:  # a position that knows none
            return ""

    def __repr__(self) -> str:
        return (
            f"ThisTask(job={self.job!r}, stage={self.stage!r}, taskid={self.taskid}, "
            f"partition={self.partition!r}, host={self.host!r}, master={self.master!r}, "
            f"input={self.input!r})"
        )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as it is now, its input a URL: not the task's place in what it reads,
        which holds the record being read (megabytes, a line of them)."""
        read = _Read(self.input)
        fields = (self.job, self.stage, self.taskid, self.partition, self.host, self.master)
        return ThisTask, (*fields, read)


class _Read:
    """Where a copy of a task was reading: the URL it was at."""

    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        self.url = url

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _Read, (self.url,)


_THREAD = threading.local()  # .task: the task this thread runs
_RUNNING: list[ThisTask] = []  # every task running in this process
_LOCK = threading.Lock()
# Whether this process is a worker, one task at a time: the threads its stage starts see
# the task. Inline, in the program's process, they do not (a thread of the program's own,
# or one outliving its task, would see another's).
_ALONE = [False]


def in_a_worker() -> None:
    """This process runs one task at a time, a worker's (the threads it starts see it)."""
    _ALONE[0] = True


def this_task() -> ThisTask:
    """The task the calling stage code runs in; a StageError outside of one."""
    task: ThisTask | None = getattr(_THREAD, "task", None)
    if task is None and _ALONE[0]:
        with _LOCK:
            task = _RUNNING[0] if len(_RUNNING) == 1 else None
    if task is None:
        raise StageError(
            "this_task() tells the task a stage runs in, and none runs in this thread: call "
            "it from stage code (a map, a reduce, their init and done hooks; in a worker, "
            "locally or on a cluster, also from a thread that code starts; inline, read it "
            "in the stage and hand it to such a thread)"
        )
    return task


def entered(task: ThisTask) -> ThisTask | None:
    """``task`` is this thread's from now (until :func:`left`); the one it had before."""
    before = getattr(_THREAD, "task", None)
    _THREAD.task = task
    with _LOCK:
        _RUNNING.append(task)
    return before


def left(task: ThisTask, before: ThisTask | None) -> None:
    """``task`` ended: this thread's is ``before`` again."""
    _THREAD.task = before
    with _LOCK:
        _RUNNING[:] = [other for other in _RUNNING if other is not task]


def _forked() -> None:
    """In a forked child: a lock of its own (another thread of its parent may have held
    this one), and of the tasks running, only its thread's (the others' threads are not
    here)."""
    global _LOCK
    _LOCK = threading.Lock()
    own = getattr(_THREAD, "task", None)
    _RUNNING[:] = [task for task in _RUNNING if task is own]


if hasattr(os, "register_at_fork"):  # not on Windows, where nothing forks
    os.register_at_fork(after_in_child=_forked)
