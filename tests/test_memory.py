"""Loops that hold records let go of them by bytes, not only by count (worker.memory).

The unit tests model the process's resident size as what the loop under test holds,
through a fake ``memory.resident_bytes``; the last test measures a real worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discodsl import count, job, map, reduce
from discodsl.worker import memory
from discodsl.worker.partition import spread

MB = 1 << 20


class Held:
    """A process whose resident size is a base plus the bytes of the records held."""

    def __init__(self) -> None:
        self.bytes = 0
        self.most = 0

    def take(self, size: int) -> None:
        self.bytes += size
        self.most = max(self.most, self.bytes)

    def resident(self) -> int:
        return 100 * MB + self.bytes


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Held:
    """The process under test, its size what it holds."""
    process = Held()
    monkeypatch.setattr(memory, "resident_bytes", process.resident)
    return process


def test_runs_grow_while_records_are_small_and_shrink_to_one_when_they_are_big(
    held: Held,
) -> None:
    growth = memory.Growth(64 * MB, most=4096)
    lengths = []
    for _ in range(20):  # 100 bytes a record: runs double up to the longest
        lengths.append(growth.every)
        held.take(100 * growth.every)
        assert not growth.look()
    assert lengths[:4] == [1, 2, 4, 8] and growth.every == 4096
    held.take(20 * MB * growth.every)  # then records of 20 MB: one a run
    assert growth.look() and growth.every == 1


def test_looks_within_a_record_are_paced_by_the_size_of_what_it_yields(held: Held) -> None:
    growth = memory.Growth(64 * MB, most=4096)
    every, lengths = 1, []
    for _ in range(20):  # 100 bytes a pair: the interval doubles up to the most
        lengths.append(every)
        held.take(100 * every)
        every = growth.paced(every, 4096)
    assert lengths[:4] == [1, 2, 4, 8] and every == 4096
    held.take(2 * MB * every)  # then pairs of 2 MB: 4 of them, an eighth of the limit
    assert growth.paced(every, 4096) == 4
    held.take(20 * MB * 4)  # then pairs of 20 MB: a look after each
    assert growth.paced(4, 4096) == 1


def test_a_run_that_freed_memory_does_not_lengthen_the_next_past_the_records_size(
    held: Held,
) -> None:
    growth = memory.Growth(64 * MB, most=8192)
    held.take(MB)  # a first run of one record of 1 MB: runs of 8 now add 8 MB
    growth.look()
    assert growth.every == 2  # at most twice the last
    for _ in range(5):
        held.take(-held.bytes)  # what was held was written and freed: the size drops
        growth.look()
    assert growth.every == 8


def test_what_was_let_go_but_stays_resident_counts_as_freed_and_the_base_climbs_little(
    held: Held,
) -> None:
    """A combiner writes what it holds, and the allocator keeps the memory: counting from
    the size then, each flush came later than the last (the base climbed by all of it)."""
    growth = memory.Growth(16 * MB, most=1)
    for flush in range(10):
        while not growth.look():
            held.take(MB)
        growth.released()  # let go, and still resident: the size does not drop
        if flush == 0:  # the limit's worth counts as freed: not over until it grows again
            assert not growth.look() and growth.base - growth.start == MB
    # Counting from the size then, the base would have climbed by 17 MB a flush (170 MB).
    assert growth.base - growth.start <= 8 * MB  # half the limit at most
    held.take(-held.bytes)  # given back to the system at last
    growth.released()
    assert growth.base == growth.start and not growth.look()


def test_a_flush_that_gives_nothing_back_is_not_made_again_until_the_process_grows(
    held: Held,
) -> None:
    """Memory the process keeps past a flush (writers' buffers for 1,000 partitions, under a
    budget of 1 MiB) found it over the limit at every look: a combiner flush per record,
    10 to 30 times slower (probe DT F10). A flush waits for a quarter limit of growth."""
    growth = memory.Growth(MB, most=1)
    held.take(3 * MB)  # kept for good, whatever is flushed
    assert growth.look()
    growth.released()
    looks = 0
    while not growth.look():  # records of 16 KB each
        held.take(16 * 1024)
        looks += 1
    assert looks == 17  # past a quarter of the limit grown since the flush


def test_runs_keep_the_rest_of_a_run_left_unfinished() -> None:
    growth = memory.Growth(64 * MB, most=3)
    growth.every = 3
    items = iter(range(7))
    first, second = memory.runs(items, growth), []
    run = next(first)
    assert next(run) == 0  # left after one item: the next run goes on from 1
    for run in first:
        second.append(list(run))
    assert second == [[1, 2, 3], [4, 5, 6]]


def spread_sizes(sizes: list[int], partitions: int, held: Held) -> list[tuple[int, int]]:
    """Spread records of ``sizes`` bytes (held until written) with a 64 MB limit; what was
    written, as (partition, record number)."""
    written: list[tuple[int, int]] = []

    def pairs() -> Iterator[tuple[int, int]]:
        for number, size in enumerate(sizes):
            held.take(size)
            yield number, size

    def write(partition: int, batch: list[tuple[int, int]]) -> None:
        held.take(-sum(size for _, size in batch))
        written.extend((partition, number) for number, _ in batch)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(memory, "resident_bytes", held.resident)
        spread(pairs(), partitions, write, limit=64 * MB)
    return written


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.sampled_from([10, 1000, MB, 20 * MB]), min_size=1, max_size=300),
    partitions=st.integers(1, 5),
)
def test_spread_writes_every_record_once_in_order_whatever_their_sizes(
    sizes: list[int], partitions: int
) -> None:
    written = spread_sizes(sizes, partitions, Held())
    assert sorted(number for _, number in written) == list(range(len(sizes)))
    for partition in range(partitions):
        mine = [number for part, number in written if part == partition]
        assert mine == sorted(mine)


@settings(max_examples=30, deadline=None)
@given(size=st.sampled_from([10, 1000, MB, 20 * MB]), count=st.integers(1, 400))
def test_spread_holds_about_its_limit_whatever_the_records_size(size: int, count: int) -> None:
    held = Held()
    spread_sizes([size] * count, 3, held)
    # Over the limit by the run that crossed it at most: an eighth of the limit in records
    # of this size (runs double up to that), or one record if one is bigger.
    assert held.most <= 64 * MB + 64 * MB // 8 + size


def test_spread_meets_records_much_bigger_than_the_last_within_a_run(held: Held) -> None:
    # Runs are sized on the last: records of 1 MB, then of 20 MB, hold a run of the big ones
    # (8: an eighth of the limit in 1 MB records) before the next look lets go of them.
    spread_sizes([MB] * 40 + [20 * MB] * 40, 2, held)
    assert held.most <= 64 * MB + 8 * 20 * MB


def peak_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def count_peak(state: Any = None) -> None:
    count("peak_kb", peak_kb())


@map(done=count_peak)
def big_values(line: str) -> Iterator[tuple[str, bytes]]:
    for number in range(300):
        yield f"k{number % 7}", os.urandom(16) * (MB // 16)  # 300 MB in all, from one line


@reduce
def total_length(key: str, values: Any) -> Iterator[tuple[str, int]]:
    yield key, sum(len(value) for value in values)


@job(partitions=2)
def big_map_output() -> list[Any]:
    return [big_values, total_length]


def test_a_map_worker_writing_big_values_stays_near_its_budget() -> None:
    results = big_map_output.run(["raw://one"], mode="local", progress=False)
    assert sum(dict(results).values()) == 300 * MB
    # Its batches go once it has grown by a quarter of the 256 MiB budget; before, a map
    # task held up to 8,192 records a partition: all 300 MB here.
    assert results.counters["peak_kb"] < 160 * 1024, results.counters


@map(done=count_peak)
def distinct_keys(line: str) -> Iterator[tuple[str, int]]:
    count, values = line.split()
    for number in range(int(count)):  # one record, every key in it
        yield f"key-{number:012d}", 1 if values == "ones" else number


@reduce(combine=True)
def key_total(key: str, values: Any) -> Iterator[tuple[str, int]]:
    yield key, sum(values)


@job(partitions=2, memory_budget=16 * MB)
def many_keys_combined() -> list[Any]:
    return [distinct_keys, key_total]


@pytest.mark.parametrize("values", ["ones", "numbers"])  # counted, then listed
def test_a_combined_map_with_many_keys_in_one_record_stays_near_its_budget(values: str) -> None:
    # A fold keeps every key: before, the map task held all of them. Now what it holds is
    # combined and written whenever it has grown by half the budget, within a record too
    # (one record held 1.5 M keys: 240 MB counted, 280 MB listed; 750,000 keys, half that).
    results = many_keys_combined.run([f"raw://750000 {values}"], mode="local", progress=False)
    totals = dict(results)
    assert len(totals) == 750_000
    assert sum(totals.values()) == (750_000 if values == "ones" else sum(range(750_000)))
    assert results.counters["peak_kb"] < 80 * 1024, results.counters


@map(done=count_peak)
def wide_records(line: str) -> Iterator[tuple[int, bytes]]:
    for number in range(int(line)):
        yield number, b"x" * 200


@reduce
def record_count(key: int, values: Any) -> Iterator[tuple[int, int]]:
    yield key, sum(1 for _ in values)


@job(partitions=256, memory_budget=16 * MB)
def many_partitions() -> list[Any]:
    return [wide_records, record_count]


def test_a_map_with_many_partitions_stays_near_its_budget() -> None:
    # Each partition's file buffered a 1 MiB hunk: 256 of them held all 80 MB here (a map
    # task grew by 1 MiB a partition, whatever its budget). Now the hunks share an eighth
    # of the budget, 16 KiB each at the least.
    results = many_partitions.run(["raw://400000"], mode="local", progress=False)
    assert len(dict(results)) == 400_000
    assert results.counters["peak_kb"] < 64 * 1024, results.counters


@map(done=count_peak)
def few_keys_big_values(line: str) -> Iterator[tuple[str, bytes]]:
    number = int(line)
    yield f"k{number % 3}", bytes([number]) * (10 * MB)


def keep_longest(key: str, values: Any) -> Iterator[tuple[str, bytes]]:
    yield key, max(values, key=len)


@reduce(combiner=keep_longest)
def longest(key: str, values: Any) -> Iterator[tuple[str, int]]:
    yield key, len(max(values, key=len))


@map(done=count_peak)
def one_record_of_big_values(line: str) -> Iterator[tuple[str, bytes]]:
    for number in range(int(line)):
        yield "k", bytes([number]) * (2 * MB)


@job(partitions=1, memory_budget=16 * MB)
def one_record_combined() -> list[Any]:
    return [one_record_of_big_values, longest]


def test_a_combined_map_of_one_record_yielding_big_values_stays_near_its_budget() -> None:
    # Within a record the combiner looked at its memory every 4,096 pairs whatever their
    # size: 60 values of 2 MiB from one record were all held (138 MB; 615 MB for 300).
    results = one_record_combined.run(["raw://60"], mode="local", progress=False)
    assert dict(results) == {"k": 2 * MB}
    assert results.counters["peak_kb"] < 70 * 1024, results.counters


@job(partitions=1, memory_budget=16 * MB)
def big_values_combined() -> list[Any]:
    return [few_keys_big_values, longest]


def test_a_combined_map_of_big_values_stays_near_its_budget(tmp_path: Path) -> None:
    # After each write of what it held, the combiner counted its growth from the size then,
    # which still held what the allocator kept of what was freed: it let go later each
    # time, and the task grew with its input (148 MB here, 66 MB now; 452 MB for 120 values
    # of 20 MB).
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"{number}\n" for number in range(40)))
    results = big_values_combined.run([lines], mode="local", progress=False, workers=1)
    assert dict(results) == {"k0": 10 * MB, "k1": 10 * MB, "k2": 10 * MB}
    assert results.counters["peak_kb"] < 110 * 1024, results.counters
