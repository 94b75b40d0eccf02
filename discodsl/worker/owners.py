"""Processes and what they leave: the mark of the process that made a file, in its name,
and whether that process has ended, so that what an ended process left (a killed worker's
spills, a killed program's temporary directories) can go, and nothing of a live one's; and
a process's children, which a killed worker leaves too.

A mark is ``<pid>-[n<pid namespace>-]``: containers sharing a directory do not share pids,
so a process of this PID namespace is known by its pid, and one of another (a container's)
to have ended only once its namespace has no process left, which only the host can tell.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time


def owner_mark() -> str:
    """``<pid>-[n<pid namespace>-]``: what begins, after its prefix, the name of a file or
    directory of this process's."""
    namespace = pid_namespace()
    return f"{os.getpid()}-" + ("" if namespace is None else f"n{namespace}-")


def ended(rest: str) -> bool:
    """Whether the process whose mark begins ``rest`` has ended: of this PID namespace,
    by its pid; of another (a container's), once that namespace has no process left."""
    owner = marked(rest)
    return owner is not None and owner_ended(*owner)


def owner_ended(pid: int, namespace: int | None) -> bool:
    """Whether process ``pid`` of PID namespace ``namespace`` (None: this one) has ended."""
    if namespace in (None, pid_namespace()):
        return not running(pid)
    return namespace_gone(namespace)


# Linux's initial PID namespace (PROC_PID_INIT_INO): the host's, which sees every process.
INITIAL_NAMESPACE = 0xEFFFFFFC
# Seconds a look at which PID namespaces have processes stands for.
_NAMESPACES_FRESH = 1.0


def namespace_gone(namespace: int) -> bool:
    """Whether PID namespace ``namespace`` (another's: a container's) has no process left.
    Only the initial namespace can tell, which sees every process; a container sees only
    its own, and every process's namespace must be readable: else the answer is no."""
    found = _namespaces()
    return found is not None and namespace not in found


def _namespaces() -> set[int] | None:
    """The PID namespaces that have processes, looked at once a second at most; None if
    that cannot be known from here."""
    now = time.monotonic()
    if _seen and now - _seen[0][0] < _NAMESPACES_FRESH:
        return _seen[0][1]
    found = _look_at_namespaces() if pid_namespace() == INITIAL_NAMESPACE else None
    _seen[:] = [(now, found)]
    return found


_seen: list[tuple[float, set[int] | None]] = []  # the last look: when, what it found


def _look_at_namespaces() -> set[int] | None:
    found: set[int] = set()
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            found.add(os.stat(f"/proc/{pid}/ns/pid").st_ino)
        except FileNotFoundError:
            continue  # it ended meanwhile
        except OSError:
            return None  # another user's, not readable: its namespace cannot be told
    return found


def marked(rest: str) -> tuple[int, int | None] | None:
    """The pid and PID namespace a mark at the start of ``rest`` names (no namespace in the
    names of earlier versions, ``<pid>-<random>``), if one does."""
    pid, dash, rest = rest.partition("-")
    if not (dash and _number(pid)) or not 0 < int(pid) <= PID_MAX:
        return None  # a name no process made (os.kill would overflow on a huge one)
    mark, dash, _ = rest.partition("-")
    if dash and mark[:1] == "n" and _number(mark[1:]):
        return int(pid), int(mark[1:])
    return int(pid), None


# The highest pid a process may have (Linux's PID_MAX_LIMIT, 2**22 on 64-bit systems).
PID_MAX = 1 << 22


def _number(text: str) -> bool:
    """Whether ``text`` is a number in ASCII digits (str.isdigit takes "²" and "٣" too)."""
    return text.isascii() and text.isdigit()


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
    except (ProcessLookupError, OverflowError):  # none, or past any pid
        return False
    except OSError:
        return True  # another user's process
    return True


def started(pid: int | str = "self") -> int | None:
    """When process ``pid`` started, in clock ticks after boot (``/proc/PID/stat``'s 22nd
    field): with its pid, what tells it from a later process given the same pid; None
    where that is not shown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat.rpartition(b")")[2].split()  # after the name, which may hold anything
    try:
        return int(fields[19])  # fields[0] is the third field, the state
    except (IndexError, ValueError):
        return None


def children(pid: int | str = "self") -> list[int]:
    """The children of process ``pid``, this one's by default (Linux's
    /proc/PID/task/*/children: one read a thread, where a scan of /proc would read a file a
    process); none where it is not shown."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for thread in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(OSError, ValueError),
                open(f"/proc/{pid}/task/{thread}/children", "rb") as listed,
            ):
                found.extend(int(pid) for pid in listed.read().split())
    return found
