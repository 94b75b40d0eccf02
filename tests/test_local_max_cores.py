"""``max_cores=`` on the local runner: never more tasks of the job at once than it says,
as a Disco master schedules them (the job option is the jobpack's ``scheduler.max_cores``)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from discodsl import job, map, reduce, stage
from discodsl.runners import local


@map
def marked(line: str, params: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """Note when this task started and ended, in a file of its own under params["marks"]."""
    started = time.time()
    time.sleep(params["seconds"])
    mark = {"start": started, "end": time.time()}
    Path(params["marks"], uuid.uuid4().hex).write_text(json.dumps(mark))
    yield line, 1


@reduce
def summed(key: str, counts: Any) -> Iterator[tuple[str, int]]:
    yield key, sum(counts)


@job(partitions=1)
def marking() -> list[Any]:
    return [marked, summed]


def most_at_once(marks: Path) -> int:
    """The most tasks whose [start, end] overlapped, from their marker files."""
    spans = [json.loads(path.read_text()) for path in marks.iterdir()]
    edges = sorted([(s["start"], 1) for s in spans] + [(s["end"], -1) for s in spans])
    running = highest = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        highest = max(highest, running)
    return highest


def inputs(tmp_path: Path, count: int) -> list[str]:
    paths = []
    for index in range(count):
        path = tmp_path / f"in{index}.txt"
        path.write_text(f"line{index}\n")
        paths.append(str(path))
    return paths


@pytest.mark.parametrize(("workers", "max_cores", "expected"), [(4, 1, 1), (4, 2, 2), (1, 3, 1)])
def test_the_local_runner_runs_no_more_tasks_at_once_than_max_cores(
    tmp_path: Path, workers: int, max_cores: int, expected: int
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    results = marking.run(
        inputs(tmp_path, 4),
        mode="local",
        progress=False,
        workers=workers,
        max_cores=max_cores,
        params={"marks": str(marks), "seconds": 0.5},
    )
    assert dict(results) == {f"line{i}": 1 for i in range(4)}
    assert len(os.listdir(marks)) == 4
    assert most_at_once(marks) <= expected


@pytest.mark.parametrize("forked", [True, False])
def test_workers_far_above_the_tasks_start_no_more_workers_than_the_tasks_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forked: bool
) -> None:
    """Workers readied for the next stage, whose tasks are not known yet, were as many as
    ``workers``: 300 processes for a job of 4 tasks. No more than the cores now."""
    from discodsl.runners import forkserver, node

    if not forked:
        monkeypatch.setenv("DISCODSL_NO_FORKSERVER", "1")
    started: list[int] = []
    real_ask, real_spawn = forkserver._Zygote._ask, node.NodeMaster._spawn

    def ask(self: Any, spare: bool) -> int:
        started.append(1)
        return real_ask(self, spare)

    def spawn(self: Any, *args: Any, **kwargs: Any) -> Any:
        started.append(1)
        return real_spawn(self, *args, **kwargs)

    monkeypatch.setattr(forkserver._Zygote, "_ask", ask)
    monkeypatch.setattr(node.NodeMaster, "_spawn", spawn)
    marks = tmp_path / "marks"
    marks.mkdir()
    params = {"seconds": 0, "marks": str(marks)}
    results = marking.run(inputs=inputs(tmp_path, 3), mode="local", workers=300, params=params)
    assert len(list(results)) == 3
    # Of the order of the tasks and the cores (spares that die waiting are replaced), not of
    # workers=: 300 before.
    assert len(started) <= 3 * (4 + (os.cpu_count() or 1)), len(started)


@stage(grouping="split")
def lines_per_input(records: Any) -> Iterator[tuple[str, int]]:
    yield "lines", sum(1 for _ in records)


_SEEN: list[str] = []  # the task's first line: each task is a process of its own


def _first_line_kept(params: Any) -> list[str]:
    _SEEN.clear()
    return _SEEN


def _first_line_said(kept: list[str], params: Any) -> list[tuple[str, str]]:
    return [("first", kept[0])]


@map(init=_first_line_kept, done=_first_line_said)
def first_line(line: str) -> Iterator[tuple[str, int]]:
    if not _SEEN:
        _SEEN.append(line)
    yield from ()


@map
def each_line(line: str) -> Iterator[tuple[str, int]]:
    yield "lines", 1


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        ([lines_per_input], [("lines", 2000)]),
        ([first_line], [("first", "line 0000")]),
        ([each_line, lines_per_input], [("lines", 1000), ("lines", 1000)]),
    ],
    ids=["a split stage", "a map with hooks", "a plain map"],
)
def test_only_a_plain_first_map_has_a_big_file_cut_into_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stages: list[Any], expected: Any
) -> None:
    # The local runner cut a big file into a range per worker whatever the first stage: a
    # @stage (once per input on Disco) counted lines per range, and a map's init and done
    # hooks ran per range, where inline and a master give one result per input.
    monkeypatch.setattr(local.sources, "MIN_SPLIT", 1000)
    text = tmp_path / "big.txt"
    text.write_text("".join(f"line {n:04d}\n" for n in range(2000)))

    def per_input() -> list[Any]:
        return stages

    run = job(partitions=None)(per_input).run
    assert sorted(run([text], mode="local", workers=2)) == expected
