"""Faults injected into real runs: nothing lost, nothing duplicated, nothing left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from discodsl import DataError, TaskFailed, map
from tests import fault_jobs


def test_worker_killed_mid_task_is_retried_and_nothing_is_duplicated(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    data = tmp_path / "in.txt"
    lines = [f"line{i}" for i in range(200)]
    data.write_text("\n".join([*lines[:100], "kill", *lines[100:]]) + "\n")
    results = fault_jobs.survives_a_kill.run(
        inputs=[data], mode="local", params={"markers": str(markers)}
    )
    assert len(os.listdir(markers)) == 1  # the worker really was killed once
    got = sorted(results)
    assert got == sorted([(line, 1) for line in lines] + [("kill", 1)])


def _worker_processes_under(root: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(root)):
            found.append(int(entry.name))
    return found


def test_ctrl_c_stops_workers_and_removes_temporary_files(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    data = tmp_path / "in.txt"
    data.write_text("a\nb\n")
    script = textwrap.dedent(f"""
        import signal, sys
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from tests import fault_jobs
        print("started", flush=True)
        try:
            fault_jobs.sleepy.run(inputs=[{str(data)!r}], mode="local", progress=False)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            raise
    """)
    env = {**os.environ, "TMPDIR": str(temp)}
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 60
        while not _worker_processes_under(temp) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _worker_processes_under(temp), "no worker started"
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert "interrupted" in out, err
    assert process.returncode != 0
    deadline = time.monotonic() + 10
    while _worker_processes_under(temp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _worker_processes_under(temp) == []
    assert list(temp.iterdir()) == []


def _mount_tiny_tmpfs(where: Path, size: str) -> bool:
    """A file system that fills up: a tmpfs of ``size`` (needs root, as CI runs)."""
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        timeout=30,
    )
    return done.returncode == 0


@map
def bulky(line: str) -> Iterator[tuple[str, str]]:
    for i in range(20_000):
        yield f"{line}-{i}", "x" * 200


def test_no_space_left_names_the_path_and_keeps_no_partial_output(tmp_path: Path) -> None:
    """A device that fills while a task writes: a clear error naming the file, nothing kept."""
    from discodsl import builder, job
    from discodsl.runners.node import JobFailed, NodeMaster
    from discodsl.worker.errors import DataError
    from discodsl.worker.records import RecordWriter

    full = tmp_path / "full"
    if not _mount_tiny_tmpfs(full, "3m"):
        # Not root: the same failure, injected where the writer meets the disk.
        writer = RecordWriter(str(tmp_path / "out"))
        writer._file.write = _no_space  # type: ignore[method-assign]
        with pytest.raises(DataError, match=r"No space left on device.*out|out.*No space left"):
            writer.write_many(("k", "v" * 1000) for _ in range(5000))
            writer.close()
        assert list(tmp_path.iterdir()) == [full]
        return
    try:

        @job(max_failures=0)
        def fills_the_disk() -> list[Any]:
            return [bulky]

        pack = builder.pack_job(fills_the_disk.spec(), fills_the_disk.options, [["raw://a"]])
        master = NodeMaster(
            disco_data=str(full / "data"),
            workers=1,
            max_failures=0,
            environ={
                "DISCODSL_PYTHON": sys.executable,
                "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            },
        )
        with pytest.raises(JobFailed) as info:
            master.run(pack)
        text = info.value.outcome.text
        assert "No space left on device" in text and "bulky" in text
        leftovers = [p for p in full.rglob("*") if p.is_file() and "/out/" in str(p)]
        assert leftovers == [], leftovers
    finally:
        subprocess.run(["umount", "-l", str(full)], capture_output=True, timeout=30)


def _no_space(data: bytes) -> int:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("kind", sorted(fault_jobs.HALTS))
def test_a_base_exception_a_stage_raises_fails_its_job_at_once_naming_it(kind: str) -> None:
    run = fault_jobs.halting.submit([f"raw://{kind}"], mode="local", progress=False)
    with pytest.raises(TaskFailed, match=rf"record 0: .*{kind}: stopped here \(not retried"):
        run.wait(timeout=120)
    assert sum("assigned to" in message for _, _, message in run.events()) == 1  # one try
    with pytest.raises(fault_jobs.HALTS[kind], match="stopped here"):
        fault_jobs.halting.run([f"raw://{kind}"], mode="inline", progress=False)


def test_a_huge_exception_message_reaches_the_user_cut_to_its_start_and_end(mode: str) -> None:
    with pytest.raises((TaskFailed, ValueError)) as info:
        fault_jobs.huge_message.run(["raw://x"], mode=mode, progress=False)
    text = str(info.value)
    if mode == "inline":  # the exception itself, in the caller's process
        assert len(text) > 10_000_000
        return
    assert "ValueError: start xxx" in text and "characters cut ...]" in text and " end" in text
    assert len(text) < 8192
    # The facts line came through (a Disco master keeps 8192 characters of an event).
    assert info.value.exc_type == "ValueError" and info.value.url == "raw://x"
    assert "Traceback" in str(info.value.remote_traceback)


@pytest.mark.parametrize(
    "url",
    [
        "raw://emoji",
        "raw://" + "x" * 9000,
        "raw://a\nb",
        "raw://" + "é" * 4000,
        "raw://" + "\U0001f600" * 3000,
    ],
    ids=["emoji", "long", "newline", "long-accents", "long-emoji"],
)
def test_a_failure_names_its_input_once_and_its_facts_reach_the_client(mode: str, url: str) -> None:
    """600 emoji in the message, or a 9,000-byte URL, made the facts line longer than a
    Disco master keeps of an event: the client raised JobDead with the raw event. The
    input was named twice when the summary had cut it, or showed it escaped."""
    with pytest.raises((TaskFailed, ValueError)) as info:
        fault_jobs.wide_message.run([url], mode=mode, progress=False)
    if mode == "inline":  # the exception itself, in the caller's process
        assert info.type is ValueError
        return
    error, text = info.value, str(info.value)
    assert (error.exc_type, error.stage) == ("ValueError", "raises_a_wide_message")
    assert error.url == url or "characters cut ...]" in error.url  # a long one, cut
    assert "Traceback" in str(error.remote_traceback)
    assert text.count("on input") == 1 and len(text) < 8192, text
    assert ("\U0001f600" * 50 if url == "raw://emoji" else "ValueError: boom") in text


@pytest.mark.parametrize("mode", ["local", "inline"])
def test_an_input_server_that_never_answers_fails_in_the_http_timeout_set(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DISCODSL_HTTP_TIMEOUT bounds a worker's reads of http:// inputs too (a job's env=
    carries it to a cluster's nodes), not only the client's requests to the master."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # accepts, never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/data.txt"
    monkeypatch.setenv("DISCODSL_HTTP_TIMEOUT", "0.5")
    started = time.monotonic()
    try:
        with pytest.raises((TaskFailed, DataError)) as info:  # inline: the DataError itself
            fault_jobs.reads_a_silent_server.run(inputs=[url], mode=mode)
    finally:
        silent.close()
    assert time.monotonic() - started < 20
    assert "(timeout 0.5 s: DISCODSL_HTTP_TIMEOUT" in str(info.value)


@pytest.mark.parametrize("damage", ["a hunk's bytes", "a gzip's end"])
def test_a_damaged_input_is_not_blamed_on_stage_code(tmp_path: Path, damage: str) -> None:
    # "not retried: an exception from stage code ... raise discodsl.Retry": no stage ran.
    import gzip

    from discodsl import job
    from discodsl.worker.records import RecordWriter

    if damage == "a hunk's bytes":
        path = tmp_path / "pairs"
        with RecordWriter(str(path)) as writer:
            writer.write_many([("a", 1), ("b", 2)])
        data = bytearray(path.read_bytes())
        data[20] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path = tmp_path / "lines.txt.gz"
        path.write_bytes(gzip.compress(b"a b\n" * 1000)[:-12])

    @map
    def passed(record: Any) -> Iterator[Any]:
        yield record, 1

    @job(partitions=None)
    def reads() -> list[Any]:
        return [passed]

    with pytest.raises(TaskFailed) as info:
        list(reads.run([str(path)], mode="local"))
    assert str(info.value).endswith("(not retried: the same bytes would fail again)")


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_keys_that_do_not_sort_name_no_record(tmp_path: Path, mode: str) -> None:
    # The last record read was named, "record 5", though the keys named were 0 and 1.
    from discodsl import StageError, job, reduce
    from discodsl.worker.records import RecordWriter

    path = tmp_path / "pairs"
    with RecordWriter(str(path)) as writer:
        writer.write_many([("a", 1), (b"b", 2), ("c", 3), ("d", 4), ("e", 5), ("f", 6)])

    @reduce
    def summed(key: Any, values: Any) -> Iterator[Any]:
        yield key, sum(values)

    @job
    def sums() -> list[Any]:
        return [summed]

    with pytest.raises((StageError, TaskFailed)) as info:
        list(sums.run([str(path)], mode=mode))
    message = str(info.value)
    assert "cannot sort its keys: b'b' (bytes) and 'a' (str)" in message
    assert "record" not in message.split("or group with sort=False")[1]


def test_a_stage_holding_an_object_that_refuses_to_unpickle_is_told_so_not_a_missing_module() -> (
    None
):
    """The local runner blamed the object's module ("No module named ...: install it on the
    nodes"), from a pre-flight that lacks this process's import path, which the workers
    have; the worker's own error was never shown."""
    with pytest.raises(TaskFailed) as info:
        fault_jobs.holding_a_connection().run(["raw://x"], mode="local", progress=False)
    text = str(info.value)
    assert "ValueError: a Connection cannot be unpickled" in text
    assert "make it in an init hook" in text and "install" not in text


def test_a_timeout_kills_a_worker_interpreter_that_never_spoke_at_once(tmp_path: Path) -> None:
    # One stuck before its first word (its start-up hangs) was given the 10 s a zygote
    # gets to end its children, past the timeout (probe DB F7).
    from tests import jobs

    pids = tmp_path / "pids"
    stuck = tmp_path / "stuck-python"
    stuck.write_text(f"#!/bin/sh\necho $$ >> {pids}\nexec sleep 1000\n")
    stuck.chmod(0o755)
    started = time.monotonic()
    try:
        with pytest.raises(TaskFailed, match="ran past timeout=2 seconds"):
            jobs.wordcount.run(
                ["raw://a b"], mode="local", timeout=2, env={"DISCODSL_PYTHON": str(stuck)}
            )
        assert time.monotonic() - started < 8
    finally:
        for pid in pids.read_text().split() if pids.exists() else []:
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)


@pytest.mark.parametrize("mode", ["local", "cluster"])
def test_a_child_stage_code_forked_cannot_write_the_tasks_files(
    request: pytest.FixtureRequest, mode: str
) -> None:
    """A child that went on with the task wrote its records to the parent's file, or over
    it: 2 runs in 10 failed with a DamagedInput, blaming the file (probe DI F3)."""
    if mode == "cluster":
        request.getfixturevalue("cluster_env")
    for _ in range(4):
        run = fault_jobs.forking.submit(["raw://a", "raw://b"], mode=mode, progress=False)
        with run.wait(timeout=120) as results:
            assert sorted(results) == [(f"{line}{i}", "parent") for line in "ab" for i in range(3)]
        said = "".join(message for _, _, message in run.events())
        assert "which stage code forked from the task's process" in said, said
        assert "end a forked child with os._exit() when its work is done" in said


@pytest.mark.parametrize("mode", ["local", "cluster"])
def test_a_child_stage_code_forked_that_ends_the_task_is_ended_saying_so(
    request: pytest.FixtureRequest, mode: str
) -> None:
    """One that came back to the worker with no record was ended silently at its first
    write, after the worker had sent its output to /dev/null, or hung flushing it (probe
    DJ F1)."""
    if mode == "cluster":
        request.getfixturevalue("cluster_env")
    run = fault_jobs.forking_a_returner.submit(["raw://a"], mode=mode, progress=False)
    with run.wait(timeout=120) as results:
        assert list(results) == [("a", 70)]
    said = "".join(message for _, _, message in run.events())
    assert "went on with the task (it was to end the task): it ends here" in said, said


@pytest.mark.parametrize("mode", ["local", "cluster"])
def test_a_child_stage_code_forked_cannot_read_the_tasks_input(
    request: pytest.FixtureRequest, tmp_path: Path, mode: str
) -> None:
    """Stopped at its first write, the child had read on before it, through the file's
    descriptor and offset it shares with its parent: the job ended ready with half its
    records (probe DK F1, on a real master too)."""
    if mode == "cluster":
        request.getfixturevalue("cluster_env")
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"w{i % 1000} x\n" for i in range(300_000)))
    results = fault_jobs.forking_on_a_file.run([str(lines)], mode=mode, progress=False)
    assert dict(results) == {"w1": 300}


def test_a_child_a_reduce_forks_cannot_read_the_tasks_spilled_groups(tmp_path: Path) -> None:
    # Past its memory budget, a reduce reads its groups back from spill files, whose
    # offsets a forked child shared: the task failed with a garbage UnpicklingError blamed
    # on the stage (probe DL F4).
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"{i}\n" for i in range(20_000)))
    results = fault_jobs.forking_past_the_budget.run([str(lines)], mode="local", progress=False)
    counts = dict(results)
    assert len(counts) == 5000 and set(counts.values()) == {4}


def test_a_forked_child_is_ended_before_it_writes_and_a_process_not_a_worker_never(
    tmp_path: Path,
) -> None:
    from discodsl.worker import forks
    from discodsl.worker.records import RecordWriter

    forks.check("write", "anything")  # no task process named (the driver, inline): none checked
    script = (
        "import os, sys\n"
        "from discodsl.worker import forks\n"
        "from discodsl.worker.records import RecordWriter\n"
        "forks.own_task()\n"
        "if os.fork() == 0:\n"
        f"    RecordWriter({str(tmp_path / 'out')!r})\n"
        "    os._exit(0)\n"
        "print(os.waitstatus_to_exitcode(os.wait()[1]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "70\n", done
    assert "went on with the task (it was to write " in done.stderr, done.stderr
    assert not list(tmp_path.iterdir())  # the file was not made
    with RecordWriter(str(tmp_path / "here")) as writer:  # this process: no task named
        writer.write(1, 2)
