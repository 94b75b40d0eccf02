"""Jobs for the cache tests: each task leaves a mark, so a test sees which stages ran.

A mark is a file ``<stage>-<unique>`` in the directory the factory is given
(a closure value, so it is part of every stage's key, and the same for the
runs of one test).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from discodsl import Job, count, job, map, reduce

# A global a stage reads: changing it must give a fresh run.
SCALE = 1


def mark(marks: str, stage: str) -> None:
    Path(marks, f"{stage}-{os.getpid()}-{uuid.uuid4().hex}").touch()


def ran(marks: Path | str) -> dict[str, int]:
    """How many tasks of each stage left a mark."""
    counts: dict[str, int] = {}
    for path in Path(marks).iterdir():
        stage = path.name.split("-", 1)[0]
        counts[stage] = counts.get(stage, 0) + 1
    return counts


def wordcount(marks: str, weight: int = 1, name: str = "cached_wordcount") -> Job:
    """The wordcount; ``weight`` is a closure value of the map (a changed one: a fresh run)."""

    @map
    def words(line: str) -> Iterator[tuple[str, int]]:
        mark(marks, "words")
        for word in line.split():
            yield word, weight * SCALE

    @reduce
    def total(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
        mark(marks, "total")
        yield word, sum(counts)

    def body() -> list[Any]:
        return [words, total]

    body.__name__ = body.__qualname__ = name
    return job(partitions=3)(body)


def edited_wordcount(marks: str) -> Job:
    """The same job with its map edited: it lower-cases words."""

    @map
    def words(line: str) -> Iterator[tuple[str, int]]:
        mark(marks, "words")
        for word in line.lower().split():
            yield word, SCALE

    @reduce
    def total(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
        mark(marks, "total")
        yield word, sum(counts)

    @job(partitions=3)
    def cached_wordcount() -> list[Any]:
        return [words, total]

    return cached_wordcount


def weighted(marks: str) -> Job:
    """The wordcount with its weight in ``params``: other params, other results."""

    @map
    def words(line: str, params: int) -> Iterator[tuple[str, int]]:
        mark(marks, "words")
        for word in line.split():
            yield word, params

    @reduce
    def total(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
        mark(marks, "total")
        yield word, sum(counts)

    @job(partitions=2, params=1)
    def weighted_wordcount() -> list[Any]:
        return [words, total]

    return weighted_wordcount


def four_stages(marks: str, broken: bool | str) -> Job:
    """Map, reduce, map, reduce: word counts, then how many words have each count.
    ``broken``: the third stage (``by_count``) raises on every record; ``"hangs"``: it
    sleeps a minute on each."""

    @map
    def words(line: str) -> Iterator[tuple[str, int]]:
        mark(marks, "words")
        for word in line.split():
            count("words")
            yield word, 1

    @reduce
    def total(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
        mark(marks, "total")
        count("distinct")
        yield word, sum(counts)

    @job(partitions=3)
    def counts_of_counts() -> list[Any]:
        return [words, total, *histogram_stages(marks, broken)]

    return counts_of_counts


def histogram_stages(marks: str, broken: bool | str = False) -> list[Any]:
    """How many words have each count, from (word, count) records."""

    @map
    def by_count(record: tuple[str, int]) -> Iterator[tuple[int, str]]:
        mark(marks, "by_count")
        if broken == "hangs":
            time.sleep(60)
        elif broken:
            raise ValueError("by_count is broken")
        word, count_ = record
        yield count_, word

    @reduce
    def histogram(n: int, words_: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
        mark(marks, "histogram")
        yield n, sorted(words_)

    return [by_count, histogram]


def histogram(marks: str) -> Job:
    """The histogram alone: a job whose inputs are an earlier job's (word, count) results."""

    @job(partitions=2)
    def counts_histogram() -> list[Any]:
        return histogram_stages(marks)

    return counts_histogram


# Pipelines of several shapes, for resuming: each stage named, one of them changeable.
SHAPES = {
    # words -> total (combined) -> by_count -> histogram, partitioned
    "map-reduce-map-reduce": 3,
    # not partitioned: every label-grouped stage is one task (group_all)
    "unpartitioned": None,
    # grouped by node, then by label within each node
    "node-groupings": 2,
}


def shaped(marks: str, shape: str, variant: str = "", at: str = "") -> Job:
    """A pipeline of ``shape`` whose stage ``at`` is ``variant``: "" as written, "broken"
    (raises), or "edited" (another closure value, giving the same records). Only that
    stage's closure holds the variant, so only its key (and those after) change."""
    node = shape == "node-groupings"
    stages = [
        _words(marks, variant if at == "words" else ""),
        _total(marks, variant if at == "total" else "", node),
        _by_count(marks, variant if at == "by_count" else ""),
        _histogram(marks, variant if at == "histogram" else "", node),
    ]

    @job(partitions=SHAPES[shape])
    def shaped_pipeline() -> list[Any]:
        return stages

    return shaped_pipeline


def _ran(marks: str, stage: str, variant: str) -> None:
    mark(marks, stage)
    if variant == "broken":
        raise ValueError(f"{stage} is broken")


def _words(marks: str, variant: str) -> Any:
    @map
    def words(line: str) -> Iterator[tuple[str, int]]:
        _ran(marks, "words", variant)
        for word in line.split():
            yield word, 1

    return words


def _total(marks: str, variant: str, node: bool) -> Any:
    @reduce(combine=True, grouping="group_node" if node else "group_label")
    def total(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
        _ran(marks, "total", variant)
        yield word, sum(list(counts) if variant == "edited" else counts)

    return total


def _by_count(marks: str, variant: str) -> Any:
    @map
    def by_count(record: tuple[str, int]) -> Iterator[tuple[int, str]]:
        _ran(marks, "by_count", variant)
        word, count_ = record
        yield (int(count_) if variant == "edited" else count_), word

    return by_count


def _histogram(marks: str, variant: str, node: bool) -> Any:
    @reduce(grouping="group_node_label" if node else "group_label")
    def histogram(n: int, words_: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
        _ran(marks, "histogram", variant)
        yield n, sorted(set(words_) if variant == "edited" else words_)

    return histogram


def helped_wordcount(helper: Any) -> Job:
    """A wordcount weighting each word by ``helper.weight(word)``: a module the stage
    names by reference (a helper of the user's, imported by name)."""

    @map
    def weighted_words(line: str) -> Iterator[tuple[str, int]]:
        for word in line.split():
            yield word, helper.weight(word)

    @reduce
    def weighted_total(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
        yield word, sum(counts)

    @job(partitions=2)
    def helped_count() -> list[Any]:
        return [weighted_words, weighted_total]

    return helped_count
