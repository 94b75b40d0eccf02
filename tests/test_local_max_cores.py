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

from discodsl import job, map, reduce


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
