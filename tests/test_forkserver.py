"""The local runner's fork server: one zygote per job forks a child per task.

Every task still sees what a Disco task sees (fresh module state, its own
init hook run and its own copy of params, its own printed output); a child
that dies mid-task is retried as a dead worker is and the zygote lives on;
a zygote that dies is replaced; ``DISCODSL_NO_FORKSERVER=1`` starts a
worker per task as before. A killed driver taking its zygote along is in
tests/test_worker_death.py.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from discodsl import SettingsError, job, map
from discodsl.runners import forkserver
from tests import jobs
from tests.scripts import run_script

TASKS = 40
BOUND = 300  # seconds a run may take (timeout=): no test hangs
_SEEN: list[str] = []  # a module global the stage below mutates


def _inputs(n: int = TASKS) -> list[str]:
    """``n`` one-record inputs: one map task each."""
    return [f"raw://line-{i}" for i in range(n)]


def _run(chosen: Any, **options: Any) -> list[Any]:
    return sorted(chosen.run(mode="local", progress=False, timeout=BOUND, **options))


def _claim(directory: str, name: str) -> bool:
    """True the first time ``name`` is claimed in ``directory`` (by any process)."""
    try:
        os.close(os.open(os.path.join(directory, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


@map
def remembers(line: str) -> Iterator[tuple[str, int]]:
    _SEEN.append(line)
    yield line, len(_SEEN)


@job(workers=2)
def global_state() -> list[Any]:
    return [remembers]


def _note_call(params: dict[str, Any]) -> None:
    params["calls"].append(os.getpid())


@map(init=_note_call)
def calls_seen(line: str, params: dict[str, Any]) -> Iterator[tuple[str, int]]:
    params["calls"].append(os.getpid())
    yield line, len(params["calls"])


@job(workers=2, params={"calls": []})
def params_state() -> list[Any]:
    return [calls_seen]


@map
def parent(line: str) -> Iterator[tuple[str, int]]:
    yield line, os.getppid()


@job(workers=2)
def parents() -> list[Any]:
    return [parent]


@map
def dies_once(line: str, params: dict[str, str]) -> Iterator[tuple[str, int]]:
    """Ends its process the first time it sees the line 'die': os._exit or a segfault."""
    if line == "die" and _claim(params["markers"], "died"):
        if params["how"] == "exit":
            os._exit(3)
        import ctypes

        ctypes.string_at(0)
    yield line, os.getppid()


@job(workers=2, max_failures=1)
def dying() -> list[Any]:
    return [dies_once]


@map
def kills_its_parent(line: str, params: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """SIGKILLs the process that started it (a zygote, never the driver), once."""
    forked = os.getppid() != params["driver"]
    if line == "die" and forked and _claim(params["markers"], "zygote-killed"):
        os.kill(os.getppid(), signal.SIGKILL)
    yield line, 1


@job(workers=2)
def zygote_killer() -> list[Any]:
    return [kills_its_parent]


@map
def says(line: str) -> Iterator[tuple[str, int]]:
    print(f"saying {line} from {os.getpid()}")
    yield line, 1


@job(workers=2)
def talkative() -> list[Any]:
    return [says]


def test_a_global_a_task_mutates_is_fresh_in_every_task() -> None:
    results = _run(global_state, inputs=_inputs())
    assert results == sorted((f"line-{i}", 1) for i in range(TASKS))


def test_every_task_runs_its_init_hook_on_its_own_copy_of_params() -> None:
    results = _run(params_state, inputs=_inputs())
    assert results == sorted((f"line-{i}", 2) for i in range(TASKS))


def test_tasks_are_forked_from_one_zygote_per_job() -> None:
    ppids = {ppid for _, ppid in _run(parents, inputs=_inputs())}
    assert len(ppids) == 1 and os.getpid() not in ppids, ppids


def test_without_the_fork_server_every_task_is_started_by_the_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISCODSL_NO_FORKSERVER", "1")
    ppids = {ppid for _, ppid in _run(parents, inputs=_inputs(6))}
    assert ppids == {os.getpid()}


@pytest.mark.parametrize("value", ["0", "false", "No", "off"])
def test_a_no_forkserver_that_says_no_keeps_the_fork_server(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # Anything but "" and "0" turned it off, "false" too (probe EG F3: 5x slower, unsaid).
    monkeypatch.setenv("DISCODSL_NO_FORKSERVER", value)
    ppids = {ppid for _, ppid in _run(parents, inputs=_inputs(6))}
    assert len(ppids) == 1 and os.getpid() not in ppids, ppids


def test_a_no_forkserver_that_says_neither_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISCODSL_NO_FORKSERVER", "maybe")
    with pytest.raises(SettingsError) as err:
        _run(parents, inputs=_inputs(1))
    assert str(err.value) == (
        "DISCODSL_NO_FORKSERVER='maybe' says neither yes nor no: set it to 1 to start a worker "
        "process per task, or unset it (or 0) to fork them from a process that loaded the job"
    )


@pytest.mark.parametrize("how", ["exit", "segfault"])
def test_a_child_that_dies_is_retried_and_the_zygote_lives_on(tmp_path: Path, how: str) -> None:
    lines = [f"line-{i}" for i in range(20)]
    data = tmp_path / "lines"
    data.mkdir()
    for i, line in enumerate([*lines[:10], "die", *lines[10:]]):
        (data / f"{i:02d}.txt").write_text(line + "\n")
    results = _run(
        dying, inputs=[str(data / "*.txt")], params={"markers": str(tmp_path), "how": how}
    )
    assert (tmp_path / "died").exists()  # the child really died once
    assert sorted(line for line, _ in results) == sorted([*lines, "die"])
    ppids = {ppid for _, ppid in results}
    assert len(ppids) == 1 and os.getpid() not in ppids, ppids


def test_a_zygote_that_dies_is_replaced_and_every_task_still_runs(tmp_path: Path) -> None:
    data = tmp_path / "lines"
    data.mkdir()
    lines = [f"line-{i}" for i in range(20)]
    for i, line in enumerate([*lines[:5], "die", *lines[5:]]):
        (data / f"{i:02d}.txt").write_text(line + "\n")
    params = {"markers": str(tmp_path), "driver": os.getpid()}
    results = _run(zygote_killer, inputs=[str(data / "*.txt")], params=params)
    assert (tmp_path / "zygote-killed").exists()  # the zygote really was killed
    assert results == sorted((line, 1) for line in [*lines, "die"])


def test_each_task_forwards_its_own_printed_output(capsys: pytest.CaptureFixture[str]) -> None:
    results = _run(talkative, inputs=_inputs(20))
    assert len(results) == 20
    shown = [line for line in capsys.readouterr().err.splitlines() if "saying" in line]
    said = sorted(line.split("saying ")[1].split()[0] for line in shown)
    assert said == sorted(f"line-{i}" for i in range(20))  # every task's, once
    assert len({line.rsplit(" ", 1)[1] for line in shown}) == 20  # a process per task


def test_200_one_line_inputs_give_what_one_file_gives(tmp_path: Path) -> None:
    lines = [f"w{i % 17} w{i % 5} x{i}" for i in range(200)]
    whole = tmp_path / "all.txt"
    whole.write_text("".join(f"{line}\n" for line in lines))
    one_line = tmp_path / "one-line"
    one_line.mkdir()
    for i, line in enumerate(lines):
        (one_line / f"{i:03d}.txt").write_text(line + "\n")
    assert _run(jobs.wordcount, inputs=[str(one_line / "*.txt")]) == _run(
        jobs.wordcount, inputs=[str(whole)]
    )


def test_a_program_at_its_limit_of_threads_runs_its_tasks_without_a_fork_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fork server's reader thread could not start: a raw RuntimeError failed the run.
    start = threading.Thread.start

    def limited(thread: threading.Thread) -> None:
        if thread.name == "fork-server":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", limited)
    results = jobs.wordcount.run(["raw://a b a"], mode="local", progress=False)
    assert sorted(results) == [("a", 2), ("b", 1)]


def test_a_request_the_sender_and_the_zygotes_end_both_answer_is_answered_once() -> None:
    """The zygote ends as a fork is asked for: the asking thread (its send failed) and the
    reading thread (answering every request left) both answer it; the second raised
    KeyError in whichever thread came second."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    process = subprocess.Popen(["sleep", "60"])
    zygote = forkserver._Zygote(process, ours)
    try:
        to_child, from_child = os.pipe()
        zygote.pipes[7] = (to_child, from_child)
        zygote._answered(7, "the fork server is gone")  # the asking thread
        zygote._answered(7, "the fork server ended")  # the reading thread, a moment later
        assert zygote.started == {7: "the fork server is gone"} and not zygote.pipes
    finally:
        theirs.close()  # the reader sees the end
        zygote.reader.join(10)
        process.kill()
        process.wait()
        ours.close()


def test_a_fork_request_at_the_descriptor_limit_gives_back_its_first_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The second pipe of a request failing with EMFILE left the first one's two ends open
    # for good: a service that once met its limit later failed every run (probe CQ F5).
    made: list[tuple[int, int, int]] = []  # the first pipe's ends and its inode

    def pipe_failing_second() -> tuple[int, int]:
        if len(made) == 1:
            made.append((-1, -1, -1))
            raise OSError(errno.EMFILE, "Too many open files")
        read, write = os.pipe()
        made.append((read, write, os.fstat(read).st_ino))
        return read, write

    shim = types.ModuleType("os")
    shim.__dict__.update(vars(os))
    shim.pipe = pipe_failing_second  # type: ignore[attr-defined]
    monkeypatch.setattr(forkserver, "os", shim)
    assert dict(jobs.wordcount.run(["raw://a b a"], mode="local", progress=False)) == {
        "a": 2,
        "b": 1,
    }
    read, write, inode = made[0]
    assert not [end for end in (read, write) if _is_pipe(end, inode)]


def _is_pipe(fd: int, inode: int) -> bool:
    """Whether ``fd`` is open on the pipe of ``inode``."""
    try:
        return os.fstat(fd).st_ino == inode
    except OSError:
        return False


def test_each_forked_task_draws_its_own_numbers_from_numpys_global_generator(
    tmp_path: Path,
) -> None:
    # A script importing numpy, run inline first: every task of its local run, forked from
    # a zygote that had numpy loaded, drew the same number, where a Disco node's tasks,
    # each a new interpreter, draw their own (probe DI S6).
    done = run_script(
        tmp_path / "draws.py",
        "import numpy as np\n"
        "from discodsl import job, map\n"
        "@map\ndef draws(line):\n    yield line, float(np.random.rand())\n"
        "@job(partitions=None)\ndef drawing():\n    return [draws]\n"
        "list(drawing.run(['raw://x'], mode='inline'))\n"
        "drawn = dict(drawing.run([f'raw://{n}' for n in range(6)], mode='local'))\n"
        "print(len(set(drawn.values())))\n",
    )
    assert done.stdout == "6\n", (done.stdout, done.stderr)
