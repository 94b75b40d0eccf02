"""Scale held: many inputs, many tasks, a big reduce partition. Slow: run with `pytest -m slow`."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from discodsl import job, map, reduce, stage

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@stage(grouping="group_all")
def count_records(records: Iterable[Any]) -> Iterator[tuple[str, int]]:
    yield "records", sum(1 for _ in records)


@job
def fifty_thousand_inputs() -> list[Any]:
    return [count_records]


def test_fifty_thousand_inputs() -> None:
    before = _peak_rss_mb()
    inputs = [f"raw://{i}" for i in range(50_000)]
    results = fifty_thousand_inputs.run(inputs, mode="local", progress=False)
    assert dict(results) == {"records": 50_000}
    assert _peak_rss_mb() - before < 200


@map
def one(line: str) -> Iterator[tuple[str, int]]:
    yield "lines", 1


@reduce(combine=True)
def add(key: str, values: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield key, sum(values)


@job(partitions=1)
def ten_thousand_tasks() -> list[Any]:
    return [one, add]


def test_ten_thousand_tasks() -> None:
    before = _peak_rss_mb()
    results = ten_thousand_tasks.run([f"raw://{i}" for i in range(10_000)], progress=False)
    assert dict(results) == {"lines": 10_000}
    assert _peak_rss_mb() - before < 200


@map
def keyed(line: str) -> Iterator[tuple[str, str]]:
    yield line[:6], line


@reduce
def longest(key: str, values: Iterable[str]) -> Iterator[tuple[str, int]]:
    yield key, max(len(v) for v in values)


@job(partitions=1, memory_budget=64 * 1024 * 1024)
def big_partition() -> list[Any]:
    return [keyed, longest]


def test_a_one_gigabyte_partition_with_a_64_megabyte_budget(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    line = "x" * 90
    with open(path, "w") as handle:
        for i in range(11_000_000):  # ~1 GB of reduce input, one partition
            handle.write(f"{i % 100_000:06d}{line}\n")
    assert os.path.getsize(path) > 1_000_000_000
    results = big_partition.run([path], progress=False)
    got = dict(results)
    assert len(got) == 100_000 and set(got.values()) == {96}
