"""Partitions where Disco's classic map partitions: a map-only job's outputs, and a
partitioner= with one partition (disco-spec.md section 9: label = partition(key,
partitions, params) whenever partitions is set)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from discodsl import count, job, map, reduce
from discodsl.errors import JobError
from discodsl.worker.errors import StageError
from discodsl.worker.partition import default_partition

pytest_plugins = ["tests.conftest_cluster"]


@map
def keyed(line: str) -> Any:
    for word in line.split():
        yield word, len(word)


@job(partitions=3)
def map_only() -> list[Any]:
    return [keyed]


@map
def passed_on(record: tuple[str, int]) -> Any:
    yield record


@job(partitions=None)
def read_back() -> list[Any]:
    return [passed_on]


def _label(listed: str) -> int:
    """The label in a result file's name, ``<stage>-<task>-<label>-<host or run>``."""
    return int(listed.rsplit("/", 1)[-1].split("-")[2])


def test_a_map_only_jobs_outputs_are_partitioned_as_disco_partitions_them(mode: str) -> None:
    # Every output was labelled 0, whatever partitions said (probe DZ F1).
    lines = ["a b c d e f", "g h i j", "a a k"]
    with map_only.run(inputs=[f"raw://{line}" for line in lines], mode=mode, progress=False) as run:
        assert Counter(run) == Counter((w, len(w)) for line in lines for w in line.split())
        files = [replicas[0] for replicas in run.listed_urls()]
        labels = {_label(url) for url in files}
        assert labels == {default_partition(w, 3) for line in lines for w in line.split()}
        for url, replicas in zip(files, run.record_urls(), strict=True):
            back = read_back.run([replicas], mode="inline", progress=False)
            keys_here = {w for w, _ in back}
            assert {default_partition(w, 3) for w in keys_here} == {_label(url)}


def test_a_map_only_job_of_one_partition_or_none_writes_one_file_a_task(mode: str) -> None:
    inputs = ["raw://a b c d e f", "raw://g h i j"]
    for partitions in (1, None):
        with map_only.run(inputs, mode=mode, progress=False, partitions=partitions) as run:
            assert {_label(replicas[0]) for replicas in run.listed_urls()} == {0}
            assert len(run.listed_urls()) == 2


@map
def keyed_by_dicts(line: str) -> Any:
    yield {"line": line}, len(line)


@job(partitions=4)
def map_only_dicts() -> list[Any]:
    return [keyed_by_dicts]


def test_a_map_only_job_of_keys_the_default_partitioner_refuses_runs_as_with_one(
    mode: str,
) -> None:
    # With partitions=4 it failed, telling to give "the reduce after it" a partitioner=,
    # where there was none (probe EB F1); nothing groups its outputs: label 0 does.
    with map_only_dicts.run(["raw://a", "raw://bb"], mode=mode, progress=False) as run:
        assert sorted(value for _, value in run) == [1, 2]
        assert {_label(replicas[0]) for replicas in run.listed_urls()} == {0}


def fussy(key: str, partitions: int) -> int:
    count("partitioner calls")
    if key == "boom":
        raise ValueError("a partitioner's bug")
    return 0 if key == "a" else 5


@map
def words(line: str) -> Any:
    for word in line.split():
        yield word, 1


@reduce(partitioner=fussy)
def total(word: str, counts: Any) -> Any:
    yield word, sum(counts)


@job
def with_partitioner() -> list[Any]:
    return [words, total]


def test_a_partitioner_is_called_with_one_partition_too(mode: str) -> None:
    # With partitions=1 it was never called: its bug showed only once the job was scaled
    # out (probe DZ F2).
    run = with_partitioner.run(["raw://a a"], mode=mode, progress=False)
    assert sorted(run) == [("a", 2)]
    assert run.counters["partitioner calls"] >= 1
    # Inline, the task's error itself; elsewhere the JobError that tells it.
    said = r"returned 5 for the key 'b'.*from 0 to 0 \(partitions=1\)"
    with pytest.raises((JobError, StageError), match=said):
        with_partitioner.run(["raw://a b"], mode=mode, progress=False, max_failures=0)
    with pytest.raises((JobError, ValueError), match="a partitioner's bug"):
        with_partitioner.run(["raw://boom"], mode=mode, progress=False, max_failures=0)
