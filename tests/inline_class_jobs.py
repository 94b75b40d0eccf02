"""Jobs whose records hold classes of their module, shipped by value (as a script's are)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from discodsl import job, map, reduce

SUFFIX = {"text": "!"}  # a global the class's method reads as it is now


@dataclass(frozen=True, order=True)
class Hit:
    ts: str

    def shown(self) -> str:
        return self.ts + SUFFIX["text"]


@map
def hits(line: str) -> Iterator[tuple[str, Hit]]:
    yield line[:1], Hit(line)


@reduce
def earliest(key: str, found: Iterable[Hit]) -> Iterator[tuple[str, str]]:
    yield key, min(found).shown()


@job
def earliest_hits() -> list[Any]:
    return [hits, earliest]


@dataclass(frozen=True)
class Visit:  # of the cache's test alone: a class no run has touched before it
    page: str


@map
def visits(line: str) -> Iterator[tuple[str, Visit]]:
    yield line[:1], Visit(line)


@reduce
def pages(key: str, found: Iterable[Visit]) -> Iterator[tuple[str, str]]:
    yield key, ",".join(sorted(visit.page for visit in found))


@job
def visited_pages() -> list[Any]:
    return [visits, pages]


class Seen:
    words: set[str] = set()  # a per-task cache of the stage's, as users keep


@map
def first_sighting(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        if word not in Seen.words:
            Seen.words.add(word)
            yield word, 1


@reduce
def tasks_that_saw(word: str, ones: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(ones)


@job
def sightings() -> list[Any]:
    return [first_sighting, tasks_that_saw]


class Memo:
    """A class a stage gives a cache on first use."""


@map
def memo_seen(line: str) -> Iterator[tuple[str, bool]]:
    found = "table" in vars(Memo)
    if not found:
        Memo.table = {}  # type: ignore[attr-defined]
    yield line, found


@job
def memoized() -> list[Any]:
    return [memo_seen]


class Tally:
    """A class a stage keeps a per-task count on, slowly (runs in threads interleave)."""


@map
def slow_tally(line: str) -> Iterator[tuple[str, int]]:
    if "seen" not in vars(Tally):
        Tally.seen = set()  # type: ignore[attr-defined]
    for word in line.split():
        Tally.seen.add(word)  # type: ignore[attr-defined]
        time.sleep(0.01)
    yield line, len(Tally.seen)  # type: ignore[attr-defined]


@job
def tallies() -> list[Any]:
    return [slow_tally]


@map
def waits_for_the_program(line: str, params: Any) -> Iterator[tuple[str, bool]]:
    """Marks that it started, then waits (60 s at most) for the program's sign."""
    Tally.seen = {"the task's"}  # type: ignore[attr-defined]
    open(params["started"], "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(params["go"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    yield line, os.path.exists(params["go"])


@job
def waiting() -> list[Any]:
    return [waits_for_the_program]
