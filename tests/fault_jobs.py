"""Jobs that inject faults into their own workers, for tests/test_faults.py."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Iterator
from typing import Any

from discodsl import job, map, reduce


@map
def killed_once(line: str, params: dict[str, str]) -> Iterator[tuple[str, int]]:
    """SIGKILLs its own worker the first time it sees the line 'kill', mid-task."""
    if line == "kill":
        marker = os.path.join(params["markers"], f"killed-{os.getppid()}")
        if not os.listdir(params["markers"]):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
    yield line, 1


@reduce
def tally(key: str, values: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield key, sum(values)


@job(partitions=2)
def survives_a_kill() -> list[Any]:
    return [killed_once, tally]


@map
def slow(line: str) -> Iterator[tuple[str, int]]:
    time.sleep(30)
    yield line, 1


@job
def sleepy() -> list[Any]:
    return [slow]


class Halt(BaseException):
    """A stage's own exception outside Exception's tree."""


HALTS = {"KeyboardInterrupt": KeyboardInterrupt, "GeneratorExit": GeneratorExit, "Halt": Halt}


@map
def halts(line: str) -> Iterator[tuple[str, int]]:
    yield "before", 1
    raise HALTS[line]("stopped here")


@job(max_failures=3)
def halting() -> list[Any]:
    return [halts]


@map
def raises_a_huge_message(line: str) -> Iterator[tuple[str, int]]:
    raise ValueError("start " + "x" * 10_000_000 + " end")
    yield line, 1


@job
def huge_message() -> list[Any]:
    return [raises_a_huge_message]


@map
def raises_a_wide_message(line: str) -> Iterator[tuple[str, int]]:
    raise ValueError("\U0001f600" * 600 if line == "emoji" else "boom")  # 12 bytes each, escaped
    yield line, 1


@job
def wide_message() -> list[Any]:
    return [raises_a_wide_message]


# an input whose server never answers
@map
def echoes(line: str) -> Iterator[tuple[str, int]]:
    yield line, 1


@job(max_failures=0)
def reads_a_silent_server() -> list[Any]:
    return [echoes]


class Connection:
    """Pickles, but refuses to be unpickled (a live handle)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def __setstate__(self, state: Any) -> None:
        raise ValueError("a Connection cannot be unpickled: open it in an init hook")


def holding_a_connection() -> Any:
    connection = Connection("db://x")

    @map
    def uses_connection(line: str) -> Iterator[tuple[str, str]]:
        yield line, connection.dsn

    @job
    def connected() -> list[Any]:
        return [uses_connection]

    return connected


@map
def forks_and_falls_through(line: str) -> Iterator[tuple[str, str]]:
    """Forks, and lets the child go on with the task (no os._exit): its records would be
    written over the parent's. The parent waits a little, so that the child's end is
    said while the task still runs (said after it, it is lost, as any output)."""
    who = "child" if os.fork() == 0 else "parent"
    if who == "parent":
        time.sleep(0.5)
    for index in range(3):
        yield f"{line}{index}", who


@job
def forking() -> list[Any]:
    return [forks_and_falls_through]


_FORKED: list[int] = []


@map
def forks_on_its_first_line(line: str) -> Iterator[tuple[str, int]]:
    """Forks at its first line and lets the child go on, yielding for few lines: the child
    reads on, through the descriptor it shares with its parent, before it writes."""
    if not _FORKED:
        _FORKED.append(1)
        os.fork()
    if line.startswith("w1 "):
        yield "w1", 1


@job(partitions=2)
def forking_on_a_file() -> list[Any]:
    return [forks_on_its_first_line, tally]


@map
def forks_a_child_that_returns(line: str) -> Iterator[tuple[str, int]]:
    """Forks a child that returns at once, yielding nothing: it reaches the worker's end of
    the task, not a write; the parent yields how the child ended."""
    pid = os.fork()
    if pid == 0:
        return
    yield line, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@job
def forking_a_returner() -> list[Any]:
    return [forks_a_child_that_returns]


@map
def padded(line: str) -> Iterator[tuple[str, str]]:
    yield f"k{int(line) % 5000:05d}", "v" * 300


@reduce
def counted_forking_at_k00300(key: str, values: Iterable[str]) -> Iterator[tuple[str, int]]:
    """Forks at one key of a partition that spilled; the child returns into the reduce and
    would read on through the spill files whose offsets it shares with its parent."""
    count = sum(1 for _ in values)
    if key == "k00300":
        os.fork()
    yield key, count


@job(partitions=1, memory_budget=1 << 20)
def forking_past_the_budget() -> list[Any]:
    return [padded, counted_forking_at_k00300]
