"""Jobs whose workers die or never finish, for tests/test_worker_death.py."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from discodsl import job, map, reduce


def _note_pid(params: Any) -> None:
    if params and params.get("pids"):
        open(os.path.join(params["pids"], str(os.getpid())), "w").close()


@map
def forever(line: str, params: Any) -> Iterator[tuple[str, int]]:
    """Writes its worker's pid to the directory ``params["pids"]``, then loops (as good as
    for ever: ``params["seconds"]``, so that a test whose fix is broken still ends)."""
    _note_pid(params)
    deadline = time.monotonic() + params["seconds"]
    while time.monotonic() < deadline:
        time.sleep(0.05)
    yield line, 1


@reduce
def tally(key: str, values: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield key, sum(values)


@job(partitions=2)
def runs_forever() -> list[Any]:
    return [forever, tally]


@map
def exits_3(line: str) -> Iterator[tuple[str, int]]:
    os._exit(3)
    yield line, 1


@map
def says_then_exits(line: str) -> Iterator[tuple[str, int]]:
    print("last words before", line, flush=True)
    sys.exit(4)
    yield line, 1


@map
def closes_descriptors(line: str) -> Iterator[tuple[str, int]]:
    os.closerange(3, 1024)  # as a daemonizing helper does
    time.sleep(1)
    yield line, 1


@map
def closes_descriptors_and_goes_on(line: str) -> Iterator[tuple[str, int]]:
    os.closerange(3, 1024)
    yield line, 1


@job
def cutting_off_and_going_on() -> list[Any]:
    return [closes_descriptors_and_goes_on]


@map
def replaces_descriptors_and_goes_on(line: str) -> Iterator[tuple[str, int]]:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in range(3, 21):  # as a daemonizing helper that points them at /dev/null does
        if fd != null:
            os.dup2(null, fd)
    yield line, 1


@job
def replacing_and_going_on() -> list[Any]:
    return [replaces_descriptors_and_goes_on]


@map
def replaces_low_descriptors(line: str) -> Iterator[tuple[str, int]]:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in range(4):  # stdin to stderr and the first after them, as a daemon's helper does
        os.dup2(null, fd)
    yield line, 1


@job(max_failures=0)
def replacing_low() -> list[Any]:
    return [replaces_low_descriptors]


@map
def hangs_up_on_itself(line: str) -> Iterator[tuple[str, int]]:
    os.kill(os.getpid(), signal.SIGHUP)  # as a library reloading its config might
    yield line, 1


@job(max_failures=1)
def hanging_up() -> list[Any]:
    return [hangs_up_on_itself]


@map
def exits_76(line: str) -> Iterator[tuple[str, int]]:
    sys.exit(76)  # sysexits' EX_PROTOCOL, the status a worker whose channel closed ends with
    yield line, 1


@job(max_failures=1)
def exiting_76() -> list[Any]:
    return [exits_76]


@map
def closes_then_exits(line: str) -> Iterator[tuple[str, int]]:
    os.closerange(3, 1024)
    sys.exit(0)
    yield line, 1


@map
def exits_saying(line: str) -> Iterator[tuple[str, int]]:
    print("partial work done")
    sys.exit("fatal: config missing")
    yield line, 1


@map
def kills_itself(line: str) -> Iterator[tuple[str, int]]:
    os.kill(os.getpid(), signal.SIGKILL)
    yield line, 1


@map
def segfaults(line: str) -> Iterator[tuple[str, int]]:
    import ctypes

    ctypes.string_at(0)
    yield line, 1


@map
def quick(line: str) -> Iterator[tuple[str, int]]:
    yield line, 1


@job(max_failures=0)
def exiting() -> list[Any]:
    return [exits_3]


@job(max_failures=0)
def saying_then_exiting() -> list[Any]:
    return [says_then_exits]


@job(max_failures=0)
def cutting_off() -> list[Any]:
    return [closes_descriptors]


@job(max_failures=0)
def cut_off_exiting() -> list[Any]:
    return [closes_then_exits]


@job(max_failures=0)
def exiting_with_words() -> list[Any]:
    return [exits_saying]


@job(max_failures=0)
def self_killing() -> list[Any]:
    return [kills_itself]


@job(max_failures=0)
def segfaulting() -> list[Any]:
    return [segfaults]


@job
def instant() -> list[Any]:
    return [quick]


# a map whose worker is killed on the line "die" only
@map
def dies_on_die(line: str) -> Iterator[tuple[str, int]]:
    if line == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    yield line, 1


@job(max_failures=0)
def dying_on_one_input() -> list[Any]:
    return [dies_on_die]


# its first attempt starts a forked helper and a `sleep`, both holding the worker's pipes
# (a fork copies every fd), then dies: the task is tried again at once, and neither outlives
# the worker that started it
@map
def dies_leaving_helpers(line: str, params: Any) -> Iterator[tuple[str, int]]:
    marks = Path(params)
    if not (marks / "died").exists():
        (marks / "died").touch()
        helper = multiprocessing.get_context("fork").Process(target=time.sleep, args=(120,))
        helper.start()
        sleeper = subprocess.Popen(["sleep", "120"], close_fds=False)
        (marks / "helpers").write_text(f"{helper.pid} {sleeper.pid}")
        os._exit(3)
    yield line, 1


@job(partitions=1)
def leaving_helpers() -> list[Any]:
    return [dies_leaving_helpers]


# starts a `sleep` in a session of its own (start_new_session=True: out of the worker's
# process group), records its pid, then ends its task, or (params "die ...") dies
@map
def starts_a_daemon(line: str, params: Any) -> Iterator[tuple[str, int]]:
    how, marks = params.split(" ", 1)
    daemon = subprocess.Popen(["sleep", "120"], start_new_session=True)
    with open(Path(marks) / "daemons", "a") as listed:
        listed.write(f"{daemon.pid}\n")
    if how == "die":
        os._exit(3)
    yield line, 1


@job(partitions=1, max_failures=0)
def leaving_a_daemon() -> list[Any]:
    return [starts_a_daemon]


# the input "daemon" starts a daemon the classic way (fork, fork again, the middle one
# exits: the daemon is an orphan while its task runs) and, once the input "quick" has had
# its task end, says whether the daemon still runs
@map
def uses_a_daemon(line: str, params: Any) -> Iterator[tuple[str, bool]]:
    if line == "quick":
        yield line, True
        return
    pid_file = Path(params) / "daemon"
    middle = os.fork()
    if middle == 0:  # pragma: no cover - the forked processes
        if os.fork() == 0:
            pid_file.write_text(str(os.getpid()))
            time.sleep(120)
        os._exit(0)
    os.waitpid(middle, 0)
    while not pid_file.exists() or not pid_file.read_text():
        time.sleep(0.01)
    time.sleep(1.5)  # the other task ends meanwhile, and its worker with it
    state = Path(f"/proc/{pid_file.read_text()}/stat").read_text().rpartition(")")[2].split()[0]
    yield line, state != "Z"


@job(partitions=1, max_failures=0, workers=2)
def keeping_a_daemon() -> list[Any]:
    return [uses_a_daemon]
