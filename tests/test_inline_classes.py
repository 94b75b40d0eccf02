"""An inline run leaves the classes of the user's modules as they were."""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests import inline_class_jobs as jobs

INPUT = ["raw://ab\nac\nbd"]


def test_an_inline_run_leaves_a_class_it_ships_by_value_as_it_was() -> None:
    """Each inline task unpickles its copy of the job in this process, and cloudpickle set
    the state the class was shipped with on the class itself: its methods replaced by
    copies holding copies of their globals, which a change to a global then missed."""
    methods = dict(vars(jobs.Hit))
    assert sorted(jobs.earliest_hits.run(INPUT, mode="inline")) == [("a", "ab!"), ("b", "bd!")]
    assert all(vars(jobs.Hit)[name] is method for name, method in methods.items())
    jobs.SUFFIX["text"] = "?"
    try:
        assert jobs.Hit("x").shown() == "x?"
    finally:
        jobs.SUFFIX["text"] = "!"


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_a_second_identical_run_of_a_job_holding_a_class_is_served_from_the_cache(
    mode: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Inline, the first run changed the class (pickling its records cached __slotnames__ on
    it, and its methods were replaced): the second run's key differed, and it ran again."""
    first = jobs.visited_pages.run(INPUT, mode=mode, cache=True)
    capfd.readouterr()
    again = jobs.visited_pages.run(INPUT, mode=mode, cache=True)
    assert sorted(again) == sorted(first) == [("a", "ab,ac"), ("b", "bd")]
    assert "discodsl: cached results of job 'visited_pages'" in capfd.readouterr().err


def test_a_class_attribute_a_stage_changes_is_its_tasks_own_inline_as_on_a_worker() -> None:
    """Putting back the class's attributes after each task's load shared a set a stage
    filled between every task, run and the program: 'a' counted once, then nothing."""
    inputs = ["raw://a b", "raw://a c"]  # two map tasks, each sees 'a' once
    for _ in range(2):
        got = sorted(jobs.sightings.run(inputs, mode="inline"))
        assert got == [("a", 2), ("b", 1), ("c", 1)]
        assert jobs.Seen.words == set()


def test_inline_runs_in_threads_leave_a_class_as_it_was() -> None:
    """Each run put back what it had seen before its tasks: one run's copies, taken by
    another for the class's own, stayed on the class (its method reading stale globals)."""
    methods = dict(vars(jobs.Hit))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often, as under load

    def runs(index: int) -> None:
        for _ in range(5):
            jobs.earliest_hits.run([f"raw://a{index}", f"raw://b{index}"], mode="inline")

    threads = [threading.Thread(target=runs, args=(index,)) for index in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        sys.setswitchinterval(interval)
    assert all(vars(jobs.Hit)[name] is method for name, method in methods.items())


def test_a_class_attribute_a_stage_adds_inline_is_gone_once_the_run_ends() -> None:
    """A cache a stage made on first use stayed on the program's class, and the next run
    (and its cache key) found it; a worker's stays in the worker."""
    for _ in range(2):
        assert sorted(jobs.memoized.run(["raw://a", "raw://b"], mode="inline")) == [
            ("a", False),
            ("b", False),
        ]
        assert "table" not in vars(jobs.Memo)


def test_inline_runs_in_threads_each_see_their_own_tasks_class_state() -> None:
    """One run's task loading its copy of the job dropped the attribute another run's task
    had just set (an AttributeError), or shared it: per-task counts of 5 came out 2, 9, 10."""
    lines = [f"raw://{' '.join(f'{name}{n}' for n in range(5))}" for name in "abc"]
    got: dict[int, list[tuple[str, int]]] = {}
    failed: list[BaseException] = []

    def runs(index: int) -> None:
        try:
            got[index] = sorted(jobs.tallies.run(lines, mode="inline"))
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=runs, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failed == []
    want = [(line.removeprefix("raw://"), 5) for line in sorted(lines)]
    assert len(got) == 3 and all(counts == want for counts in got.values()), got
    assert "seen" not in vars(jobs.Tally)


def test_a_run_submitted_while_an_inline_task_runs_goes_at_once_with_the_class_as_it_was(
    tmp_path: Path,
) -> None:
    """Pickling a job waited for the inline task going in another thread to end: a submit()
    that should return at once did not, and a stage waiting for the program hung it. The
    job ships the class as it was before that task, not with the task's attribute."""
    params = {"started": str(tmp_path / "started"), "go": str(tmp_path / "go")}
    got: dict[str, Any] = {}
    inline = threading.Thread(
        target=lambda: got.update(
            inline=list(jobs.waiting.run(["raw://a"], mode="inline", params=params))
        )
    )
    inline.start()
    deadline = time.monotonic() + 60
    while not os.path.exists(params["started"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    run = jobs.tallies.submit(["raw://x y"], mode="local")  # a job holding the same class
    Path(params["go"]).touch()  # the inline stage goes on only once submit() has returned
    inline.join(120)
    assert got["inline"] == [("a", True)]
    assert list(run.wait(timeout=120)) == [("x y", 2)]  # not the inline task's {"the task's"}
    assert "seen" not in vars(jobs.Tally)


def _counted_table(size: int, tally: str) -> dict[str, int]:
    with open(tally, "a") as out:  # a file: this module itself ships by value
        out.write("unpickled\n")
    return _Table(size, tally)


class _Table(dict):  # type: ignore[type-arg]
    """Params whose unpickling is counted in the file ``tally``."""

    def __init__(self, size: int, tally: str) -> None:
        super().__init__((f"k{i}", i) for i in range(size))
        self.tally = tally

    def __reduce__(self) -> Any:
        return _counted_table, (len(self), self.tally)


def test_an_inline_task_unpickles_the_params_only_if_it_hands_them_on(tmp_path: Path) -> None:
    # Every task unpickled the whole job, params and all: 100 inputs with a 1M-entry table
    # took 41 s inline against 2.4 s local (probe CU F3). A reduce that takes no params, and
    # a map that does not, now skip them; a map that takes them still gets its own copy.
    from discodsl import job, map, reduce

    @map
    def looked_up(line: str, params: Any) -> Any:
        yield line, params["table"].get("k1", 0)

    @map
    def plain(line: str) -> Any:
        yield line, 1

    @reduce
    def total(key: str, values: Any) -> Any:
        yield key, sum(values)

    tally = tmp_path / "tally"
    inputs = [f"raw://x{i}" for i in range(5)]
    for first, unpickled in ((plain, 0), (looked_up, 5)):
        counted = job(functools.partial(list, [first, total]), partitions=3)
        counted = counted.with_options(params={"table": _Table(2, str(tally))})
        tally.write_text("")
        assert len(list(counted.run(inputs, mode="inline"))) == 5
        assert tally.read_text().count("unpickled") == unpickled
