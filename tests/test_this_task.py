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

    def look() -> None:  # a thread the stage starts sees its task too, in a worker
        try:
            seen.append(this_task().partition)
        except StageError:
            seen.append("none")

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
            in_thread = ["none"] if mode == "inline" else [partition]  # inline: its own only
            assert (stage, seen, name) == ("placed", in_thread, run.jobname)
            assert partition == default_partition(key, 3), key
            assert values[0][0] in ("left", "right")


def test_this_task_outside_a_task_says_where_it_works() -> None:
    with pytest.raises(StageError, match=r"this_task\(\) tells the task a stage runs in"):
        this_task()


@reduce
def inputs_seen(key: str, values: Any) -> Any:
    yield key, (this_task().input, this_task().master)


def record_input_at_the_end(state: Any, params: Any) -> None:
    from discodsl import count

    count("input at the end" if this_task().input else "no input at the end")


@map(done=record_input_at_the_end)
def lines_done(line: str) -> Any:
    yield line, 1


@job(partitions=2)
def read_where() -> list[Any]:
    return [lines_done, inputs_seen]


def test_a_reduce_and_a_done_hook_read_no_one_input_and_only_a_cluster_has_a_master(
    mode: str, tmp_path: Any
) -> None:
    # A reduce told the last file it had read, a done hook the last input, and a local
    # run's task a master it had not (http://localhost:8989, another on this machine)
    # (probe ED F4, F5).
    left = tmp_path / "left.txt"
    left.write_text("a\nb\n")
    with read_where.run([str(left)], mode=mode, progress=False) as run:
        seen = dict(run)
        counted = run.counters
    assert {value[0] for value in seen.values()} == {""}
    masters = {value[1] for value in seen.values()}
    assert masters == ({""} if mode != "cluster" else masters - {""}) and len(masters) == 1
    assert counted.get("no input at the end") == 1 and "input at the end" not in counted


def test_inline_a_thread_of_the_programs_own_is_in_no_task_while_one_runs() -> None:
    # It was told the task another thread ran inline (probe ED F3).
    inside, outside = threading.Event(), threading.Event()
    said: list[Any] = []

    @map
    def waits(line: str) -> Any:
        inside.set()
        outside.wait(30)
        yield line, 1

    @job
    def waiting() -> list[Any]:
        return [waits]

    thread = threading.Thread(
        target=lambda: said.append(list(waiting.run(["raw://a"], mode="inline")))
    )
    thread.start()
    assert inside.wait(30)
    try:
        with pytest.raises(StageError, match="none runs in this thread"):
            this_task()
    finally:
        outside.set()
        thread.join(30)
    assert said == [[("a", 1)]]


@map
def pickled(line: str) -> Any:
    import pickle

    copy = pickle.loads(pickle.dumps(this_task()))
    yield len(pickle.dumps(this_task())), (copy.input, copy.stage, repr(copy))


@job(partitions=None)
def pickling() -> list[Any]:
    return [pickled]


def test_a_pickled_task_holds_its_fields_not_the_record_being_read(tmp_path: Any) -> None:
    # It held the task's place in its input, the line being read with it: 5 MB (EE F3).
    path = tmp_path / "big.txt"
    path.write_text("x" * 5_000_000 + "\n")
    [(size, (read, stage, shown))] = list(pickling.run([str(path)], mode="inline"))
    assert size < 1000 and read == path.as_uri() and stage == "pickled"
    assert "master=''" in shown and f"input={path.as_uri()!r}" in shown
