"""A module of the user's as a team writes one: helpers that stages call, beside stages and
a job of its own, declared with discodsl's client (which a node does not have)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from discodsl import MalformedRecord, job, map, readers, reduce, stage


def norm(word: str) -> str:
    """What the stages of another module call."""
    return word.strip().lower()


def checked(word: str) -> str:
    """A helper raising one of the errors stage code raises."""
    if not word:
        raise MalformedRecord("an empty word")
    return word


@map(reader=readers.json_lines())
def parsed(record: Any) -> Iterator[tuple[str, int]]:
    yield norm(record["word"]), 1


@reduce(combine=True)
def total(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@stage
def every(records: Iterable[Any]) -> Iterator[Any]:
    yield from records


@job(partitions=2)
def team_count() -> list[Any]:
    return [parsed, total]


team_count_wide = team_count.with_options(partitions=4)  # the job API at the top level
total_2 = reduce(total.function, name="total_2")  # the README's second stage of a function
JOBS = {"count": team_count}  # a registry of the module's jobs, as teams keep one
