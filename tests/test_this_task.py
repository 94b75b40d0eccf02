"""this_task(): what task a stage runs in, as Disco's this_name(), this_host(),
this_master(), this_partition() and this_inputs() tell it (probe DZ F3: a join told its
datasets apart by them)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from discodsl import job, map, reduce, this_task
from discodsl.worker.errors import StageError
from discodsl.worker.partition import default_partition

pytest_plugins = ["tests.conftest_cluster"]


@map
def tagged(line: str) -> Any:
    task = this_task()
    source = "left" if "left" in task.input else "right"  # a join's two datasets
    yield line, (source, task.stage, task.taskid, task.partition, task.job, task.host)


@reduce
def placed(key: str, values: Any) -> Any:
    task = this_task()
    seen: list[Any] = []

    def look() -> None:  # a thread the stage starts sees its task too
        seen.append(this_task().partition)

    helper = threading.Thread(target=look)
    helper.start()
    helper.join()
    yield key, (task.stage, task.partition, seen, sorted(values), task.job)


@job(partitions=3)
def joined() -> list[Any]:
    return [tagged, placed]


@job(partitions=None)
def only_mapped() -> list[Any]:
    return [tagged]


def test_a_map_knows_its_input_and_job_and_a_reduce_its_partition(mode: str, tmp_path: Any) -> None:
    left, right = tmp_path / "left.txt", tmp_path / "right.txt"
    left.write_text("a\nb\n")
    right.write_text("c\n")
    with only_mapped.run([str(left), str(right)], mode=mode, progress=False) as run:
        found = dict(run)
    assert {key: value[0] for key, value in found.items()} == {
        "a": "left",
        "b": "left",
        "c": "right",
    }
    assert {value[1] for value in found.values()} == {"tagged"}
    assert len({value[2] for value in found.values()}) == 2  # a task each input
    assert {value[3] for value in found.values()} == {value[2] for value in found.values()}
    assert {value[4] for value in found.values()} == {run.jobname}
    assert all(isinstance(value[5], str) and value[5] for value in found.values())
    with joined.run([str(left), str(right)], mode=mode, progress=False) as run:
        for key, (stage, partition, seen, values, name) in run:
            assert (stage, seen, name) == ("placed", [partition], run.jobname)
            assert partition == default_partition(key, 3), key
            assert values[0][0] in ("left", "right")


def test_this_task_outside_a_task_says_where_it_works() -> None:
    with pytest.raises(StageError, match=r"this_task\(\) tells the task a stage runs in"):
        this_task()
