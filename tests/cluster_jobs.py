"""Small jobs for the cluster runner and CLI tests (kept apart: workers import this module)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from discodsl import count, job, map, reduce


@map
def chatty(line: str) -> Iterator[tuple[str, int]]:
    print(f"saw {line}")
    count("lines")
    for word in line.split():
        yield word, 1


@reduce
def add(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@job(partitions=2)
def chatty_count() -> list[Any]:
    """Two stages; each map prints what it saw and counts its lines."""
    return [chatty, add]


@map
def sleepy(line: str, params: dict[str, str]) -> Iterator[tuple[str, int]]:
    with open(params["pidfile"], "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(60)
    yield line, 1


@job(params={"pidfile": os.devnull})
def sleeper() -> list[Any]:
    """One task that writes its pid to ``params["pidfile"]``, then sleeps a minute."""
    return [sleepy]


@map
def explode(line: str) -> Iterator[tuple[str, int]]:
    raise KeyError(f"no entry for {line!r}")
    yield line, 1


@job
def exploding() -> list[Any]:
    """One task that fails on its first record."""
    return [explode]


# a map that prints, then naps: a run whose watch stops (timeout=) after the print
@map
def chatty_nap(line: str) -> Iterator[tuple[str, int]]:
    print(f"said {line}", flush=True)
    time.sleep(4)
    yield line, 1


@job(partitions=None)
def napping() -> list[Any]:
    return [chatty_nap]


# Stage names holding what Disco's events put around a task's name ("[stage:N]").
odd_map = map(chatty.function, name="a]b")
odd_add = reduce(add.function, name="x:1")


@job(partitions=2)
def odd_names() -> list[Any]:
    return [odd_map, odd_add]


@map(name="a]b")
def odd_failing(line: str) -> Iterator[tuple[str, int]]:
    raise ValueError(f"cannot read {line!r}")
    yield line, 1


@job
def odd_name_failing() -> list[Any]:
    return [odd_failing]


concurrent_add = reduce(add.function, name="add", concurrent=True)


@job(partitions=4)
def concurrent_count() -> list[Any]:
    """A concurrent reduce of 4 tasks: on a cluster of 2 slots they may hold both."""
    return [chatty, concurrent_add]


# a job whose master names its jobs otherwise than its function: dp_wc@...
prefixed_count = chatty_count.with_options(prefix="dp_wc")
