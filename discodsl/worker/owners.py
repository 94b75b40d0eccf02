"""Whose a file is: the mark of the process that made it, in its name, and whether that
process has ended, so that what an ended process left (a killed worker's spills, a killed
program's temporary directories) can go, and nothing of a live one's.

A mark is ``<pid>-[n<pid namespace>-]``: containers sharing a directory do not share pids,
so only a process of this PID namespace can be known to have ended.
"""

from __future__ import annotations

import functools
import os


def owner_mark() -> str:
    """``<pid>-[n<pid namespace>-]``: what begins, after its prefix, the name of a file or
    directory of this process's."""
    namespace = pid_namespace()
    return f"{os.getpid()}-" + ("" if namespace is None else f"n{namespace}-")


def ended(rest: str) -> bool:
    """Whether the process whose mark begins ``rest`` has ended (never one of another PID
    namespace: its pid is no process here, or another one)."""
    owner = marked(rest)
    if owner is None:
        return False
    pid, namespace = owner
    return namespace in (None, pid_namespace()) and not running(pid)


def marked(rest: str) -> tuple[int, int | None] | None:
    """The pid and PID namespace a mark at the start of ``rest`` names (no namespace in the
    names of earlier versions, ``<pid>-<random>``), if one does."""
    pid, dash, rest = rest.partition("-")
    if not (dash and pid.isdigit()):
        return None
    mark, dash, _ = rest.partition("-")
    if dash and mark[:1] == "n" and mark[1:].isdigit():
        return int(pid), int(mark[1:])
    return int(pid), None


@functools.cache
def pid_namespace() -> int | None:
    """This process's PID namespace (Linux: its inode number), or None where not known."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def running(pid: int) -> bool:
    """Whether process ``pid`` of this PID namespace runs (another user's is taken to)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process
    return True
