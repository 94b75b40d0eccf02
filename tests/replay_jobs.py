"""Jobs shaped like the ones recorded on a real Disco 0.5.4 master (disco-reference)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from discodsl import job, map, stage


def _both_labels(line: str) -> Iterator[tuple[int, str]]:
    yield 0, line
    yield 1, line


def _passthrough(records: Iterable[Any]) -> Iterator[Any]:
    yield from records


def identity(key: Any, partitions: int) -> int:
    return int(key)


def to_zero(key: Any, partitions: int) -> int:
    return 0


first = map(_both_labels, name="map")


@job(partitions=2)
def protocol_map_reduce() -> list[Any]:
    return [first, stage(_passthrough, name="reduce", grouping="group_label", partitioner=identity)]


@job(partitions=2)
def groupings_all_node_nodelabel() -> list[Any]:
    return [
        first,
        stage(_passthrough, name="gall", grouping="group_all"),
        stage(_passthrough, name="gnode", grouping="group_node"),
        stage(_passthrough, name="gnl", grouping="group_node_label", partitioner=to_zero),
    ]


@job(partitions=2)
def concurrent_stage() -> list[Any]:
    return [first, stage(_passthrough, name="reduce", grouping="group_all", concurrent=True)]


# a map that prints, one that fails, one that echoes its input
@map
def chatty(line: str) -> Iterator[tuple[str, int]]:
    print(f"saw {line}")
    yield line, 1


@map
def explode(line: str) -> Iterator[tuple[str, int]]:
    if "bad" in line:
        raise KeyError(line)
    yield line, 1


@map
def busy(line: str) -> Iterator[tuple[str, int]]:
    from discodsl import Retry

    if "busy" in line:
        raise Retry(f"service busy at {line}")
    yield line, 1


@job
def busy_job() -> list[Any]:
    return [busy]


@job
def chatty_job() -> list[Any]:
    return [chatty]


@job
def exploding_job() -> list[Any]:
    return [explode]


@map
def very_chatty(line: str) -> Iterator[tuple[str, int]]:
    """Prints and reports status far faster than the master's MSG limit allows."""
    from discodsl import status

    for i in range(3000):
        print(f"line {i} of {line}")
        if i % 100 == 0:
            status(f"{i} done")
        if i % 1000 == 0:
            import time

            time.sleep(0.4)
    yield line, 1


@job
def very_chatty_job() -> list[Any]:
    return [very_chatty]


# the job's env= as each task sees it
@map
def env_value(line: str) -> Iterator[tuple[str, Any]]:
    import os

    yield line, os.environ.get(line)


@job(partitions=None, env={"GREETING": "café ünïcode"})
def env_job() -> list[Any]:
    return [env_value]
