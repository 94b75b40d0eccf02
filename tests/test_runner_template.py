"""The runner template: a run is prepared once (options, JobSpec, inputs), decodes its
jobpack once, cleans up what a failed run left, and sums counters outside the progress bar."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from discodsl import builder, jobpack, sources
from discodsl.model import Job
from discodsl.options import JobOptions
from discodsl.runners.base import Counters, JobFiles, fan_out
from discodsl.runners.progress import Progress
from discodsl.worker.counters import PREFIX
from discodsl.worker.jobfile import read_jobdata
from tests import jobs


def counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Count the calls of ``owner.name`` from now on."""
    calls: list[int] = []
    original = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


@pytest.mark.parametrize("cache", [False, True])
@pytest.mark.parametrize("mode", ["inline", "local"])
def test_a_run_validates_builds_its_spec_and_resolves_its_inputs_once(
    mode: str, cache: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    validated = counting(monkeypatch, JobOptions, "__init__")
    specs = counting(monkeypatch, Job, "spec")
    resolved = counting(monkeypatch, sources, "_resolve_one")  # once per input
    results = jobs.wordcount.run(inputs=["raw://a b a"], mode=mode, progress=False, cache=cache)
    assert dict(results) == {"a": 2, "b": 1}
    assert (len(validated), len(specs), len(resolved)) == (1, 1, 1)
    results.close()


def test_a_local_run_decodes_its_jobpack_once(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded = counting(monkeypatch, jobpack, "decode")
    results = jobs.wordcount.run(inputs=["raw://a b a"], mode="local", progress=False)
    assert dict(results) == {"a": 2, "b": 1}
    assert len(decoded) == 1  # encode's own check of the bytes it writes to the jobfile
    results.close()


def test_the_worker_reads_jobdata_by_the_one_header_definition(tmp_path: Path) -> None:
    pack = builder.pack_job(jobs.wordcount.spec(), jobs.wordcount.options, [["raw://a"]])
    path = tmp_path / "jobfile"
    path.write_bytes(jobpack.encode(pack))
    assert read_jobdata(str(path)) == pack.jobdata
    path.write_bytes(jobpack.encode(pack)[:10])
    with pytest.raises(ValueError, match="truncated"):
        read_jobdata(str(path))


def test_job_files_are_removed_when_the_run_fails_and_kept_until_removed_otherwise() -> None:
    failed, kept = tempfile.mkdtemp(), tempfile.mkdtemp()
    with pytest.raises(RuntimeError), JobFiles(failed):
        raise RuntimeError("the run failed")
    assert not os.path.exists(failed)
    with JobFiles(kept) as files:
        pass
    assert os.path.isdir(kept)
    files.remove()
    assert not os.path.exists(kept)
    shutil.rmtree(kept, ignore_errors=True)


def counted(stage: str, taskid: int, counts: str) -> tuple[str, dict[str, Any]]:
    return "msg", {"stage": stage, "taskid": taskid, "text": f"{PREFIX}{counts}\n"}


def test_only_a_whole_msg_of_counts_is_counted() -> None:
    """A MSG counts when all of it is a report of counts, as a worker sends one; a line of
    one among other text (printed output, which a worker never sends starting so) does not."""
    counters = Counters()
    for text in (
        f'{PREFIX}{{"a": 1}}',
        f'{PREFIX}{{"a": 2}}\n',
        f'printed\n{PREFIX}{{"b": 1}}\n',
        f'{PREFIX}{{"b": 1}}\nprinted after\n',
        f"{PREFIX}[1]",
        f'{PREFIX}{{"c": "x", "a": 4}}',
    ):
        counters("msg", {"stage": "map", "taskid": 0, "text": text})
    counters("task_done", {"stage": "map", "taskid": 0})
    assert counters.totals == {"a": 7}


def test_counters_keep_a_task_s_counts_once_it_succeeds_and_drop_a_failed_attempt_s() -> None:
    counters = Counters()
    events = [
        counted("map", 0, '{"lines": 2}'),
        ("task_failed", {"stage": "map", "taskid": 0, "failures": 1}),
        counted("map", 0, '{"lines": 3}'),
        counted("map", 1, '{"lines": 4, "bad": "x"}'),
        ("task_done", {"stage": "map", "taskid": 0}),
        ("task_done", {"stage": "map"}),  # a bar moving on: no task named, nothing counted
    ]
    for kind, facts in events:
        counters(kind, facts)
    assert counters.totals == {"lines": 3}
    counters.succeeded("map", 1)
    assert counters.totals == {"lines": 7}


def test_progress_shows_what_stage_code_prints_but_not_its_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = Progress("job", enabled=False)
    progress(*counted("map", 0, '{"lines": 2}'))
    progress("msg", {"stage": "map", "taskid": 0, "text": "hello\n"})
    progress("task_done", {"stage": "map", "taskid": 0})
    progress.close()  # shown by a thread of its own: all of it once closed
    assert capsys.readouterr().err == "[map] hello\n"
    assert not hasattr(progress, "counters")


def test_a_failed_task_says_whether_it_is_tried_again(capsys: pytest.CaptureFixture[str]) -> None:
    """A stage's exception fails the job at once: "1 failure(s) so far" read as if more
    tries were coming."""
    progress = Progress("job", enabled=True)
    task = {"stage": "map", "taskid": 3, "limit": 3}
    progress("task_failed", {**task, "failures": 1, "fatal": True})
    progress("task_failed", {**task, "failures": 1, "fatal": False})
    progress("task_failed", {**task, "failures": 4, "fatal": False})
    progress("task_failed", {"stage": "map", "taskid": 3, "failures": 2})  # a cluster's
    progress.close()
    assert capsys.readouterr().err.splitlines() == [
        "[map:3] task failed, not retried (the job fails)",
        "[map:3] task failed, 1 failure(s) so far, to be retried",
        "[map:3] task failed, 4 failures, past max_failures=3 (the job fails)",
        "[map:3] task failed, 2 failure(s) so far, to be retried",
    ]


@pytest.fixture
def eager_switching() -> Iterator[None]:
    """Threads switch every microsecond (not every 5 ms): a race shows within a few thousand
    events instead of once in a long while."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _from_threads(handle: Callable[[str, Any], None], threads: int, tasks: int) -> None:
    """Each thread reports ``tasks`` tasks as a local run's do: a MSG with a count and a line
    printed, then the task done."""

    def report(thread: int) -> None:
        for i in range(tasks):
            taskid = thread * tasks + i
            handle(*counted("map", taskid, '{"n": 1}'))
            text = f"line {taskid} of thread {thread}\n"
            handle("msg", {"stage": "map", "taskid": taskid, "text": text})
            handle("task_done", {"stage": "map", "taskid": taskid})

    workers = [threading.Thread(target=report, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_events_from_task_threads_are_counted_and_shown_whole(
    eager_switching: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A local run's tasks report from threads of their own: every count is added and every
    printed line comes whole, on a line of its own."""
    counters, progress = Counters(), Progress("job", enabled=False)
    _from_threads(fan_out(counters, progress), threads=8, tasks=1500)
    progress.close()
    assert counters.totals == {"n": 8 * 1500}
    shown = capsys.readouterr().err.splitlines()
    expected = {f"[map] line {t * 1500 + i} of thread {t}" for t in range(8) for i in range(1500)}
    assert len(shown) == len(expected)
    assert set(shown) == expected
