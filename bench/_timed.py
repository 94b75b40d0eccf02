"""Run one command and print, as one JSON line, what its whole process tree cost.

usage: python bench/_timed.py [--limit SECONDS] COMMAND [ARG ...]

Prints ``{"code", "wall", "cpu", "rss_mb", "timed_out"}``: the command's exit
code, the wall seconds from starting it until its last descendant ended, the
CPU seconds (user + system) of every process of the tree, and the peak RSS in
MB of the largest single process (``ru_maxrss`` of the children, which is a
maximum, not a sum; the child counts the timer's own pages from before its
``exec``, so nothing shows below about 12 MB).

To see the whole tree, the timer makes itself a child subreaper (Linux
``prctl(PR_SET_CHILD_SUBREAPER)``): a process the command leaves behind is
re-parented to the timer rather than to init, and the timer waits for it,
so its CPU time and memory are counted and the clock runs until it ends.
With ``--limit``, the command's process group and every process left
re-parented here are killed after that many seconds (and every 0.1 s after,
for processes orphaned meanwhile), and ``timed_out`` is true. Elsewhere
than on Linux only what the command itself waits for is counted.

Not here: running several commands, medians, checking outputs (the
benchmark scripts do that).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux only); False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0


def adopted_children() -> list[int]:
    """The pids of this process's children right now (Linux's /proc lists them)."""
    me = os.getpid()
    try:
        text = Path(f"/proc/{me}/task/{me}/children").read_text()
    except OSError:
        return []
    return [int(pid) for pid in text.split()]


def kill_tree(group: int) -> None:
    """SIGKILL the command's process group and every child of this process."""
    for kill, target in [(os.killpg, group)] + [(os.kill, pid) for pid in adopted_children()]:
        with contextlib.suppress(ProcessLookupError):
            kill(target, signal.SIGKILL)


def reap_all(main: int) -> int | None:
    """Wait for every child, adopted ones included; the exit code of ``main``."""
    code = None
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return code
        if pid == main:
            code = os.waitstatus_to_exitcode(status)


def run(command: list[str], limit: float | None) -> dict[str, object]:
    """Run ``command`` to the end of its last descendant; its costs as a dict."""
    become_subreaper()
    timed_out: list[bool] = []
    start = time.perf_counter()
    child = subprocess.Popen(command, start_new_session=True)

    def expire(*_: object) -> None:
        timed_out.append(True)
        kill_tree(child.pid)

    if limit:
        signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, limit, 0.1)  # again until all are gone
    code = reap_all(child.pid)
    wall = time.perf_counter() - start
    signal.setitimer(signal.ITIMER_REAL, 0)
    child.returncode = code  # already reaped above
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"code": code, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024, "timed_out": bool(timed_out)}


def main() -> None:
    args = sys.argv[1:]
    limit = None
    if args[:1] == ["--limit"]:
        limit, args = float(args[1]), args[2:]
    if not args:
        sys.exit("usage: python bench/_timed.py [--limit SECONDS] COMMAND [ARG ...]")
    print(json.dumps(run(args, limit)))


if __name__ == "__main__":
    main()
