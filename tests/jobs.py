"""The table of test jobs that every runner must run with identical results."""

from __future__ import annotations

import enum
import functools
import heapq
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from discodsl import count, job, map, reduce, stage


@map
def words(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        yield word, 1


@reduce(combine=True)
def total(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@job(partitions=3)
def wordcount() -> list[Any]:
    return [words, total]


@job(partitions=130)  # a map task with more outputs than a worker sends ahead (64 a write) twice
def wide_wordcount() -> list[Any]:
    return [words, total]


# A three-stage pipeline: parse, aggregate, top-N over everything.
@map
def parse(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        if word.isalpha():
            yield word.lower(), 1
        else:
            count("skipped")


@reduce
def aggregate(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@stage(grouping="group_all")
def top3(records: Iterable[tuple[str, int]]) -> Iterator[tuple[int, str]]:
    best = heapq.nlargest(3, records, key=lambda kv: (kv[1], kv[0]))
    for rank, (word, n) in enumerate(best, 1):
        yield rank, f"{word}={n}"


@job(partitions=2)
def top_words() -> list[Any]:
    return [parse, aggregate, top3]


# params reach the stages that ask for them
@map
def long_words(line: str, params: dict[str, int]) -> Iterator[tuple[str, int]]:
    for word in line.split():
        if len(word) >= params["min_len"]:
            yield word, 1


@job(partitions=2, params={"min_len": 5})
def long_wordcount() -> list[Any]:
    return [long_words, total]


# functools.partial as a stage function
def _scaled(line: str, factor: int) -> Iterator[tuple[str, int]]:
    for word in line.split():
        yield word, factor


scaled = map(functools.partial(_scaled, factor=10), name="scaled")


@job(partitions=2)
def scaled_count() -> list[Any]:
    return [scaled, total]


# a separate combiner
def sum_combiner(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@reduce(combiner=sum_combiner)
def total_with_combiner(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@job(partitions=2)
def combiner_count() -> list[Any]:
    return [words, total_with_combiner]


# a custom partitioner: everything to partition 0, so one reduce task
def to_zero(key: Any, partitions: int) -> int:
    return 0


def count_task(params: Any = None) -> None:
    count("reduce_tasks")


@reduce(partitioner=to_zero, init=count_task)
def total_one_task(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@job(partitions=4)
def partitioned_count() -> list[Any]:
    return [words, total_one_task]


# sorting on and off: one partition, keys in the order the reduce saw them
@reduce(name="sorted_keys")
def keys_in_order(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@reduce(name="unsorted_keys", sort=False)
def keys_unsorted(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@job(partitions=1)
def sorted_count() -> list[Any]:
    return [words, keys_in_order]


@job(partitions=1)
def unsorted_count() -> list[Any]:
    return [words, keys_unsorted]


# chaining: a second job over the first job's results
@map
def by_count(record: tuple[str, int]) -> Iterator[tuple[int, str]]:
    word, n = record
    yield n, word


@reduce
def words_per_count(n: int, words_: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    yield n, sorted(words_)


@job(partitions=2)
def histogram() -> list[Any]:
    return [by_count, words_per_count]


# a failing stage
@map
def fragile(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        if word == "boom":
            raise ValueError(f"cannot handle {word!r}")
        yield word, 1


@job(partitions=2, max_failures=1)
def failing() -> list[Any]:
    return [fragile, total]


# keys that are equal but built differently must meet in one reduce (no combiner to hide it)
@map
def word_pairs(line: str) -> Iterator[tuple[tuple[str, str], int]]:
    words_ = line.split()
    for a in words_:
        for b in words_:
            yield (a, b), 1  # ("the", "the") from one str object, or from two equal ones


@reduce
def pair_total(pair: tuple[str, str] | frozenset[str], counts: Iterable[int]) -> Iterator[Any]:
    yield pair, sum(counts)


@job(partitions=4)
def cooccurrence() -> list[Any]:
    return [word_pairs, pair_total]


@map
def letter_sets(line: str) -> Iterator[tuple[frozenset[str], int]]:
    for word in line.split():
        yield frozenset(word.lower()), 1  # "dog" and "god" are one key


@job(partitions=8)
def anagram_sets() -> list[Any]:
    return [letter_sets, pair_total]


@map
def numbers(line: str) -> Iterator[tuple[Any, str]]:
    for index, word in enumerate(line.split()):
        yield [1, 1.0, True, 2, 2.0][index % 5], word


@reduce
def number_groups(key: Any, values: Iterable[str]) -> Iterator[tuple[Any, int]]:
    count("reduce_calls")
    yield key, len(list(values))


@job(partitions=5)
def mixed_numbers() -> list[Any]:
    return [numbers, number_groups]


# reduce-only jobs: their inputs are record files (an earlier job's results, or files
# Disco's own library wrote), grouped by key across all of them
@job
def merge_counts() -> list[Any]:
    return [total]


@reduce(sort=False)  # str, bytes and int keys: grouped by hashing, as they cannot be sorted
def all_values(key: Any, values: Iterable[Any]) -> Iterator[tuple[Any, list[Any]]]:
    yield key, list(values)


@job
def values_by_key() -> list[Any]:
    return [all_values]


# partitions=None, Disco's meaning: one unlabelled output per map task, one reduce task
@job(partitions=None)
def unpartitioned_words() -> list[Any]:
    return [words]


@reduce(init=count_task)
def counted_total(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@job(partitions=None)
def unpartitioned_count() -> list[Any]:
    return [words, counted_total]


# a third run for chains: histogram's (count, words) records become how many words there are
@map
def group_sizes(record: tuple[int, list[str]]) -> Iterator[tuple[str, int]]:
    _, words_ = record
    yield "distinct", len(words_)


@job(partitions=2)
def distinct_words() -> list[Any]:
    return [group_sizes, total]


# a map that sleeps before each record: a run that lasts until it is killed
@map
def slow_words(line: str, params: dict[str, float]) -> Iterator[tuple[str, int]]:
    time.sleep(params["seconds"])
    for word in line.split():
        yield word, 1


@job(partitions=1, params={"seconds": 60.0})
def sleepy() -> list[Any]:
    return [slow_words, total]


# combiners and a partitioner that fail after the map has read its inputs
def none_combiner(word: str, counts: Iterable[int]) -> Any:
    return None


def raising_combiner(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    raise ValueError(f"combiner broke on {word!r}")


def to_seven(key: Any, partitions: int) -> int:
    return 7


def by_length_but_the(word: Any, partitions: int) -> int:
    if word == "the":
        word = "rebound"  # the key named is the one the partitioner was given
        raise KeyError("no partition for this one")
    return len(word) % partitions


@reduce(combiner=none_combiner)
def total_none_combined(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@reduce(combiner=raising_combiner)
def total_raising_combined(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@reduce(partitioner=to_seven)
def total_in_seven(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@job(partitions=2, max_failures=0)
def none_combined() -> list[Any]:
    return [words, total_none_combined]


@job(partitions=2, max_failures=0)
def raising_combined() -> list[Any]:
    return [words, total_raising_combined]


@reduce(partitioner=by_length_but_the)
def total_by_length(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@job(partitions=2, max_failures=0)
def partitioned_out_of_range() -> list[Any]:
    return [words, total_in_seven]


@job(partitions=2, max_failures=0)
def raising_partitioner() -> list[Any]:
    return [words, total_by_length]


@stage(partitioner=to_seven)
def passed_in_seven(records: Iterable[Any]) -> Iterator[Any]:
    yield from records


@stage(partitioner=by_length_but_the)
def passed_by_length(records: Iterable[Any]) -> Iterator[Any]:
    yield from records


@job(partitions=2, max_failures=0)
def stage_partitioned_out_of_range() -> list[Any]:
    return [words, passed_in_seven]


@job(partitions=2, max_failures=0)
def stage_raising_partitioner() -> list[Any]:
    return [words, passed_by_length]


class Half(enum.IntEnum):
    """Partitions a partitioner names by an int subclass (numpy's integers are alike)."""

    LOW = 0
    HIGH = 1


def by_half(key: str, partitions: int) -> Half:
    return Half.HIGH if key[:1] > "m" else Half.LOW


def note_mixed(state: None, params: dict[str, set[bool]]) -> None:
    if len(params["halves"]) > 1:
        count("reduce tasks given both halves")


@reduce(partitioner=by_half, done=note_mixed)
def total_by_half(
    word: str, counts: Iterable[int], params: dict[str, set[bool]]
) -> Iterator[tuple[str, int]]:
    params["halves"].add(word[:1] > "m")  # each task has its own copy of params
    yield word, sum(counts)


@job(partitions=2, params={"halves": set()})
def halved_count() -> list[Any]:
    return [words, total_by_half]


# a map whose output depends on a module global (a notebook's cell may change it)
SUFFIX = "A"


@map
def suffixed(record: tuple[str, Any]) -> Iterator[tuple[str, int]]:
    yield f"{record[0]}{SUFFIX}", 1


@job(partitions=1)
def suffix_job() -> list[Any]:
    return [suffixed]


# a reduce that fails on one key, lazily (in the records it yields) or at once
@reduce
def picky_total(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    if word == "boom":
        raise ValueError("cannot total 'boom'")
    yield word, sum(counts)


@job(partitions=2, max_failures=0)
def picky_count() -> list[Any]:
    return [words, picky_total]


# a value that cannot be pickled (written as records are)
@map
def with_a_lock(line: str) -> Iterator[tuple[str, Any]]:
    yield line, threading.Lock()


@job(max_failures=0)
def unpicklable_values() -> list[Any]:
    return [with_a_lock]


# a value nested deeper than pickle goes: a RecursionError from the pickler (probe DN F1)
@map
def with_a_deep_list(line: str) -> Iterator[tuple[str, Any]]:
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    yield line, deep


@job(max_failures=0)
def deep_values() -> list[Any]:
    return [with_a_deep_list]


# a value pickle refuses with an AttributeError ("Can't pickle local object"), not a TypeError
@map
def with_a_lambda(line: str) -> Iterator[tuple[str, Any]]:
    yield line, lambda: line


@job(max_failures=0)
def lambda_values() -> list[Any]:
    return [with_a_lambda]


class Handle:
    """A wrapper of a resource that refuses to be pickled, in its own ``__reduce__``."""

    def __reduce__(self) -> Any:
        raise TypeError("Handle objects cannot be pickled")


# only the first line's value cannot be pickled: a batch of later ones is written with it
@map
def with_a_handle(line: str) -> Iterator[tuple[str, Any]]:
    yield line, Handle() if line == "a" else line


@job(max_failures=0)
def handle_values() -> list[Any]:
    return [with_a_handle]


@reduce(combine=True)
def total_combined_any(key: str, values: Iterable[Any]) -> Iterator[tuple[str, Any]]:
    yield key, list(values)


@job(partitions=2, max_failures=0)
def unpicklable_values_combined() -> list[Any]:
    return [with_a_lock, total_combined_any]


@map
def twice(line: str) -> Iterator[tuple[str, int]]:
    yield line, 1
    yield line, 1


@reduce(combine=True)
def locking_total(key: str, values: Iterable[Any]) -> Iterator[tuple[str, Any]]:
    yield key, threading.Lock()


@job(partitions=2, max_failures=0)
def unpicklable_combined_values() -> list[Any]:
    return [twice, locking_total]


# keys that do not hash (lists), which a sorted reduce takes, under combine=True: the map's
# combining stops at the first, and the rest is written as the map made it
@map
def list_keys(line: str, params: dict[str, bool]) -> Iterator[tuple[Any, int]]:
    for word in line.split():
        key: Any = [word] if len(word) > 3 else word
        yield key, (len(word) if params["varied"] else 1)


def by_kind(key: Any, partitions: int) -> int:
    """str keys to one reduce task, lists to the other: each sorts keys of one type."""
    return 0 if isinstance(key, str) else 1


@reduce(combine=True, partitioner=by_kind)
def list_key_total(key: Any, counts: Iterable[int]) -> Iterator[tuple[Any, int]]:
    yield key, sum(counts)


@job(partitions=2, params={"varied": False})
def list_keys_combined() -> list[Any]:
    return [list_keys, list_key_total]


@reduce(partitioner=by_kind)
def as_lists(key: Any, counts: Iterable[int]) -> Iterator[tuple[Any, int]]:
    """A reduce before a combining one: its pairs go through the combiner's add()."""
    for number in counts:
        yield (key if isinstance(key, list) else [key]), number


@reduce(combine=True, name="list_key_total_again")
def list_key_total_again(key: Any, counts: Iterable[int]) -> Iterator[tuple[Any, int]]:
    yield key, sum(counts)


@job(partitions=2, params={"varied": True})
def list_keys_combined_after_a_reduce() -> list[Any]:
    return [list_keys, as_lists, list_key_total_again]


# the job's env= as its task sees it, after a nap (runs at once in threads share a process)
@map
def env_after_a_nap(line: str, params: Any) -> Iterator[tuple[str, Any]]:
    import os
    import pathlib

    pathlib.Path(params["started"]).touch()
    time.sleep(params["seconds"])
    yield line, os.environ.get(line)


@job(partitions=None)
def napping_env() -> list[Any]:
    return [env_after_a_nap]
