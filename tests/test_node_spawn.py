"""Starting a job's launcher while another thread's child still holds it open for writing.

Each local job writes its jobhome's ``worker`` launcher, then starts it. A
process forked by another thread (another run's worker start) while that
file was open for writing holds it open until it execs, and exec'ing the
launcher then fails with ETXTBSY ("Text file busy"). CI met it: three runs
submitted from one thread, one of them failed with "cannot start the worker:
[Errno 26] Text file busy". The start is tried again after short pauses.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from discodsl.errors import JobError
from discodsl.runners.node import popen
from tests.jobs import wordcount


def _script(tmp_path: Path) -> Path:
    script = tmp_path / "worker"
    script.write_text("#!/bin/sh\nexit 7\n")
    script.chmod(0o755)
    return script


def test_a_launcher_busy_for_a_moment_starts_once_free(tmp_path: Path) -> None:
    script = _script(tmp_path)
    writer = os.open(script, os.O_WRONLY)  # as the other thread's child holds it
    threading.Timer(0.1, os.close, args=(writer,)).start()
    process = popen([str(script)])
    assert process.wait(timeout=10) == 7


def test_a_launcher_busy_for_good_fails_with_the_error(tmp_path: Path) -> None:
    script = _script(tmp_path)
    writer = os.open(script, os.O_WRONLY)
    try:
        with pytest.raises(OSError) as caught:
            popen([str(script)])
    finally:
        os.close(writer)
    assert caught.value.errno == errno.ETXTBSY


def test_a_job_home_that_cannot_be_written_names_the_directory_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A full TMPDIR: a bare "OSError: [Errno 28] No space left on device", no path, no fix.
    from discodsl import jobhome

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(jobhome, "extract_jobhome", full)
    with pytest.raises(JobError) as caught:
        wordcount.run(["raw://a b"], mode="local")
    message = str(caught.value)
    assert "could not lay out job 'wordcount@" in message and "No space left on device" in message
    assert "free space there, or set TMPDIR" in message


def test_a_tasks_index_that_cannot_be_written_names_the_task_the_file_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A disk full as a map task ended: a bare PermissionError or OSError out of run().
    from discodsl.runners.layout import JobLayout

    monkeypatch.setattr(JobLayout, "new_index", lambda self, stage, taskid: ".disco/gone/x")
    with pytest.raises(JobError) as caught:
        wordcount.run(["raw://a b"], mode="local")
    message = str(caught.value)
    assert "could not write the index of task words:0's outputs" in message
    assert "/.disco/gone/x (No such file or directory)" in message
    # Removed while the run went on, not full (probe DB F5).
    assert "was removed while the run went on (a cleaner of /tmp?)" in message
    assert "free space" not in message


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        (errno.EFBIG, "the size limit on files (ulimit -f): raise it"),
        (errno.EROFS, "set TMPDIR to a directory this program may write"),
        (errno.EACCES, "set TMPDIR to a directory this program may write"),
        (errno.EMFILE, "ulimit -n"),
        (errno.ENOSPC, "free space there, or set TMPDIR to a directory with room"),
        # told to free space (probe DT F11)
        (errno.ENAMETOOLONG, "the job's paths under TMPDIR are too long: shorten TMPDIR"),
    ],
)
def test_a_job_home_not_written_is_told_the_fix_of_its_error(
    monkeypatch: pytest.MonkeyPatch, error: int, fix: str
) -> None:
    # Every error was told to free space (probe DB F5).
    from discodsl import jobhome

    def failing(*args: object, **kwargs: object) -> None:
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(jobhome, "extract_jobhome", failing)
    with pytest.raises(JobError) as caught:
        wordcount.run(["raw://a b"], mode="local")
    assert fix in str(caught.value), str(caught.value)
    assert (error == errno.ENOSPC) == ("free space" in str(caught.value))


@pytest.mark.parametrize("slots", [1, 0])
def test_a_run_whose_task_threads_cannot_all_start_runs_on_those_that_did(
    monkeypatch: pytest.MonkeyPatch, slots: int
) -> None:
    # Under `ulimit -v 200000`: a bare "RuntimeError: can't start new thread" out of run().
    start = threading.Thread.start

    def limited(thread: threading.Thread) -> None:  # each stage's first ``slots`` start
        slot = thread.name.startswith("discodsl task slot")
        if slot and int(thread.name.rpartition(" ")[2]) >= slots:
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", limited)
    if slots:
        results = wordcount.run(["raw://a b", "raw://b", "raw://c"], mode="local", workers=4)
        assert sorted(results) == [("a", 1), ("b", 2), ("c", 1)]
        return
    with pytest.raises(JobError) as caught:
        wordcount.run(["raw://d e", "raw://f"], mode="local", workers=4)
    message = str(caught.value)
    assert "could not start a thread to run the tasks of stage 'words'" in message
    assert "can't start new thread" in message and "ulimit -v" in message
