"""Runs you can hold: ``job.submit()`` returns a :class:`~discodsl.Run` at once; runs wait,
die, chain and run side by side; a local run is seen and killed from another process."""

from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import gc
import io
import json
import os
import pickle
import re
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from discodsl import JobDead, JobError, Run, SettingsError, TaskFailed, interrupts, job, map, places
from discodsl.cli import main
from discodsl.errors import InputRunFailed, JobActive
from discodsl.runners import registry
from discodsl.worker import owners, urls
from tests import cluster_jobs, jobs, semantics_jobs
from tests.disco_master import DiscoMaster
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own local run registry."""
    path = tmp_path / "runs"
    monkeypatch.setenv(registry.RUNS_ENV, str(path))
    return path


def _program(
    script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``script``, Python's source, as a program of its own with ``args``, from the
    repository's root (so ``tests`` imports); its CompletedProcess, output as text."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


def started(run: Run) -> bool:
    return any("scheduled with" in message for _, _, message in run.events())


# -- one run, held --------------------------------------------------------------------


def test_a_run_is_held_waited_for_and_read(mode: str) -> None:
    run = jobs.top_words.submit(["raw://a b a 1", "raw://b a"], mode=mode, progress=False)
    assert isinstance(run, Run) and run.mode == mode
    results = run.wait(timeout=120)
    assert sorted(results) == [(1, "a=3"), (2, "b=2")]
    assert run.status == "ready" and run.results() is results
    assert run.counters == results.counters == {"skipped": 1}
    messages = [message for _, _, message in run.events()]
    assert any(m.startswith("READY: Job done") for m in messages), messages
    assert all(len(event) == 3 for event in run.events())
    assert run.jobname in repr(run) and "ready" in repr(run)


def test_inline_submit_runs_at_once_in_the_calling_thread() -> None:
    seen: list[str] = []
    run = jobs.wordcount.submit(["raw://a b a"], mode="inline")
    seen.append(run.status)
    assert seen == ["ready"] and dict(run.wait()) == {"a": 2, "b": 1}
    run.kill()  # nothing left to stop
    assert run.status == "ready"


def test_a_local_run_in_a_thread_finishes_after_the_main_thread_has_ended(
    tmp_path: Path,
) -> None:
    """The interpreter shuts down (its exit hooks run) while the thread's job still has a
    stage to run: as plain code in that thread would, the job runs to its end."""
    data = tmp_path / "in.txt"
    data.write_text("a\nb\na\n")
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(f"""
        import threading, time
        from discodsl import job, map, reduce

        @map
        def slow(line):
            time.sleep(0.2)
            yield line, 1

        @reduce
        def add(key, counts):
            yield key, sum(counts)

        @job(partitions=2)
        def counted():
            return [slow, add]

        def go():
            try:
                print(sorted(counted.run([{str(data)!r}] * 4, mode="local", progress=False)))
            except BaseException as exc:
                print("the thread's run raised", type(exc).__name__, exc)

        threading.Thread(target=go).start()
    """)
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    if sys.version_info[:3] < (3, 12, 3) and sys.version_info[:2] == (3, 12):
        # Python 3.12 before 3.12.3 started no thread once the main thread had ended.
        refused = "the thread's run raised JobError job 'counted' cannot run on the local"
        if done.stdout.startswith(refused):
            return
    assert done.stdout.strip() == "[('a', 8), ('b', 4)]", done.stdout + done.stderr


class _Recorder(io.StringIO):
    """A stream noting the value of CELL in the context of each write (as ipykernel 7 puts
    a notebook cell's output by a context variable)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str | None]] = []

    def write(self, text: str) -> int:
        self.seen.append((text, CELL.get(None)))
        return super().write(text)


CELL: contextvars.ContextVar[str] = contextvars.ContextVar("cell")


def test_what_a_submitted_run_prints_goes_where_it_was_submitted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A notebook showed a submitted run's bars and its stages' prints in whichever cell ran
    # later: the run's threads started with an empty context.
    out, err = _Recorder(), _Recorder()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    CELL.set("submitting")
    run = cluster_jobs.chatty_count.submit(["raw://a b", "raw://c"], mode="local", progress=True)
    CELL.set("another")
    assert sorted(run.wait(timeout=60)) == [("a", 1), ("b", 1), ("c", 1)]
    printed = [cell for text, cell in out.seen + err.seen if "[chatty] saw " in text]
    shown = [cell for text, cell in err.seen if "chatty_count" in text]
    assert printed and shown
    assert set(printed) == set(shown) == {"submitting"}


def test_a_local_run_when_no_thread_can_start_is_refused_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Python 3.12 starts no thread while the interpreter shuts down (an atexit hook): the
    # local run failed on a bare RuntimeError from inside the runner.
    def refused(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refused)
    with pytest.raises(JobError, match="cannot run on the local runner now: it needs threads") as e:
        jobs.wordcount.run(["raw://a"], mode="local", progress=False)
    assert "interpreter shutdown" in str(e.value) and "mode='inline'" in str(e.value)
    monkeypatch.undo()
    assert dict(jobs.wordcount.run(["raw://a"], mode="inline", progress=False)) == {"a": 1}


def test_a_program_that_ends_before_its_submitted_run_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = textwrap.dedent("""
        from tests import jobs

        held = jobs.sleepy.submit(["raw://a", "raw://b"], mode="local", progress=False)
        done = jobs.wordcount.submit(["raw://a b a"], mode="local", progress=False)
        print(sorted(done.wait(timeout=60)))
    """)
    done = _program(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('a', 2), ('b', 1)]"
    lines = [line for line in done.stderr.splitlines() if line.startswith("discodsl:")]
    assert len(lines) == 1, done.stderr  # the run that ended is not named
    assert lines[0].startswith("discodsl: the program ended before its local run 'sleepy@")
    assert "did, which stopped it: wait() for a run before the program ends" in lines[0]
    # Its events, from another shell, said it was killed, as by `discodsl kill` (probe EB S2).
    name = lines[0].split("'")[1]
    assert main(["events", name]) == 0
    out = capsys.readouterr().out.rstrip().splitlines()
    assert out[-2].endswith(
        "ERROR: the program that ran it ended before it did, which stopped it"
    ), out
    assert out[-1].endswith("WARN: Job killed"), out


@pytest.mark.parametrize("hooked", ["after discodsl's import", "before discodsl's import"])
def test_an_exit_hook_of_the_programs_may_wait_for_its_runs(hooked: str) -> None:
    # discodsl's own exit hook, registered at the first submit(), ran before a program's
    # registered at its start (atexit runs the last first): it stopped the run the
    # program's hook was about to wait for, which then said it "was killed (by kill(),
    # Ctrl-C or `discodsl kill`)" (probe EA F6).
    script = textwrap.dedent("""
        import atexit, sys

        pending = []

        def drain():
            for run in pending:
                try:
                    print("drained", sorted(run.wait(timeout=60)), flush=True)
                except Exception as exc:
                    print("drain failed:", type(exc).__name__, exc, flush=True)

        if sys.argv[1] == "before discodsl's import":
            atexit.register(drain)
        from tests import jobs

        if sys.argv[1] == "after discodsl's import":
            atexit.register(drain)
        seconds = {"seconds": 0.5}
        pending.append(jobs.sleepy.submit(["raw://a b"], mode="local", params=seconds))
    """)
    done = _program(script, hooked)
    assert done.returncode == 0, done.stderr
    if hooked == "after discodsl's import":
        assert done.stdout == "drained [('a', 1), ('b', 1)]\n", done.stderr
        assert "discodsl:" not in done.stderr, done.stderr
        return
    assert done.stdout.startswith("drain failed: JobDead job 'sleepy@"), done.stdout
    assert "was stopped as the program ended (discodsl's exit hook" in done.stdout, done.stdout
    assert "register that hook after importing discodsl" in done.stdout, done.stdout
    assert "killed (by kill()" not in done.stdout, done.stdout


@pytest.mark.parametrize("served", ["run", "served from the cache"])
@pytest.mark.parametrize("mode", ["local", "inline"])
def test_an_exit_hook_of_the_programs_reads_the_results_of_a_run_that_ended(
    mode: str, served: str, tmp_path: Path
) -> None:
    # The results' own finalizers ran at exit before such a hook: their files were gone,
    # "cannot open ... No such file or directory" (probe EC F3); a cached run's links too
    # (probe ED F1). They go last, whole.
    script = textwrap.dedent("""
        import atexit, sys
        from tests import jobs

        runs = []
        atexit.register(lambda: print(sorted(runs[-1].wait(timeout=60)), flush=True))
        cache = sys.argv[2] == "served from the cache"
        for _ in range(2 if cache else 1):  # the second is served from the first's entry
            options = {"mode": sys.argv[1], "progress": False, "cache": cache}
            runs.append(jobs.wordcount.submit(["raw://a b a"], **options))
            runs[-1].wait(timeout=60)
    """)
    done = _program(script, mode, served, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.stdout == "[('a', 2), ('b', 1)]\n", done.stderr
    left = [p.name for p in tmp_path.iterdir() if p.name != "runs"]  # the registry's place
    assert left == [], left  # no process directory
    cache = Path(os.environ["DISCODSL_CACHE_DIR"])
    names = [p.name for p in cache.iterdir()] if cache.exists() else []
    held = [name for name in names if name.startswith(".held-")]
    assert held == [], held  # nor the links a cached run's results held (probe EE F1)


@pytest.mark.parametrize("mode", ["local", "inline"])
def test_an_exit_hook_registered_before_discodsls_import_is_told_why_results_are_gone(
    mode: str,
) -> None:
    # It ran after discodsl's own, which removed the files: "cannot open ...: check that
    # the file exists on this node" (probe ED F7b).
    script = textwrap.dedent("""
        import atexit, sys

        runs = []

        def read():
            # .stage() gave [] (probe EH F5), record_urls() a wrong reason or gone files (EI F7)
            for what in ("results", "a stage's", "record_urls"):
                try:
                    results = runs[-1].wait(timeout=60)
                    if what == "record_urls":
                        print(results.record_urls())
                    else:
                        print(sorted(results if what == "results" else results.stage("words")))
                except Exception as exc:
                    print(type(exc).__name__, exc)

        atexit.register(read)
        from tests import jobs

        runs.append(jobs.wordcount.submit(["raw://a b a"], mode=sys.argv[1], progress=False))
        runs[-1].wait(timeout=60)
    """)
    done = _program(script, mode)
    said = done.stdout.splitlines()
    assert len(said) == 3, done.stdout + done.stderr
    for line in said:
        assert line.startswith("JobError the results of 'wordcount"), line
        assert "are gone: discodsl removed their files at the program's end, before this " in line
        assert line.endswith("register it after `import discodsl`"), line


@pytest.mark.parametrize("mode", ["local", "inline"])
def test_a_program_that_moved_its_temporary_directory_leaves_none_at_its_end(
    mode: str, tmp_path: Path
) -> None:
    # Only the directories in the temporary directory of the program's end were removed:
    # the run's, made in the one before, stayed (probe ED F2).
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    script = textwrap.dedent(f"""
        import sys, tempfile
        from tests import jobs

        tempfile.tempdir = {str(first)!r}
        kept = jobs.wordcount.run(["raw://a b a"], mode=sys.argv[1], progress=False)
        tempfile.tempdir = {str(later)!r}
        print(sorted(kept))
    """)
    done = _program(script, mode)
    assert done.stdout == "[('a', 2), ('b', 1)]\n", done.stderr
    assert os.listdir(first) == os.listdir(later) == []


def test_a_program_that_ends_at_once_after_submitting_leaves_no_directory(
    tmp_path: Path,
) -> None:
    # Its run's thread was still starting the job's zygote as the exit hook removed the
    # process directory: the zygote's launcher made a file in it after, and the directory
    # stayed (3 programs in 5).
    script = textwrap.dedent("""
        from tests import jobs

        jobs.sleepy.submit(["raw://a", "raw://b"], mode="local", progress=False)
    """)
    for attempt in range(4):
        temporary = tmp_path / str(attempt)
        temporary.mkdir()
        done = _program(script, env={**os.environ, "TMPDIR": str(temporary)})
        assert done.returncode == 0, done.stderr
        assert "which stopped it" in done.stderr
        assert sorted(os.listdir(temporary)) == [], attempt


def test_a_program_that_ends_before_its_cluster_run_says_the_job_goes_on(cluster_env: str) -> None:
    # A run chained on it, not submitted yet, was said to go on at the master, as a job
    # that did not exist (it dies with the program). The command told named no master, and
    # reached none where the program gave it as master= (probe CQ F1).
    script = textwrap.dedent(f"""
        from tests import jobs

        held = jobs.sleepy.submit(["raw://a"], master={cluster_env!r}, progress=False)
        chained = jobs.histogram.submit(held, master={cluster_env!r}, progress=False)
        print(held.jobname)
    """)
    env = {k: v for k, v in os.environ.items() if k != "DISCO_MASTER"}
    done = _program(script, env=env)
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip()
    try:
        assert (
            f"discodsl: the program ended before its cluster run {name!r} did; its job goes "
            f"on at the master (`discodsl --master {cluster_env} status {name}`)"
        ) in done.stderr
        assert (
            "discodsl: the program ended before its cluster run of job 'histogram' was "
            "submitted (it waited for its input run): it will not run"
        ) in done.stderr
        assert main(["status", name]) == 0
    finally:
        main(["kill", name])


@pytest.mark.parametrize("timeout", [float("nan"), -1, "5", True])
def test_a_wait_timeout_that_is_not_seconds_is_refused_with_the_fix(timeout: Any) -> None:
    run = jobs.wordcount.submit(["raw://a b a"], mode="inline")
    with pytest.raises(SettingsError, match=r"timeout=.*: pass the seconds to wait as a number"):
        run.wait(timeout=timeout)


def test_a_wait_with_an_infinite_timeout_waits_as_long_as_it_takes() -> None:
    run = jobs.wordcount.submit(["raw://a b a"], mode="local", progress=False)
    assert dict(run.wait(timeout=float("inf"))) == {"a": 2, "b": 1}


def test_wait_with_a_timeout_leaves_the_run_going() -> None:
    run = jobs.sleepy.submit(["raw://slow"], mode="local", progress=False)
    with pytest.raises(JobActive, match=r"still active after 0\.2"):
        run.wait(timeout=0.2)
    assert run.status == "active"
    with pytest.raises(JobActive, match="still active"):
        run.results()
    run.kill()
    with pytest.raises(JobDead, match="killed"):
        run.wait(timeout=60)
    assert run.status == "dead"


def test_kill_stops_a_long_local_run_and_its_workers() -> None:
    run = jobs.sleepy.submit(["raw://a", "raw://b", "raw://c"], mode="local", progress=False)
    eventually(lambda: started(run))
    run.kill()
    assert run.status == "dead"  # from the moment it is killed, not once it has ended
    with pytest.raises(JobDead, match="killed") as info:
        run.wait(timeout=60)
    assert info.value.jobname == run.jobname
    assert run.status == "dead"
    assert run.events()[-1][2] == "WARN: Job killed"
    with pytest.raises(JobDead):
        run.results()


@pytest.mark.parametrize("mode", ["local", "inline"])
def test_a_run_whose_status_is_ready_gives_its_results_at_once(mode: str) -> None:
    """status is what results() finds: "ready" only once they are there, even while the
    run's end is slow (its inputs released, its registry entry written, a slow disk)."""
    run = jobs.wordcount.submit(["raw://a b a"], mode=mode, progress=False)
    run.on_end(lambda _: time.sleep(0.5))  # the end's own work, made slow
    while run.status == "active":
        time.sleep(0.01)
    assert run.status == "ready"
    assert dict(run.results()) == {"a": 2, "b": 1}  # not JobActive: "still active"
    assert run.cache_key is None or isinstance(run.cache_key, str)


def test_a_killed_run_that_has_not_ended_yet_gives_its_error_not_still_active() -> None:
    run = jobs.sleepy.submit(["raw://a"], mode="local", progress=False)
    run.on_end(lambda _: time.sleep(0.5))
    eventually(lambda: started(run))
    run.kill()
    assert run.status == "dead"
    with pytest.raises(JobDead, match="killed"):
        run.results()  # dead, as status says, from the moment it is killed
    with pytest.raises(JobDead, match="killed"):
        run.wait(timeout=60)


@pytest.mark.parametrize("second", ["A", "B"])
def test_inline_runs_at_once_in_threads_share_an_env_only_if_it_agrees(
    second: str, tmp_path: Path
) -> None:
    """env= of an inline run is this process's environment while it runs: a second run in
    another thread setting a name to another value changed the first's, and the last to
    end left its value in the process. Agreeing values are shared, and the name is put back
    when the last run ends; a clash is refused before the second run's tasks start."""
    name = "DISCODSL_TEST_INLINE_ENV"
    assert name not in os.environ
    started = tmp_path / "started"
    params = {"started": str(started), "seconds": 1.0}
    first: dict[str, Any] = {}

    def run_first() -> None:
        results = jobs.napping_env.run(
            [f"raw://{name}"], mode="inline", env={name: "A"}, params=params
        )
        first["got"] = list(results)

    thread = threading.Thread(target=run_first)
    thread.start()
    eventually(started.exists)
    quick = {"started": str(tmp_path / "quick"), "seconds": 0}
    if second == "A":  # it ends after the first, and reads its env= then
        longer = {"started": str(tmp_path / "longer"), "seconds": 2.0}
        got = list(
            jobs.napping_env.run([f"raw://{name}"], mode="inline", env={name: "A"}, params=longer)
        )
        assert got == [(name, "A")]
    else:
        with pytest.raises(JobError) as info:
            jobs.napping_env.run([f"raw://{name}"], mode="inline", env={name: "B"}, params=quick)
        assert str(info.value) == (
            f"job 'napping_env' cannot run inline now: its env= sets {name}='B', but an inline "
            f"run going in this process (of job 'napping_env') has set it to 'A', and inline "
            "runs share this process's environment: run it with mode='local' (its workers "
            "have their own), or after the other"
        )
    thread.join(60)
    assert first["got"] == [(name, "A")]
    assert name not in os.environ


def test_a_signal_handler_may_read_status_and_kill_while_its_thread_is_inside_them() -> None:
    """A handler runs in the main thread between two bytecodes, maybe while that thread
    holds the run's lock (in status, wait, kill): taking it again must not deadlock."""
    run = jobs.sleepy.submit(["raw://slow"], mode="local", progress=False)
    came_back = threading.Event()

    def handler_inside() -> None:  # what the handler meets: the lock held by its own thread
        with run._resuming:
            assert run.status == "active"
            run.kill()
        came_back.set()

    threading.Thread(target=handler_inside, daemon=True).start()
    assert came_back.wait(30)
    with pytest.raises(JobDead, match="killed"):
        run.wait(timeout=60)


@contextlib.contextmanager
def _ctrl_c_after(seconds: float) -> Iterator[None]:
    """SIGINT to the main thread ``seconds`` into the block, as Ctrl-C at a terminal."""
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    timer = threading.Timer(seconds, signal.pthread_kill, args=(main_thread, signal.SIGINT))
    timer.start()
    try:
        yield
    finally:
        timer.join()


@pytest.mark.usefixtures("ctrl_c")
def test_ctrl_c_in_wait_kills_a_local_run() -> None:
    run = jobs.sleepy.submit(["raw://slow"], mode="local", progress=False)
    eventually(lambda: started(run))
    with _ctrl_c_after(0.2), pytest.raises(KeyboardInterrupt):
        run.wait(timeout=60)
    assert run.status == "dead"
    with pytest.raises(JobDead, match="killed"):
        run.results()


@pytest.mark.usefixtures("ctrl_c")
@pytest.mark.parametrize("mode", ["local", "cluster"])
def test_ctrl_c_in_the_wait_for_a_chain_reaches_the_run_it_waits_for(
    mode: str, request: pytest.FixtureRequest
) -> None:
    # Ctrl-C in the wait for the second of a chain stopped that one, not yet submitted, and
    # left the first running, though both were to be killed on Ctrl-C.
    if mode == "cluster":
        request.getfixturevalue("cluster_env")
    first = jobs.sleepy.submit(["raw://slow"], mode=mode, progress=False, kill_on_interrupt=True)
    second = jobs.histogram.submit(first, mode=mode, progress=False, kill_on_interrupt=True)
    eventually(lambda: "@" in first.jobname)
    with _ctrl_c_after(0.5), pytest.raises(KeyboardInterrupt):
        second.wait(timeout=60)
    eventually(lambda: first.status == "dead", seconds=30)
    assert second.status == "dead"


@pytest.mark.usefixtures("ctrl_c")
@pytest.mark.parametrize("waited", ["first", "second"])
def test_a_chain_ctrl_c_stopped_is_not_told_as_a_failure_nobody_asked_about(
    waited: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # The second run, failed for its input run was killed, was told as "failed, and nothing
    # asked how it ended" (probe EH F2).
    first = jobs.sleepy.submit(["raw://slow"], mode="local", progress=False)
    runs = {"first": first, "second": jobs.histogram.submit(first, mode="local", progress=False)}
    eventually(lambda: "@" in runs["first"].jobname)
    with _ctrl_c_after(0.5), pytest.raises(KeyboardInterrupt):
        runs[waited].wait(timeout=60)
    assert all(run.ended(30) for run in runs.values())
    del first
    runs.clear()
    gc.collect()
    assert "asked" not in capfd.readouterr().err


@pytest.mark.usefixtures("ctrl_c")
def test_ctrl_c_in_the_wait_for_a_chain_spares_a_run_another_chain_waits_for() -> None:
    # In a notebook, the run two reports were chained on was killed with the report whose
    # wait was interrupted, and the other report failed for it (probe CP F5).
    first = jobs.sleepy.submit(
        ["raw://slow"], mode="local", progress=False, params={"seconds": 3.0}
    )
    interrupted = jobs.histogram.submit(first, mode="local", progress=False)
    other = jobs.histogram.submit(first, mode="local", progress=False)
    eventually(lambda: "@" in first.jobname)
    with _ctrl_c_after(0.5), pytest.raises(KeyboardInterrupt):
        interrupted.wait(timeout=60)
    assert interrupted.status == "dead"
    assert first.status == "active" and other.status == "active"
    assert dict(other.wait(timeout=120)) == {1: ["slow"]}
    assert first.status == "ready"


@pytest.mark.usefixtures("ctrl_c")
def test_ctrl_c_in_the_wait_for_a_diamond_of_runs_reaches_each_once(
    cluster_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # r3 waits for r1 and for r2, which waits for r1: r1's "still runs on" notice came once
    # per way to it (probe CM F15); and r1, which only runs stopped with it wait for, is
    # reached.
    first = jobs.sleepy.submit(["raw://slow"], mode="cluster", progress=False)
    second = jobs.histogram.submit(first, mode="cluster", progress=False)
    third = jobs.histogram.submit([first, second], mode="cluster", progress=False)
    eventually(lambda: "@" in first.jobname)
    try:
        with _ctrl_c_after(0.5), pytest.raises(KeyboardInterrupt):
            third.wait(timeout=60)
        said = capsys.readouterr().err
        assert said.count(f"job {first.jobname} still runs on") == 1, said
        assert second.status == third.status == "dead"
    finally:
        first.kill()


@pytest.mark.usefixtures("ctrl_c")
def test_ctrl_c_reaches_wait_when_another_thread_takes_the_signal() -> None:
    # The kernel hands a process's SIGINT to any of its threads; the runner has several.
    # Python runs the handler in the main thread only once that thread wakes: a wait()
    # that slept on a lock until the run ended would not see Ctrl-C for as long.
    run = jobs.sleepy.submit(["raw://slow"], mode="local", progress=False)
    eventually(lambda: started(run))
    timer = threading.Timer(0.2, lambda: signal.pthread_kill(threading.get_ident(), signal.SIGINT))
    timer.start()
    begun = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run.wait()  # the job's one task sleeps 60 s
    timer.join()
    assert time.monotonic() - begun < 30
    assert run.status == "dead"


@pytest.mark.usefixtures("ctrl_c")
def test_ctrl_c_in_one_threads_wait_leaves_another_threads_wait_going(cluster_env: str) -> None:
    """On a cluster Ctrl-C stops this wait and the job runs on: another thread waiting for
    the same run goes on waiting (it got JobActive at once, its timeout far off)."""
    run = jobs.sleepy.submit(["raw://a"], mode="cluster", params={"seconds": 2})
    got: dict[str, Any] = {}
    other = threading.Thread(target=lambda: got.update(dict(run.wait(timeout=60))))
    other.start()
    with _ctrl_c_after(0.3), pytest.raises(KeyboardInterrupt):
        run.wait(timeout=60)
    other.join(timeout=60)
    assert got == {"a": 1}


@pytest.fixture
def alarm() -> Iterator[Callable[[Callable[[], object]], None]]:
    """Install a SIGALRM handler doing ``action`` and set it off in 0.2 s; undone after."""
    previous = signal.getsignal(signal.SIGALRM)

    def arm(action: Callable[[], object]) -> None:
        signal.signal(signal.SIGALRM, lambda signum, frame: action())
        signal.setitimer(signal.ITIMER_REAL, 0.2)

    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_the_programs_signal_handler_that_exits_ends_an_inline_run_as_it_ends_the_program(
    alarm: Callable[[Callable[[], object]], None],
) -> None:
    """Inline, a stage runs in the program's thread: sys.exit in the program's own handler
    (SIGTERM's, say) is the program's, not the stage's (it became a StageError)."""
    alarm(lambda: sys.exit(3))
    with pytest.raises(SystemExit) as caught:
        jobs.sleepy.run(["raw://a"], mode="inline", params={"seconds": 5.0})
    assert caught.value.code == 3


def test_the_programs_signal_handler_may_run_a_job_during_an_inline_stage(
    alarm: Callable[[Callable[[], object]], None],
) -> None:
    got: list[Any] = []
    alarm(lambda: got.append(dict(jobs.wordcount.run(["raw://b b"], mode="inline"))))
    results = jobs.sleepy.run(["raw://a"], mode="inline", params={"seconds": 1.0})
    assert dict(results) == {"a": 1} and got == [{"b": 2}]
    with pytest.raises(JobError, match="a stage cannot run a job"):  # its stage still may not
        semantics_jobs.job_in_a_stage.run(["raw://a"], mode="inline")


def signalled_again_in_kill(monkeypatch: pytest.MonkeyPatch, number: int) -> list[Run]:
    """Run.kill sends signal ``number`` first, as a second Ctrl-C or SIGTERM that comes while
    a run is being stopped; the runs it stops, listed."""
    stopped: list[Run] = []
    kill = Run.kill

    def signalled_first(run: Run) -> None:
        stopped.append(run)
        signal.raise_signal(number)
        kill(run)

    monkeypatch.setattr(Run, "kill", signalled_first)
    return stopped


def test_a_second_signal_while_a_run_stops_waits_for_the_stop(
    alarm: Callable[[Callable[[], object]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The program's handler (SIGTERM's ``sys.exit``) raised again as run() stopped its run
    after its first: the stop was cut short, the run went on, and the program's end said
    "wait() for a run before the program ends" (probe CK F13). The second is held until
    the run is stopped, then handled."""
    stopped = signalled_again_in_kill(monkeypatch, signal.SIGALRM)
    alarm(lambda: sys.exit(3))
    with pytest.raises(SystemExit) as caught:
        jobs.sleepy.run(["raw://a"], mode="local", params={"seconds": 5.0})
    assert caught.value.code == 3
    assert [run.ended() for run in stopped] == [True]


@pytest.mark.usefixtures("ctrl_c")
def test_ctrl_c_again_while_a_run_stops_is_the_same_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second Ctrl-C as wait() stopped its run raised a KeyboardInterrupt from inside the
    stop (a traceback of ours, "during handling of the above exception"): the stop ends,
    and the one KeyboardInterrupt says it."""
    stopped = signalled_again_in_kill(monkeypatch, signal.SIGINT)
    run = jobs.sleepy.submit(["raw://slow"], mode="local", progress=False)
    with _ctrl_c_after(0.3), pytest.raises(KeyboardInterrupt) as caught:
        run.wait(timeout=60)
    assert caught.value.__context__ is None
    assert stopped == [run] and run.ended() and run.status == "dead"


def test_a_failed_run_raises_what_run_raises(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("boom\n")
    run = jobs.failing.submit([bad], mode="local", progress=False)
    with pytest.raises(TaskFailed, match="cannot handle 'boom'") as first:
        run.wait(timeout=120)
    with pytest.raises(TaskFailed) as again:
        run.results()
    assert again.value is first.value and run.status == "dead"
    assert any(m.startswith("FATAL: [fragile:") for _, _, m in run.events())


@pytest.mark.parametrize("where", ["inline", "local"])
def test_a_failed_run_nobody_asked_about_says_so_when_its_handle_goes(
    tmp_path: Path, where: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """A run whose handle the program dropped failed without a word (probe EA S1), as an
    asyncio task's exception nobody retrieved would not."""
    bad = tmp_path / "bad.txt"
    bad.write_text("boom\n")
    jobs.failing.submit([bad], mode=where, progress=False)  # dropped at once

    err: list[str] = []

    def told() -> bool:
        gc.collect()
        err.append(capfd.readouterr().err)
        return "asked" in "".join(err)

    eventually(told, 120)
    said = "".join(line for line in "".join(err).splitlines(True) if "asked" in line)
    assert said.startswith(f"discodsl: the {where} run 'failing") and said.count("\n") == 1, said
    error = "ValueError" if where == "inline" else "TaskFailed"  # what wait() would raise
    told = "did not end ready, and nothing asked how it ended (its handle was dropped)"
    assert f"{told}: {error}: " in said
    assert "cannot handle 'boom'" in said and "wait() for a run" in said, said


def test_a_failed_run_held_to_the_programs_end_that_nobody_asked_about_says_so(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("boom\n")
    script = textwrap.dedent(f"""
        from tests import jobs

        held = jobs.failing.submit([{str(bad)!r}], mode="local", progress=False)
        seen = jobs.failing.submit([{str(bad)!r}], mode="local", progress=False)
        assert held.ended(60) and seen.ended(60)
        print(seen.status)
    """)
    done = _program(script)
    assert done.returncode == 0 and done.stdout == "dead\n", done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("discodsl:")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("discodsl: the local run 'failing@")
    told = "did not end ready, and nothing asked how it ended (the program ended): TaskFailed: "
    assert told in lines[0]


def test_cluster_runs_nobody_asked_about_are_told_as_local_ones_are(
    cluster_env: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # A chain whose first run the program kill()ed was told (the master's JobDead is no
    # kill's), and a run whose timeout= passed was not (probe EI F5, F6).
    from discodsl.client import Master

    first = jobs.sleepy.submit(["raw://slow"], mode="cluster", progress=False)
    chained = jobs.histogram.submit(first, mode="cluster", progress=False)
    eventually(lambda run=first: "@" in run.jobname)  # type: ignore[misc]
    first.kill()
    assert chained.ended(60)
    late = jobs.sleepy.submit(["raw://slow"], mode="cluster", progress=False, timeout=0.5)
    assert late.ended(60)
    name = late.jobname
    with Master(cluster_env) as master:
        master.kill(name)  # its job ran on at the master
    del first, chained, late
    gc.collect()
    said = capfd.readouterr().err
    assert "histogram" not in said, said
    assert f"the cluster run {name!r} did not end ready, and nothing asked how it" in said
    assert "JobActive: " in said


def test_a_failed_run_whose_failure_was_seen_or_that_was_killed_says_nothing_more(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("boom\n")
    seen = jobs.failing.submit([bad], mode="local", progress=False)
    assert seen.ended(120) and seen.status == "dead"
    chained = jobs.failing.submit([bad], mode="local", progress=False)
    after = jobs.histogram.submit(chained, mode="local", progress=False)
    with pytest.raises(InputRunFailed):
        after.wait(timeout=120)
    killed = jobs.sleepy.submit(["raw://a"], mode="local", progress=False)
    killed.kill()
    assert killed.ended(120)
    del seen, chained, after, killed
    gc.collect()
    assert "asked" not in capfd.readouterr().err


# -- chains ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["inline", "local"])
def test_a_chain_fails_naming_the_run_it_waited_for(tmp_path: Path, where: str) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("boom\n")
    first = jobs.failing.submit([bad], mode=where, progress=False)
    second = jobs.histogram.submit(first, mode=where, progress=False)
    third = jobs.distinct_words.submit([second], mode=where, progress=False)
    with pytest.raises(
        InputRunFailed, match=r"input run .*failing.* failed: .*cannot handle 'boom'"
    ) as info:
        third.wait(timeout=120)
    assert "histogram" in str(info.value)
    assert second.status == third.status == "dead"
    assert isinstance(info.value.__cause__, InputRunFailed)
    assert "cannot handle 'boom'" in str(info.value.__cause__.__cause__)  # the task's error
    [said] = [m for _, _, m in third.events() if "did not run" in m]  # why, in its events
    assert said.endswith(str(info.value).split(": ", 1)[1])


@pytest.mark.parametrize("mode", ["local", "inline"])
def test_a_chained_runs_paths_are_those_of_its_submit_not_of_its_inputs_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    # Relative paths among a chained run's inputs were resolved once its input run ended,
    # in the directory the program had moved to since: another file read, silently; and a
    # path matching nothing was refused only then (probe EA F1).
    import shutil

    for where, words in (("d1", "from-d1"), ("d2", "from-d2 from-d2")):
        (tmp_path / where).mkdir()
        with jobs.wordcount.run([f"raw://{words}"], mode="inline", partitions=1) as made:
            (file,) = [urls.file_path(url) for [url] in made.record_urls()]
            shutil.copy(str(file), tmp_path / where / "counts")
    monkeypatch.chdir(tmp_path / "d1")
    first = jobs.sleepy.submit(["raw://x y"], mode="local", progress=False, params={"seconds": 1})
    with pytest.raises(JobError, match="input 'nothing/\\*' matches no file"):
        jobs.histogram.submit([first, "nothing/*"], mode=mode, progress=False)
    for wrong in ({"a": 1}, b"counts"):  # refused at once too (probe EB F2)
        with pytest.raises(JobError, match="is not a path, a URL"):
            jobs.histogram.submit([first, wrong], mode=mode, progress=False)
    with pytest.raises(SettingsError, match="tag:// inputs need a Disco master"):  # ED F6
        jobs.histogram.submit([first, "tag://data:some"], mode=mode, progress=False)
    closed = jobs.wordcount.run(["raw://x"], mode="inline")
    closed.close()
    with pytest.raises(JobError, match="closed"):  # EE F2, as an unchained run refuses them
        jobs.histogram.submit([first, closed], mode=mode, progress=False)
    if mode == "local":
        python = {"DISCODSL_PYTHON": "/nonexistent/python"}
        with pytest.raises(SettingsError, match="in the job's env=, names no program"):
            jobs.histogram.submit([first, "counts"], mode=mode, progress=False, env=python)
    second = jobs.histogram.submit([first, "counts"], mode=mode, progress=False)
    monkeypatch.chdir(tmp_path / "d2")
    assert first.status == ("active" if mode == "local" else "ready")  # inline waits in submit
    assert dict(second.wait(timeout=120)) == {1: ["from-d1", "x", "y"]}


def test_a_chain_waits_while_its_first_run_is_active() -> None:
    first = jobs.sleepy.submit(["raw://x y"], mode="local", progress=False, params={"seconds": 0.5})
    second = jobs.histogram.submit(first, mode="local", progress=False)
    assert second.status == "active"
    assert dict(second.wait(timeout=120)) == {1: ["x", "y"]}
    assert first.status == "ready"


@pytest.mark.parametrize("where", ["local", "cluster"])
def test_a_chained_runs_timeout_bounds_its_wait_for_its_input(
    where: str, request: pytest.FixtureRequest
) -> None:
    # timeout= bounds a run from its submit(): one waiting for a run that never ends
    # waited with it for ever (probe DA F2).
    if where == "cluster":
        request.getfixturevalue("cluster_env")
    first = jobs.sleepy.submit(["raw://x"], mode="local", progress=False)
    try:
        second = jobs.histogram.submit(first, mode=where, progress=False, timeout=1)
        with pytest.raises(
            InputRunFailed,
            match=r"did not run within timeout=1 seconds: its "
            r"input run 'sleepy@.*' \(local\) was still running",
        ):
            second.wait(timeout=60)
        assert second.status == "dead" and first.status == "active"
    finally:
        first.kill()


def test_a_chained_run_whose_timeout_passed_as_its_input_ended_is_not_submitted() -> None:
    # It was submitted with no time left (a cluster's job then ran on, nothing waiting for
    # it), or failed blaming its own stage (probe DD F6).
    ended = jobs.wordcount.submit(["raw://a"], mode="inline")
    assert ended.status == "ready"
    chained = Run("histogram", "local", ended)
    with pytest.raises(InputRunFailed, match=r"timeout=2 seconds: its input run .* ended as it"):
        chained.await_inputs([ended], 2, since=time.monotonic() - 3)
    chained.await_inputs([ended], 2, since=time.monotonic())  # time left: it goes on


def test_a_chained_runs_timeout_counts_from_its_submit() -> None:
    # What its wait for its input took is taken from its timeout=, as a cluster run's
    # submission is: it bounds the run as its caller sees it.
    first = jobs.sleepy.submit(["raw://x"], mode="local", progress=False, params={"seconds": 4})
    started = time.monotonic()
    second = jobs.sleepy.submit(first, mode="local", progress=False, timeout=6)
    with pytest.raises(TaskFailed, match="ran past timeout=6 seconds"):
        second.wait(timeout=60)
    assert first.status == "ready"
    assert time.monotonic() - started < 9.5  # from its own start, not before 10 s


def test_killing_a_chained_run_while_it_waits_for_its_input() -> None:
    first = jobs.sleepy.submit(["raw://x"], mode="local", progress=False)
    second = jobs.histogram.submit(first, mode="local", progress=False)
    second.kill()
    with pytest.raises(JobDead, match="killed"):
        second.wait(timeout=60)
    assert first.status == "active"
    first.kill()
    with pytest.raises(JobDead):
        first.wait(timeout=60)


@pytest.mark.parametrize("what", ["results", "a stage's results"])
def test_a_run_holds_the_results_it_reads_until_it_ends(what: str) -> None:
    # Nothing but the run holds the first run's results: dropped, they would remove their
    # files before the second run's tasks read them.
    def upstream() -> Any:
        results = jobs.wordcount.run(["raw://x y x"], mode="local", progress=False)
        return results if what == "results" else results.stage("total")

    run = jobs.histogram.submit(upstream(), mode="local", progress=False)
    gc.collect()
    assert dict(run.wait(timeout=120)) == {1: ["y"], 2: ["x"]}


@pytest.mark.parametrize("what", ["results", "stage"])
def test_results_closed_after_a_run_on_them_was_submitted_keep_their_files_till_it_ends(
    what: str,
) -> None:
    """A run holds its inputs until it ends: results closed just after it was submitted
    (a ``with`` block ending) keep their files while its tasks read them, and lose them
    once it has ended. Removed at once, its tasks failed on missing files, and were
    retried for it."""
    upstream = jobs.wordcount.run(["raw://x y x"], mode="local", progress=False)
    files = [urls.file_path(url) for replicas in upstream.record_urls() for url in replicas]
    given = upstream if what == "results" else upstream.stage("total")
    with upstream:
        run = jobs.histogram.submit(given, mode="local", progress=False)
    assert all(path and os.path.exists(path) for path in files)
    assert dict(run.wait(timeout=120)) == {1: ["y"], 2: ["x"]}
    assert not any(os.path.exists(path) for path in files if path)
    with pytest.raises(JobError, match="closed"):
        list(upstream)


@pytest.mark.parametrize("given", ["the run", "a generator of its results"])
def test_the_results_of_an_input_run_closed_while_a_chained_run_reads_them_keep_their_files(
    given: str,
) -> None:
    """The README's chain (``histogram.submit(inputs=counted)``) with the first run's
    results closed as soon as it is ready (``with counted.wait() as results:``): the chained
    run holds them as it holds results given as such. It failed on missing files, as
    results given in a generator (read before they were looked for) did."""
    first = jobs.wordcount.submit(["raw://x y x"], mode="local", progress=False)
    inputs: Any = first if given == "the run" else (item for item in [first.wait()])
    run = jobs.histogram.submit(inputs, mode="local", progress=False)
    with first.wait() as upstream:
        files = [urls.file_path(url) for replicas in upstream.record_urls() for url in replicas]
    assert dict(run.wait(timeout=120)) == {1: ["y"], 2: ["x"]}
    assert not any(os.path.exists(path) for path in files if path)  # let go once it ended


@pytest.mark.parametrize("given", ["results", "a run"])
def test_results_closed_while_a_chained_run_waits_for_its_other_inputs_are_read_whole(
    given: str,
) -> None:
    """A chained run reads its inputs' record files once every run among them has ended:
    results it held, closed meanwhile, kept their files but refused their URLs ("were
    closed"), and the run failed."""
    slow = jobs.sleepy.submit(["raw://z"], mode="local", progress=False, params={"seconds": 1})
    first = jobs.wordcount.submit(["raw://x y x"], mode="local", progress=False)
    results = first.wait(timeout=120)
    run = jobs.histogram.submit(
        [slow, results if given == "results" else first], mode="local", progress=False
    )
    results.close()
    assert dict(run.wait(timeout=120)) == {1: ["y", "z"], 2: ["x"]}
    with pytest.raises(JobError, match="were closed"):
        list(results)  # closed to their user all the same


def test_a_chained_run_killed_before_its_input_run_ends_holds_nothing_of_it() -> None:
    first = jobs.sleepy.submit(["raw://x"], mode="local", progress=False, params={"seconds": 1})
    second = jobs.histogram.submit(first, mode="local", progress=False)
    second.kill()
    with pytest.raises(JobDead):
        second.wait(timeout=60)
    results = first.wait(timeout=120)
    files = [urls.file_path(url) for replicas in results.record_urls() for url in replicas]
    results.close()
    assert not any(os.path.exists(path) for path in files if path)


def test_results_a_run_read_and_nobody_closed_keep_their_files_after_it() -> None:
    """A run letting go of its inputs removes only results that were closed."""
    upstream = jobs.wordcount.run(["raw://x y x"], mode="local", progress=False)
    run = jobs.histogram.submit(upstream, mode="local", progress=False)
    assert dict(run.wait(timeout=120)) == {1: ["y"], 2: ["x"]}
    assert sorted(upstream) == [("x", 2), ("y", 1)]


def test_letting_go_twice_lets_go_once() -> None:
    """hold()'s release called twice (an error path, then a finally) dropped another
    holder's hold: closed results lost their files while a run still read them."""
    upstream = jobs.wordcount.run(["raw://x y x"], mode="local", progress=False)
    files = [urls.file_path(url) for replicas in upstream.record_urls() for url in replicas]
    release_a, release_b = upstream.hold(), upstream.hold()
    upstream.close()
    release_a()
    release_a()
    assert all(path and os.path.exists(path) for path in files)  # b still holds them
    release_b()
    assert not any(os.path.exists(path) for path in files if path)


def test_a_stages_results_say_when_their_run_was_closed() -> None:
    """They gave a DataError naming an internal file that could not be opened."""
    results = jobs.wordcount.run(["raw://x y x"], mode="local", progress=False)
    stage = results.stage("total")
    results.close()
    with pytest.raises(JobError, match="were closed, which removed their files"):
        list(stage)


def test_a_run_and_its_results_refuse_to_be_pickled_or_copied_saying_why() -> None:
    """A run raised pickle's bare "cannot pickle '_thread.lock' object"; copy.copy of
    results said they could not be *pickled*."""
    import copy

    run = jobs.wordcount.submit(["raw://x y x"], mode="inline", progress=False)
    with pytest.raises(TypeError, match=r"the run .* cannot be pickled: .*list\(run.wait\(\)\)"):
        pickle.dumps(run)
    results = run.wait()
    for copied in (copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match=r"cannot be copied: .*iterate them twice"):
            copied(results)


def test_results_refuse_to_be_pickled_saying_what_to_pass_instead() -> None:
    results = jobs.wordcount.run(["raw://x y x"], mode="inline", progress=False)
    with pytest.raises(TypeError, match=r"cannot be pickled: they stand for files .* list"):
        pickle.dumps(results)
    assert sorted(pickle.loads(pickle.dumps(list(results)))) == [("x", 2), ("y", 1)]


def test_cluster_results_refuse_to_be_pickled_saying_their_files_stay_on_the_master(
    cluster_env: str,
) -> None:
    """They said they stood for files this process removes, which a master's are not."""
    results = jobs.wordcount.run(["raw://x y x"], progress=False)
    with pytest.raises(TypeError) as info:
        pickle.dumps(results)
    message = str(info.value)
    assert "stay there until the job is purged" in message and "removes" not in message
    # Naming the master, which a machine with no DISCO_MASTER set would not ask.
    assert f"Results.of_job({results.jobname!r}, master={cluster_env!r})" in message
    assert "results.listed_urls() (inputs for a job on that cluster)" in message
    assert f"`discodsl --master {cluster_env} results {results.jobname}`" in message


def test_closed_cluster_results_say_their_files_stay_on_the_master(cluster_env: str) -> None:
    """They said close() removed their files, and to run the job again."""
    results = jobs.wordcount.run(["raw://x y x"], progress=False)
    results.close()
    with pytest.raises(JobError, match=r"were closed: .*stay on its master until it is purged"):
        list(results)
    # The command to print them names the master, as every other: it said `--master URL`.
    with pytest.raises(JobError) as caught:
        list(results)
    assert f"`discodsl --master {cluster_env} results {results.jobname}`" in str(caught.value)


@pytest.mark.parametrize("mode", ["inline", "local"])  # a cluster's files are its master's
def test_results_closed_while_being_read_say_so(mode: str) -> None:
    results = jobs.wordcount.run(["raw://x y x", "raw://z w"], mode=mode, progress=False)
    assert len(results.urls) > 1
    reading = iter(results)
    next(reading)
    results.close()
    with pytest.raises(JobError, match="were closed, which removed their files"):
        list(reading)


@pytest.mark.parametrize("mode", ["inline", "local"])  # a cluster's files are its master's
def test_record_urls_of_results_closed_since_are_refused_saying_why(mode: str) -> None:
    dropped = jobs.wordcount.run(["raw://x y x"], mode=mode, progress=False)
    urls = dropped.record_urls()
    dropped.close()  # as the garbage collector does to results no one holds
    with pytest.raises(JobError, match="closed or garbage-collected, which removed it: keep") as e:
        jobs.histogram.submit(urls, mode=mode, progress=False)
    assert repr(urls[0][0]) in str(e.value)  # whole: a path cut short names another file
    kept = jobs.wordcount.run(["raw://x y x"], mode=mode, progress=False)
    again = jobs.histogram.run(kept.record_urls(), mode=mode, progress=False)
    assert dict(again) == {1: ["y"], 2: ["x"]}


def test_a_local_runs_kill_watch_does_not_keep_the_run_or_its_results_alive() -> None:
    # The run's kill watch held the run, and so its results, until its next poll: dropped
    # results were removed a moment later, in the middle of the next run reading them (a
    # run in five failed its tasks on a missing file, not on the documented refusal).
    run = jobs.sleepy.submit(["raw://x"], mode="local", progress=False, params={"seconds": 1})
    name = f"discodsl kill watch {run.jobname}"
    watch = next(thread for thread in threading.enumerate() if thread.name == name)
    frame = sys._current_frames().get(watch.ident or 0)
    held = [*getattr(watch, "_args", ()), *getattr(watch, "_kwargs", {}).values()]
    while frame is not None:
        held += frame.f_locals.values()
        frame = frame.f_back
    assert not any(value is run for value in held)
    for _ in range(5):
        dropped = jobs.wordcount.run(["raw://x y x"], mode="local", progress=False)
        files = [urls.file_path(url) for replicas in dropped.record_urls() for url in replicas]
        assert files and all(path and os.path.exists(path) for path in files)
        alive = weakref.ref(dropped)
        del dropped
        assert alive() is None
        assert not any(os.path.exists(path) for path in files if path)
    assert list(run.wait(timeout=60)) == [("x", 1)]


def test_indexes_of_local_results_closed_since_are_refused_saying_why() -> None:
    dropped = jobs.wordcount.run(["raw://x y x"], mode="local", progress=False)
    indexes = [list(replicas) for replicas in dropped.urls]  # dir:// URLs, as Disco gives
    assert indexes[0][0].startswith("dir://discodsl-local/")
    assert dict(jobs.histogram.run(indexes, mode="local", progress=False)) == {
        1: ["y"],
        2: ["x"],
    }
    dropped.close()
    for mode in ("local", "inline"):
        with pytest.raises(JobError, match="closed or garbage-collected, which removed it") as e:
            jobs.histogram.submit(indexes, mode=mode, progress=False)
        assert "or the run is another process's (a local run's files are read only" in str(e.value)


@pytest.mark.parametrize("mode", ["local", "inline"])
def test_a_run_whose_results_were_closed_given_as_an_input_says_so(mode: str) -> None:
    # The Run (the README's chain form) after its results were closed: a bare "No such
    # file" DataError, where the closed Results given said what had happened.
    run = jobs.wordcount.submit(["raw://x y x"], mode=mode, progress=False)
    run.wait().close()
    with pytest.raises(JobError, match="were closed, which removed their files"):
        jobs.histogram.run(run, mode=mode, progress=False)


def test_a_chained_run_ships_its_code_and_globals_as_they_were_at_submit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = jobs.sleepy.submit(["raw://x"], mode="local", progress=False, params={"seconds": 0.5})
    second = jobs.suffix_job.submit(first, mode="local", progress=False)
    monkeypatch.setattr(jobs, "SUFFIX", "B")  # as a later notebook cell would
    assert list(second.wait(timeout=120)) == [("xA", 1)]
    third = jobs.suffix_job.submit(first, mode="local", progress=False)
    assert list(third.wait(timeout=120)) == [("xB", 1)]


# -- side by side ---------------------------------------------------------------------


def test_local_runs_in_threads_keep_their_own_results_and_counters() -> None:
    outcomes: dict[int, Any] = {}

    def one(index: int) -> None:
        word = "pqrs"[index - 1]
        inputs = [f"raw://{word} {word} {'1 ' * index}x"]
        results = jobs.top_words.run(inputs, mode="local", progress=False)
        outcomes[index] = (sorted(results), results.counters)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert {i: o for i, o in outcomes.items()} == {
        i: ([(1, f"{'pqrs'[i - 1]}=2"), (2, "x=1")], {"skipped": i}) for i in range(1, 5)
    }


def test_several_runs_submitted_from_one_thread() -> None:
    runs = [
        jobs.wordcount.submit([f"raw://{w} {w} z"], mode="local", progress=False)
        for w in ("p", "q", "r")
    ]
    names = {run.jobname for run in runs}
    assert len(names) == 3
    for run, word in reversed(list(zip(runs, ("p", "q", "r"), strict=True))):
        assert dict(run.wait(timeout=120)) == {word: 2, "z": 1}


# -- the local run registry and the command line ---------------------------------------


def entry(runs_dir: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((runs_dir / name / "run.json").read_text())
    return data


def test_a_local_run_is_registered_with_its_status_and_events(runs_dir: Path) -> None:
    results = jobs.wordcount.run(["raw://a b a"], mode="local", progress=False)
    name = results.jobname
    facts = entry(runs_dir, name)
    assert facts["status"] == "ready" and facts["pid"] == os.getpid()
    lines = (runs_dir / name / "events").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert events[0][1:] == ["master", "New job initialized!"]
    assert events[-1][2].startswith("READY: Job done in ")
    assert all(len(e) == 3 and all(isinstance(f, str) for f in e) for e in events)
    assert any(e[2] == "Stage words scheduled with 1 tasks" for e in events), events
    # as a Disco master words a task's start: "STAGE:ID assigned to HOST", before it is done
    assigned = [i for i, e in enumerate(events) if re.fullmatch(r"words:\d+ assigned to \S+", e[2])]
    done = [i for i, e in enumerate(events) if e[2].startswith("DONE: [words:")]
    assert len(assigned) == len(done) == 1 and assigned[0] < done[0], events


class _FillingUp(io.StringIO):
    """An events file on a disk that fills after ``room`` writes."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def flush(self) -> None:
        self.room -= 1
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("room", [0, 3])
def test_a_registry_whose_disk_fills_costs_the_run_only_its_events(
    room: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The run went on in its thread and never ended: wait() hung for good.
    create = registry._Entry.create

    def filling(*args: Any) -> Any:
        made = create(*args)
        made._events.close()
        made._events = _FillingUp(room)
        return made

    monkeypatch.setattr(registry._Entry, "create", filling)
    inputs = [f"raw://w{i} x" for i in range(6)]
    run = jobs.wordcount.submit(inputs, mode="local", progress=False)
    assert sorted(run.wait(timeout=60)) == sorted([*((f"w{i}", 1) for i in range(6)), ("x", 6)])
    assert any("No space left on device" in r.getMessage() for r in caplog.records)
    assert any(m.startswith("READY: Job done") for _, _, m in run.events())  # kept in memory


def test_a_runs_end_that_cannot_be_written_is_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Other shells then take the run for dead once its process ends: it went unsaid.
    write = registry._write_json
    writes: list[Path] = []

    def full_after_the_first(path: Path, facts: dict[str, Any]) -> None:
        writes.append(path)
        if len(writes) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(path, facts)

    monkeypatch.setattr(registry, "_write_json", full_after_the_first)
    assert sorted(jobs.wordcount.run(["raw://a"], mode="local", progress=False)) == [("a", 1)]
    assert any(
        "the end (ready) of local run" in r.getMessage() and "No space left" in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_failing_end_callback_does_not_keep_wait_from_returning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def failing(entry: Any, run: Run) -> None:
        raise RuntimeError("the registry's end failed")

    monkeypatch.setattr(registry._Entry, "finish", failing)  # a callback of every local run
    raised: list[BaseException | None] = []
    seen = threading.Event()

    def hook(args: Any) -> None:  # the run's thread raises it, after wait() has its outcome
        raised.append(args.exc_value)
        seen.set()

    monkeypatch.setattr(threading, "excepthook", hook)
    run = jobs.wordcount.submit(["raw://a"], mode="local", progress=False)
    assert sorted(run.wait(timeout=60)) == [("a", 1)]
    assert run.status == "ready"
    assert seen.wait(30) and isinstance(raised[0], RuntimeError)


def test_the_registry_records_orphans_dead_and_removes_old_runs(runs_dir: Path) -> None:
    dead_pid = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    now = time.time()
    rows = {
        "orphan@1": {"status": "active", "pid": int(dead_pid.stdout), "started": now},
        "old@1": {"status": "ready", "pid": os.getpid(), "started": now - 3e5, "ended": now - 3e5},
        "recent@1": {"status": "ready", "pid": int(dead_pid.stdout), "started": now, "ended": now},
        "mine@1": {"status": "active", "pid": os.getpid(), "started": now},
    }
    for name, facts in rows.items():
        (runs_dir / name).mkdir(parents=True)
        facts = {"name": name, "job": name.split("@")[0], "host": registry.HOST, **facts}
        (runs_dir / name / "run.json").write_text(json.dumps(facts))
    registry.clean(runs_dir)
    assert sorted(p.name for p in runs_dir.iterdir()) == ["mine@1", "orphan@1", "recent@1"]
    orphan = json.loads((runs_dir / "orphan@1" / "run.json").read_text())
    assert orphan["status"] == "dead" and "ended before it did" in orphan["reason"]


def test_the_registry_leaves_active_runs_of_another_pid_namespace_as_they_are(
    runs_dir: Path,
) -> None:
    """Containers on one host name sharing the registry: a live run of another container,
    its pid no process here, was recorded dead ("WARN: Job killed" in its events) by any
    `discodsl jobs` here, and `discodsl wait` on it failed at once."""
    namespace = places.pid_namespace()
    assert namespace is not None
    now = time.time()
    for name, theirs in (("theirs@1", namespace + 1), ("ours@1", namespace)):
        facts = {"name": name, "job": name.split("@")[0], "host": registry.HOST, "pid": 4194304}
        facts.update({"status": "active", "started": now, "pid_namespace": theirs})
        (runs_dir / name).mkdir(parents=True)
        (runs_dir / name / "run.json").write_text(json.dumps(facts))
    registry.clean(runs_dir)
    statuses = {
        p.name: json.loads((p / "run.json").read_text())["status"] for p in runs_dir.iterdir()
    }
    assert statuses == {"theirs@1": "active", "ours@1": "dead"}


@pytest.mark.parametrize("gone", [False, True])
def test_an_active_run_of_a_container_whose_namespace_is_gone_is_recorded_dead(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch, gone: bool
) -> None:
    """A container killed with its run: from the host, which sees every process, a
    namespace with none left is gone, and so is its run (it stayed active for good)."""
    ours = owners.pid_namespace()
    assert ours is not None
    monkeypatch.setattr(owners, "_namespaces", lambda: {ours} if gone else {ours, ours + 1})
    facts = {"name": "theirs@1", "job": "theirs", "host": registry.HOST, "pid": 4194304}
    facts.update({"status": "active", "started": time.time(), "pid_namespace": ours + 1})
    (runs_dir / "theirs@1").mkdir(parents=True)
    (runs_dir / "theirs@1" / "run.json").write_text(json.dumps(facts))
    registry.clean(runs_dir)
    status = json.loads((runs_dir / "theirs@1" / "run.json").read_text())["status"]
    assert status == ("dead" if gone else "active")


def test_which_pid_namespaces_have_processes_is_known_only_when_all_can_be_read() -> None:
    found = owners._look_at_namespaces()
    assert found is None or owners.pid_namespace() in found
    if owners.pid_namespace() != owners.INITIAL_NAMESPACE or found is None:
        assert not owners.namespace_gone(12345)  # cannot be told: taken as not gone


def test_a_local_runs_entry_names_its_pid_namespace(runs_dir: Path) -> None:
    results = jobs.wordcount.run(["raw://a"], mode="local", progress=False)
    assert entry(runs_dir, results.jobname)["pid_namespace"] == places.pid_namespace()


def test_the_registry_removes_only_its_own_entries_that_lost_their_run_json(
    runs_dir: Path,
) -> None:
    # With DISCODSL_RUNS_DIR=. in a project, every local run removed src/, docs/, data/.
    old = time.time() - 2 * registry.YOUNG
    for name, files in {
        "lost@1": ["events", "kill", ".run-x.json"],  # an entry whose run.json went
        "lost@2": [],
        "young@1": ["events"],  # its writer may be making it
        "src": ["main.py"],
        "data@2026": ["in.txt"],  # named as a run is, holding what no entry holds
        "notes": [],
    }.items():
        (runs_dir / name).mkdir(parents=True)
        for file in files:
            (runs_dir / name / file).write_text("x")
        if name != "young@1":
            os.utime(runs_dir / name, (old, old))
    assert registry.list_runs(runs_dir) == []
    registry.clean(runs_dir)
    assert sorted(p.name for p in runs_dir.iterdir()) == ["data@2026", "notes", "src", "young@1"]
    assert (runs_dir / "src" / "main.py").read_text() == "x"


def test_an_entry_whose_times_are_not_numbers_is_damaged_not_a_traceback(
    runs_dir: Path,
) -> None:
    # `discodsl jobs` and `status` ended on a raw ValueError, hiding every other run.
    for name, change in {
        "when@1": {"ended": "x"},
        "who@1": {"pid": "x", "status": "active"},
    }.items():
        (runs_dir / name).mkdir(parents=True)
        facts = {"name": name, "job": "j", "host": registry.HOST, "status": "ready"}
        facts.update({"pid": os.getpid(), "started": time.time(), "ended": time.time()})
        (runs_dir / name / "run.json").write_text(json.dumps({**facts, **change}))
    registry.clean(runs_dir)
    assert registry.list_runs(runs_dir) == []
    with pytest.raises(JobError, match=r"the entry of local run 'when@1' is damaged"):
        registry.find("when@1", runs_dir)


def test_a_damaged_registry_entry_is_named_not_a_traceback(runs_dir: Path) -> None:
    """A byte of an events file gone bad made `discodsl status` and `events` fail with a
    UnicodeDecodeError; a damaged run.json made the run vanish without a word."""
    name = "damaged@1"
    (runs_dir / name).mkdir(parents=True)
    facts = {"name": name, "job": "damaged", "host": registry.HOST, "status": "ready"}
    facts.update({"pid": os.getpid(), "started": time.time(), "ended": time.time()})
    (runs_dir / name / "run.json").write_text(json.dumps(facts))
    good = json.dumps(["2026/12/06 00:00:00", "vm", "Job started"])
    (runs_dir / name / "events").write_bytes(good.encode() + b"\n\xff\n[1, 2]\n")
    events, _ = registry.find(name, runs_dir).read_events()
    assert events[0] == ("2026/12/06 00:00:00", "vm", "Job started")
    assert [message.split(" was skipped")[0] for _, _, message in events[1:]] == [
        f"discodsl: a damaged line of {runs_dir / name / 'events'}"
    ] * 2
    (runs_dir / name / "run.json").write_text("{garbage")
    with pytest.raises(JobError, match=r"the entry of local run 'damaged@1' is damaged \("):
        registry.find(name, runs_dir)


def read_line(process: subprocess.Popen[str], seconds: float = 60.0) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    assert ready, "the script printed nothing"
    return process.stdout.readline().strip()


SCRIPT = """
from discodsl import JobDead
from tests import jobs

run = jobs.sleepy.submit(["raw://slow"], mode="local", progress=False)
print(run.jobname, flush=True)
try:
    run.wait(timeout=120)
except JobDead:
    print("JobDead", run.status, flush=True)
"""


def test_the_cli_watches_and_kills_a_local_run_of_another_process(
    runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**os.environ, registry.RUNS_ENV: str(runs_dir)}
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        name = read_line(process)
        assert name.startswith("sleepy@")
        assert main(["status", name]) == 0
        assert capsys.readouterr().out.startswith(f"{name}: active")
        assert main(["jobs"]) == 0
        assert "active" in capsys.readouterr().out
        assert main(["kill", "@?sleepy"]) == 0
        assert capsys.readouterr().out.strip() == f"killed {name}"
        assert process.wait(timeout=60) == 0
        assert read_line(process) == "JobDead dead"
    finally:
        process.kill()
        process.wait(timeout=60)
    assert main(["status", "--json", "@"]) == 0
    assert json.loads(capsys.readouterr().out)["active"] == "dead"
    assert main(["events", name]) == 0
    out = capsys.readouterr().out
    assert "New job initialized!" in out and out.rstrip().endswith("WARN: Job killed")


def test_the_cli_names_a_missing_local_run(capsys: pytest.CaptureFixture[str]) -> None:
    jobs.wordcount.run(["raw://a"], mode="local", progress=False)
    assert main(["status", "nosuch@1:2:3"]) == 1
    err = capsys.readouterr().err
    assert "no local run named 'nosuch@1:2:3'" in err and "discodsl jobs" in err
    assert main(["status", "@?nosuch"]) == 1
    err = capsys.readouterr().err
    assert "no local run whose name contains 'nosuch'" in err and "discodsl jobs" in err


def test_one_process_a_minute_cleans_the_registry(runs_dir: Path) -> None:
    # Each new process cleaned it at its first run, reading every entry's run.json: 60 ms
    # of a 1 KB job's 0.3 s with 200 entries kept.
    stamp = runs_dir / registry.CLEANED
    assert registry._due(stamp) and stamp.exists()
    assert not registry._due(stamp)  # another process, within the minute
    old = time.time() - 2 * registry.CLEAN_EVERY
    os.utime(stamp, (old, old))
    assert registry._due(stamp) and time.time() - stamp.stat().st_mtime < registry.CLEAN_EVERY
    assert registry.list_runs(runs_dir) == []  # the stamp is no entry


# A small job of a script of the tests below, for a signal handler to run.
SMALL_JOB = """
from discodsl import job, map

@map
def m(line):
    yield line, 1

@job
def hj():
    return [m]
"""

SIGNALLED = (
    SMALL_JOB
    + """
import signal, sys, threading, time

if sys.argv[3] == "another thread":
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()

said = []
def handler(signum, frame):  # a "report now" handler that runs a small job
    said.append(sorted(hj.run(inputs=["raw://h"], mode=sys.argv[2])))

signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, float(sys.argv[1]))  # while the first run starts
main = sorted(hj.run(inputs=["raw://a"], mode=sys.argv[2]))
signal.setitimer(signal.ITIMER_REAL, 0)
print(main, said)
"""
)


@pytest.mark.parametrize("threads", ["one thread", "another thread"])
@pytest.mark.parametrize("mode", ["inline", "local"])
def test_a_signal_handler_may_run_a_job_while_the_first_run_loads_the_runner(
    tmp_path: Path, mode: str, threads: str
) -> None:
    # The handler's run found the runner's module half imported (the first run was importing
    # it): both died of "cannot import name 'InlineRunner' from partially initialized module
    # ... (most likely due to a circular import)". Blocking the main thread's signals kept
    # them off it only in a program of one thread: with another (a notebook's kernel has
    # several), the kernel gave the signal to that one, and the handler still ran.
    script = tmp_path / "signalled.py"
    script.write_text(SIGNALLED)
    for delay in ("0.002", "0.005", "0.01", "0.03", "0.05"):
        done = subprocess.run(
            [sys.executable, str(script), delay, mode, threads],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (delay, done.stderr[-2000:])
        main, _, said = done.stdout.strip().partition(" ")
        assert main == "[('a',", done.stdout
        assert said in ("1)] []", "1)] [[('h', 1)]]"), done.stdout


TEMPDIR_SIGNALLED = (
    SMALL_JOB
    + """
import os, signal, sys, tempfile

said = []
signal.signal(signal.SIGALRM, lambda *_: said.append(sorted(hj.run(["raw://h"], mode=sys.argv[1]))))
looking = tempfile._get_default_tempdir

def signalled():  # Python's first look for its temporary directory, holding its own lock
    os.kill(os.getpid(), signal.SIGALRM)
    return looking()

tempfile._get_default_tempdir = signalled
print(sorted(hj.run(["raw://a"], mode=sys.argv[1])), said)
"""
)


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_a_signal_handler_may_run_a_job_while_the_first_run_looks_for_the_temporary_directory(
    tmp_path: Path, mode: str
) -> None:
    # tempfile.gettempdir() holds a lock of its own the first time: a handler's run taking
    # it again hung the program for good (seen once in the full suite, on 3.10 and 3.11).
    script = tmp_path / "signalled.py"
    script.write_text(TEMPDIR_SIGNALLED)
    done = subprocess.run(
        [sys.executable, str(script), mode], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[('a', 1)] [[('h', 1)]]", done.stdout


def test_two_jobs_named_in_one_microsecond_get_names_and_homes_of_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two names alike (the clock stepped back, or two submissions in one microsecond): the
    # second run removed the first's job home, its results with it, and blamed the disk.
    import types

    from discodsl.runners import layout

    stopped = types.SimpleNamespace(time=lambda: 1_700_000_000.0, time_ns=time.time_ns)
    monkeypatch.setattr(layout, "time", stopped)
    first = jobs.wordcount.run(["raw://a b a"], mode="local", progress=False)
    second = jobs.wordcount.run(["raw://c"], mode="local", progress=False)
    assert first.jobname != second.jobname
    assert dict(first) == {"a": 2, "b": 1} and dict(second) == {"c": 1}


def test_a_range_given_past_its_files_end_fails_once_saying_so(tmp_path: Path) -> None:
    # file:///x#range=0-1000000 over a 6-byte file: "changed while the job ran ... when
    # the run cut it into ranges", a cut the run never made, retried 4 times (a master's
    # 100, minutes apart), though the file would not grow back.
    path = tmp_path / "six.txt"
    path.write_text("a b c\n")
    with pytest.raises(TaskFailed) as caught:
        jobs.wordcount.run([f"{path.as_uri()}#range=0-1000000"], mode="local", progress=False)
    said = str(caught.value)
    assert "attempts" not in said and "range was given past its end" in said, said


def test_a_run_given_no_inputs_is_refused_as_one_given_none() -> None:
    # wordcount.run(mode="local"), its inputs forgotten, ran over nothing and gave [].
    with pytest.raises(SettingsError, match=r"the job got no inputs .*inputs=\[\] for none"):
        jobs.wordcount.run(mode="inline")
    with pytest.raises(SettingsError, match="the job got no inputs"):
        jobs.wordcount.submit(mode="local")
    assert list(jobs.wordcount.run([], mode="inline")) == []


def test_results_of_a_purged_cluster_job_say_the_job_is_gone(
    disco_master: DiscoMaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A node's 404 on the results' files: "check that the file exists and the node serving
    # it is healthy", though nothing was wrong with any node. The test master removes a
    # purged job's files at once; a real one does later, when its 404s come.
    from discodsl.client import Master
    from tests.conftest_cluster import point_at

    point_at(monkeypatch, disco_master.url, disco_master.port)
    results = jobs.wordcount.run(["raw://x y x"], progress=False)
    with Master(disco_master.url, retries=0) as master:
        master.purge(results.jobname)
    with pytest.raises(JobError) as caught:
        list(results)
    said = str(caught.value)
    assert f"the results of {results.jobname!r} are gone: the master knows the job no" in said
    assert "purged" in said and "node serving it is healthy" not in said, said
    # Given to another job, as its indexes or the results: the index's bare 404.
    from discodsl import DataError

    indexes = [replicas[0] for replicas in results.urls]
    for mode in ("local", "inline", "cluster"):
        with pytest.raises((DataError, JobError)) as caught:
            jobs.merge_counts.run(inputs=indexes, mode=mode, max_failures=0)
        said = str(caught.value)
        assert f"the index of job {results.jobname!r}'s outputs is not on its node" in said, said
        assert "if that job was purged" in said and "node serving it is healthy" not in said


def test_indexes_read_through_another_master_say_so_not_only_that_the_job_was_purged(
    disco_master: DiscoMaster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cluster run's indexes given to a local run while DISCO_MASTER named another master
    # were "gone: if that job was purged ... run it again", of a job that was not (DZ F5).
    from discodsl import DataError
    from tests.conftest_cluster import point_at
    from tests.disco_state import Clock

    results = jobs.wordcount.run(["raw://x y x"], master=disco_master.url, progress=False)
    indexes = [replicas[0] for replicas in results.urls]
    with DiscoMaster(tmp_path / "other", clock=Clock(scale=1000)) as other:
        point_at(monkeypatch, other.url, other.port)
        with pytest.raises((DataError, JobError)) as caught:
            jobs.merge_counts.run(inputs=indexes, mode="local", max_failures=0)
    said = str(caught.value)
    assert f"the index of job {results.jobname!r}'s outputs is not on its node" in said, said
    assert f"asked at localhost:{other.port}" in said, said
    assert "if that job was purged" in said, said
    assert "if it ran on another master than this run's, run this one there (master=" in said
    point_at(monkeypatch, disco_master.url, disco_master.port)
    assert sorted(jobs.merge_counts.run(inputs=indexes, mode="local")) == sorted(results)


def test_every_signal_held_while_the_runner_loads_is_handled_though_one_handler_raises() -> None:
    # Two signals while the first run loaded its runner: the first's handler raised, and
    # the second's never ran, where Python runs each.
    import os
    import signal

    from discodsl import interrupts

    ran: list[int] = []

    def raising(number: int, frame: Any) -> None:
        ran.append(number)
        raise RuntimeError("the first handler's")

    previous = {n: signal.getsignal(n) for n in (signal.SIGUSR1, signal.SIGUSR2)}
    signal.signal(signal.SIGUSR1, raising)
    signal.signal(signal.SIGUSR2, lambda number, frame: ran.append(number))
    try:
        with pytest.raises(RuntimeError, match="the first handler's"), interrupts.held():
            os.kill(os.getpid(), signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.05)  # both noted, neither handled yet
            assert ran == []
        assert ran == [signal.SIGUSR1, signal.SIGUSR2]
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


LIBRARY_DISPOSITION = """
import ctypes, os, signal, sys, time
from tests import jobs

libc = ctypes.CDLL(None)
libc.signal.restype = ctypes.c_void_p
libc.signal(signal.SIGINT, ctypes.c_void_p(1))  # SIG_IGN, as a library sets it in C

def interrupted():
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
    except KeyboardInterrupt:
        return True
    return False

mode = None if sys.argv[1] == "None" else sys.argv[1]
print(interrupted(), sorted(jobs.wordcount.run(["raw://x"], mode=mode)), interrupted())
swaps = []
signal.signal(signal.SIGTERM, lambda number, frame: None)
real = signal.signal
signal.signal = lambda *args: swaps.append(args) or real(*args)
jobs.wordcount.run(["raw://y"], mode=mode)
print("swaps", len(swaps))
"""


@pytest.mark.parametrize("mode", ["inline", "local", None])
def test_a_run_leaves_a_signal_disposition_a_c_library_set_as_it_was(
    tmp_path: Path, mode: str | None
) -> None:
    # Holding the program's handlers while the runner loaded put Python's SIGINT handler
    # back at the OS level, over what an embedded runtime (a JVM, R) had set there; and
    # with the default mode, every run swapped the program's own handlers.
    script = tmp_path / "library.py"
    script.write_text(LIBRARY_DISPOSITION)
    done = subprocess.run(
        [sys.executable, str(script), str(mode)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.stdout.split("\n")[:2] == ["False [('x', 1)] False", "swaps 0"], done.stderr


def test_a_kill_the_master_refuses_leaves_the_run_as_it_was(
    disco_master: DiscoMaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run was marked killed before the master was asked: status said "dead" while the
    # job ran on, and when it ended ready, wait() withheld its results as a killed run's.
    from discodsl.errors import BadAnswer
    from tests import disco_master as test_master
    from tests.conftest_cluster import point_at

    point_at(monkeypatch, disco_master.url, disco_master.port)
    monkeypatch.setenv("DISCODSL_RETRIES", "0")
    refused = test_master.Reply(500, b'"kill failed"', None)
    monkeypatch.setitem(test_master._POSTS, "kill_job", lambda master, value: refused)
    run = jobs.sleepy.submit(["raw://a"], progress=False, params={"seconds": 2.0})
    with pytest.raises(BadAnswer, match="kill failed"):
        run.kill()
    assert run.status == "active"
    assert sorted(run.wait(timeout=120)) == [("a", 1)]
    assert run.status == "ready"


@pytest.mark.parametrize("error", [TimeoutError, JobError])
def test_a_run_left_by_an_exception_of_a_signal_handler_is_stopped(
    tmp_path: Path, error: type[Exception]
) -> None:
    # A SIGALRM deadline raising in run(): the local run computed on in the background,
    # held by no one, and the program was told at exit to wait() for it. An error of
    # discodsl's (a job the handler ran failed) was taken for the run's own (probe CM F2).
    pidfile = tmp_path / "pid"

    def deadline(number: int, frame: Any) -> None:
        raise error("the deadline passed")

    previous = signal.signal(signal.SIGALRM, deadline)
    try:
        signal.setitimer(signal.ITIMER_REAL, 2.0)
        with pytest.raises(error, match="the deadline passed"):
            cluster_jobs.sleeper.run(
                ["raw://x"], mode="local", progress=False, params={"pidfile": str(pidfile)}
            )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    pid = int(pidfile.read_text())
    eventually(lambda: not owners.running(pid), seconds=30)


def test_the_repr_of_results_counts_a_tasks_index_as_one_not_as_a_file() -> None:
    # "2 result file(s)" of a local stage whose record_urls() listed 6.
    results = jobs.wordcount.run(["raw://a b c d", "raw://e f g h"], mode="local", progress=False)
    words = results.stage("words")
    assert repr(words).endswith(": 2 task index(es) of result files>"), repr(words)
    assert len(words.record_urls()) > 2
    inline = jobs.wordcount.run(["raw://a b c d"], mode="inline").stage("words")
    assert f": {len(inline.urls)} result file(s)>" in repr(inline)


def test_a_run_chained_on_a_cluster_run_whose_wait_timed_out_waits_on_for_its_job(
    cluster_env: str,
) -> None:
    # The first's timeout= stopped its watch while its job ran on (and ended ready): the
    # second was declared dead, its input run said to have "failed".
    first = jobs.sleepy.submit(
        ["raw://a"], mode="cluster", progress=False, timeout=0.5, params={"seconds": 3.0}
    )
    second = jobs.histogram.submit(first, mode="cluster", progress=False)
    assert dict(second.wait(timeout=120)) == {1: ["a"]}
    assert first.status == "ready"


def test_a_run_chained_on_a_cluster_run_that_lost_its_master_fails_naming_it(
    cluster_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A master that stopped answering the first's watch: the second re-watched it without a
    # pause, at full CPU, for ever (probe CM F9). Its job may run on, unseen: the second
    # fails, naming the first and how it was lost.
    from discodsl.client import Master
    from discodsl.errors import BadAnswer

    status = Master.status

    def gone(self: Master, jobname: str, timeout_ms: int = 0) -> Any:
        if jobname.startswith("sleepy@"):
            raise BadAnswer("POST /disco/ctrl/get_results: the master failed (502 <html>)")
        return status(self, jobname, timeout_ms)

    monkeypatch.setattr(Master, "status", gone)
    first = jobs.sleepy.submit(["raw://a"], mode="cluster", progress=False)
    second = jobs.histogram.submit(first, mode="local", progress=False)
    spent = time.process_time()
    with pytest.raises(InputRunFailed, match=r"\(cluster\) failed: JobActive: lost track of job"):
        second.wait(timeout=30)
    assert time.process_time() - spent < 10
    monkeypatch.setattr(Master, "status", status)
    first.kill()


def test_a_program_that_ctrl_c_ends_with_a_local_run_going_dies_by_sigint() -> None:
    # Python ends a program its KeyboardInterrupt left by SIGINT (a shell's 130); a local
    # run going then made it exit 1: stopping it imported a module, and any exec() at exit
    # made Python forget the interrupt (probe CQ F2).
    script = textwrap.dedent("""
        from tests import jobs

        jobs.sleepy.submit(["raw://a"], mode="local", progress=False)
        raise KeyboardInterrupt
    """)
    done = _program(script)
    assert done.returncode == -signal.SIGINT, done.stderr
    assert "which stopped it" in done.stderr


def test_a_program_ctrl_c_ends_kills_its_cluster_runs_that_ask_for_it(cluster_env: str) -> None:
    # Only the run whose wait() the Ctrl-C stopped was killed; the program's other runs,
    # submitted with kill_on_interrupt=True too, were said to go on, and did (probe CQ F4).
    script = textwrap.dedent("""
        from tests import jobs

        runs = [
            jobs.sleepy.submit(["raw://a"], mode="cluster", progress=False, kill_on_interrupt=kill)
            for kill in (True, True, False)
        ]
        for run in runs:
            print(run.jobname, flush=True)
        raise KeyboardInterrupt
    """)
    done = _program(script)
    killed, also, spared = done.stdout.split()
    try:
        assert f"killed job {killed}" in done.stderr and f"killed job {also}" in done.stderr
        assert f"job {spared} still runs on" in done.stderr, done.stderr
        eventually(lambda: main(["wait", killed, "--timeout", "0"]) == 1, seconds=30)
    finally:
        main(["kill", spared])


def test_a_program_ctrl_c_ends_in_the_wait_for_a_chain_tells_its_first_run_once(
    cluster_env: str,
) -> None:
    # The run the interrupted one waited for was told to run on by the Ctrl-C, and again
    # by the program's end, whose Ctrl-C it was (probe DP F1).
    script = textwrap.dedent("""
        import os, signal, threading
        from tests import jobs

        # Ctrl-C as a terminal sends it: a shell starts a background job with SIGINT ignored
        signal.signal(signal.SIGINT, signal.default_int_handler)
        first = jobs.sleepy.submit(["raw://a"], mode="cluster", progress=False)
        second = jobs.histogram.submit(first, mode="cluster", progress=False)
        while "@" not in first.jobname:
            threading.Event().wait(0.05)
        print(first.jobname, flush=True)
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        second.wait()
    """)
    done = _program(script)
    first = done.stdout.strip()
    try:
        assert done.returncode == -signal.SIGINT, done.stderr
        assert done.stderr.count(f"job {first} still runs on") == 1, done.stderr
    finally:
        main(["kill", first])


def test_a_program_that_caught_a_ctrl_c_and_ends_normally_spares_its_cluster_runs(
    cluster_env: str,
) -> None:
    # A Ctrl-C caught in a wait() once was taken for the program's end by Ctrl-C: its later
    # normal end killed every kill_on_interrupt run still going (probe CW F11).
    script = textwrap.dedent("""
        import os, signal, threading
        from tests import jobs

        first = jobs.sleepy.submit(["raw://a"], mode="cluster", progress=False)
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            first.wait()
        except KeyboardInterrupt:
            pass
        later = jobs.sleepy.submit(
            ["raw://a"], mode="cluster", progress=False, kill_on_interrupt=True
        )
        print(first.jobname, later.jobname, flush=True)
    """)
    done = _program(script)
    first, later = done.stdout.split()
    try:
        assert done.returncode == 0, done.stderr
        assert f"killed job {later}" not in done.stderr, done.stderr
        assert f"its cluster run {later!r} did; its job goes on" in done.stderr, done.stderr
    finally:
        main(["kill", first])
        main(["kill", later])


def test_an_ipython_session_ending_after_a_stopped_cell_spares_its_cluster_runs(
    cluster_env: str,
) -> None:
    # IPython keeps any cell's last error in sys.last_value: an interrupted cell, long
    # before, made the session's normal end kill its kill_on_interrupt runs (probe CS F9).
    script = textwrap.dedent("""
        from IPython.core.interactiveshell import InteractiveShell

        shell = InteractiveShell.instance()
        shell.run_cell("raise KeyboardInterrupt")
        shell.run_cell(
            "from tests import jobs\\n"
            "run = jobs.sleepy.submit(['raw://a'], mode='cluster', progress=False, "
            "kill_on_interrupt=True)\\n"
            "print('JOB', run.jobname, flush=True)"
        )
    """)
    done = _program(script)
    jobname = done.stdout.split("JOB ", 1)[1].split()[0]
    try:
        assert "killed job" not in done.stderr, done.stderr
        assert f"its cluster run {jobname!r} did; its job goes on" in done.stderr, done.stderr
    finally:
        main(["kill", jobname])


@pytest.mark.usefixtures("ctrl_c")
def test_ctrl_c_again_cuts_short_a_stop_that_seems_stuck(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every Ctrl-C after the first was held for the whole stop: a master slow to answer its
    # kill kept the program minutes, whatever the user pressed (probe CR F4, a regression).
    from discodsl.runners import handle

    kill = Run.kill
    monkeypatch.setattr(Run, "kill", lambda run: (time.sleep(10), kill(run)))
    monkeypatch.setattr(handle, "STOP_GRACE", 0.5, raising=False)
    run = jobs.sleepy.submit(["raw://slow"], mode="local", progress=False)
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    again = threading.Timer(1.5, signal.pthread_kill, args=(main_thread, signal.SIGINT))
    started = time.monotonic()
    try:
        with _ctrl_c_after(0.3), pytest.raises(KeyboardInterrupt):
            again.start()
            run.wait(timeout=60)
        assert time.monotonic() - started < 5
    finally:
        again.join()
        monkeypatch.setattr(Run, "kill", kill)
        run.kill()


@pytest.mark.usefixtures("ctrl_c")
def test_a_sigterm_handlers_exit_during_a_stop_is_not_lost_in_a_second_ctrl_c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A second Ctrl-C and the program's SIGTERM handler held in the same stop: the handler's
    # SystemExit was dropped for the Ctrl-C's KeyboardInterrupt, which the stop swallows
    # (probe CR F10, a regression).
    kill = Run.kill

    def signalled_twice(run: Run) -> None:
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGALRM)
        kill(run)

    monkeypatch.setattr(Run, "kill", signalled_twice)
    previous = signal.signal(signal.SIGALRM, lambda number, frame: sys.exit(7))
    run = jobs.sleepy.submit(["raw://slow"], mode="local", progress=False)
    try:
        with _ctrl_c_after(0.3), pytest.raises(SystemExit) as caught:
            run.wait(timeout=60)
        assert caught.value.code == 7 and run.ended()
    finally:
        signal.signal(signal.SIGALRM, previous)


class _Stop(Exception):
    """What the handlers of the tests below raise: the signal they were given."""


def _exit_with(number: int, frame: object) -> None:
    raise _Stop(number)


class _Handler:
    def __call__(self, number: int, frame: object) -> None:
        raise _Stop(number)


class _Counted:
    """A handler that notes each signal it is given (``calls``), then raises _Stop."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, number: int, frame: object) -> None:
        self.calls.append(number)
        raise _Stop(number)


def _one_shot(number: int, frame: object) -> None:  # a second signal would kill at once
    signal.signal(number, signal.SIG_DFL)
    raise _Stop(number)


def _signalled_in_removal(
    monkeypatch: pytest.MonkeyPatch, number: int, rest: float = 0.0
) -> tuple[Any, list[Path]]:
    """A local run's results, whose files' removal signal ``number`` comes in the middle of
    (its rest takes ``rest`` seconds), and the files."""
    import shutil

    results = jobs.wordcount.run(["raw://a"], mode="local", progress=False)
    files = [Path(urls.file_path(url) or "") for url in results.record_urls()[0]]
    rmtree, signalled = shutil.rmtree, []

    def interrupted(*args: Any, **kwargs: Any) -> None:
        if not signalled:
            signalled.append(True)
            signal.raise_signal(number)  # as the signal comes in the middle of it
        time.sleep(rest)
        rmtree(*args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", interrupted)
    return results, files


def _dropped_while_signalled(
    monkeypatch: pytest.MonkeyPatch, number: int, rest: float = 0.0
) -> tuple[BaseException | None, list[Path]]:
    """Drop a local run's results while its files go, signal ``number`` coming in the middle
    of their removal (whose rest takes ``rest`` seconds): what reached the program's own code
    within 5 s (None: nothing), and the files."""
    results, files = _signalled_in_removal(monkeypatch, number, rest)
    try:
        del results  # collected now: its finalizer removes its files
        for _ in range(500):  # the program's own code, where the handler runs
            time.sleep(0.01)
    except BaseException as exc:
        return exc, files
    return None, files


@pytest.mark.parametrize("rest", [0.0, 0.3])
def test_a_signal_during_the_removal_of_dropped_results_reaches_the_program(
    monkeypatch: pytest.MonkeyPatch, rest: float
) -> None:
    # SIGTERM's sys.exit() ran on top of the finalizer removing a dropped Results' files,
    # which Python ignores: the service ran on (probe CQ F6). The signal is sent again once
    # the finalizer has returned, and the files still go. The rest of the removal may take
    # ``rest`` seconds: the signal sent again a fixed time later came within it, and was
    # lost again (probe CS F5, and seen on Python 3.10).
    with interrupts.handling(lambda number, frame: sys.exit(3), signal.SIGALRM):
        caught, files = _dropped_while_signalled(monkeypatch, signal.SIGALRM, rest)
        assert isinstance(caught, SystemExit) and caught.code == 3, caught
        assert not any(path.exists() for path in files), files


@pytest.mark.parametrize(
    "handler",
    [_exit_with, functools.partial(_exit_with), _Handler(), _Handler().__call__, _one_shot],
    ids=["function", "partial", "object", "method", "one shot"],
)
def test_a_handler_of_any_kind_raising_in_the_removal_of_dropped_results_reaches_the_program(
    monkeypatch: pytest.MonkeyPatch, handler: Callable[[int, object], None]
) -> None:
    # Only a function's handler was found, while still installed (probe CS F6).
    with interrupts.handling(handler, signal.SIGALRM):
        caught, files = _dropped_while_signalled(monkeypatch, signal.SIGALRM)
        assert isinstance(caught, _Stop) and caught.args == (signal.SIGALRM,), caught
        assert not any(path.exists() for path in files), files


def test_a_ctrl_c_in_the_removal_of_dropped_results_reaches_the_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Python's own Ctrl-C handler has no frame to find it by (probe CS F6).
    with interrupts.handling(signal.default_int_handler, signal.SIGINT):
        caught, files = _dropped_while_signalled(monkeypatch, signal.SIGINT)
        assert isinstance(caught, KeyboardInterrupt), caught
        assert not any(path.exists() for path in files), files


def test_the_handler_of_a_signal_in_the_removal_of_dropped_results_runs_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The signal was sent again, so the handler ran twice: a handler that forces the exit at
    # a second Ctrl-C did so at the first (probe CS F7); and a handler of two signals got
    # the other one (probe CS F15).
    counted = _Counted()
    calls = counted.calls
    with interrupts.handling(counted, signal.SIGUSR1, signal.SIGALRM):
        caught, files = _dropped_while_signalled(monkeypatch, signal.SIGUSR1)
        assert isinstance(caught, _Stop) and caught.args == (signal.SIGUSR1,), caught
        assert calls == [signal.SIGUSR1]
        assert signal.getsignal(signal.SIGUSR1) is counted
        assert not any(path.exists() for path in files), files


def test_a_signal_in_the_removal_of_dropped_results_reaches_a_handler_swapped_in_since(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The program installed its own handler right after the drop: the signal was not sent
    # to it, and was lost (probe CW F4).
    got: list[int] = []
    with interrupts.handling(_exit_with, signal.SIGALRM):
        results, _ = _signalled_in_removal(monkeypatch, signal.SIGALRM)
        with contextlib.suppress(_Stop):
            del results
            signal.signal(signal.SIGALRM, lambda number, frame: got.append(number))
            for _ in range(300):
                time.sleep(0.01)
        assert got == [signal.SIGALRM]


def test_a_handler_the_program_puts_back_after_a_drop_runs_once_for_its_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The program installed its handler again right after the drop: the signal was sent to
    # it again, and it ran twice for one signal (probe CY F7).
    counted = _Counted()
    calls = counted.calls
    with interrupts.handling(counted, signal.SIGALRM):
        results, _ = _signalled_in_removal(monkeypatch, signal.SIGALRM)
        with contextlib.suppress(_Stop):
            del results
            signal.signal(signal.SIGALRM, counted)
            for _ in range(30):
                time.sleep(0.01)
        assert calls == [signal.SIGALRM]


def test_a_ctrl_c_in_the_removal_of_the_programs_last_dropped_results_leaves_no_files(
    tmp_path: Path,
) -> None:
    # Raised again in discodsl's own removal of its files at the program's end, it cut that
    # short: a temporary directory was left (probe CW F21, a regression).
    script = textwrap.dedent("""
        import shutil, signal, time
        from tests import jobs

        results = jobs.wordcount.run(["raw://a"], mode="local", progress=False)
        rmtree, sent = shutil.rmtree, []

        def slow(*args, **kwargs):
            if not sent:
                sent.append(1)
                signal.raise_signal(signal.SIGINT)
            time.sleep(0.05)
            rmtree(*args, **kwargs)

        shutil.rmtree = slow
        del results
    """)
    done = _program(script, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert "atexit" not in done.stderr, done.stderr
    assert not list(tmp_path.glob("discodsl-*")), done.stderr


def test_a_signal_in_the_removal_of_closed_results_reaches_the_caller_of_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # close() called the finalizer, whose handling of a signal's exception swallowed it
    # and sent the signal again (probe CS F7): the caller of close() gets it, once, and the
    # files still go.
    import shutil

    counted = _Counted()
    calls = counted.calls
    results = jobs.wordcount.run(["raw://a"], mode="local", progress=False)
    files = [Path(urls.file_path(url) or "") for url in results.record_urls()[0]]
    rmtree = shutil.rmtree

    def interrupted(*args: Any, **kwargs: Any) -> None:
        if not calls:
            signal.raise_signal(signal.SIGALRM)
        rmtree(*args, **kwargs)

    with interrupts.handling(counted, signal.SIGALRM):
        monkeypatch.setattr(shutil, "rmtree", interrupted)
        with pytest.raises(_Stop):
            results.close()
        time.sleep(0.2)
        assert calls == [signal.SIGALRM]
        assert not any(path.exists() for path in files), files


def test_a_local_run_at_the_file_descriptor_limit_is_told_so() -> None:
    # It was told to free disk space, or given a bare "Too many open files" (probe CS F12).
    script = textwrap.dedent("""
        import os, resource
        from tests import jobs

        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        for fd in held[-3:]:
            os.close(fd)
        try:
            jobs.wordcount.run(["raw://a"], mode="local", progress=False, max_failures=0)
        except Exception as exc:
            print(type(exc).__name__, exc)
    """)
    done = _program(script)
    assert "Too many open files" in done.stdout, (done.stdout, done.stderr)
    assert "(ulimit -n, resource.RLIMIT_NOFILE): close the files" in done.stdout, done.stdout
    assert "free space" not in done.stdout


def test_a_local_run_at_the_process_limit_is_told_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # A bare "[Errno 11] Resource temporarily unavailable" (probe DT F1, under ulimit -u as a
    # user: root is not held to it, so the start is made to fail as the limit makes it).
    from discodsl.runners import node

    def at_the_limit(*args: object) -> None:
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr(node.NodeMaster, "_start_worker", at_the_limit)
    with pytest.raises(TaskFailed) as caught:
        jobs.wordcount.run(["raw://a"], mode="local", progress=False, max_failures=0)
    said = str(caught.value)
    assert "cannot start the worker: [Errno 11] Resource temporarily unavailable: " in said
    assert "(ulimit -u, resource.RLIMIT_NPROC): raise the limit, or run fewer" in said, said


@pytest.mark.parametrize("push", [False, True], ids=["file-urls", "pushed"])
def test_a_local_runs_listed_urls_go_to_a_cluster_as_its_files(
    cluster_env: str, capfd: pytest.CaptureFixture[str], push: bool
) -> None:
    """``disco://discodsl-local/...``, a local run's files as its index lists them, went to
    a master as they were: every node failed to resolve the made-up host, and the job
    died after all the master's retries (about 1.5 h on a real one), where the same
    results given whole or as their dir:// index go as file:// URLs, or pushed (DG F1)."""
    first = jobs.wordcount.run(["raw://a b a", "raw://b c"], mode="local", progress=False)
    chained = jobs.merge_counts.run(first.listed_urls(), push_inputs=push, progress=False)
    assert sorted(chained) == [("a", 2), ("b", 2), ("c", 1)]
    said = capfd.readouterr().err
    assert ("pushed 2 local input file(s)" if push else "go to the cluster as file://") in said


@pytest.mark.parametrize("mode", ["inline", "local", "cluster"])
def test_a_local_runs_listed_url_whose_file_is_gone_is_refused_before_the_run(
    request: pytest.FixtureRequest, mode: str
) -> None:
    # The local runner tried its task 4 times, the cluster's master 100, failing to open it.
    if mode == "cluster":
        request.getfixturevalue("cluster_env")
    first = jobs.wordcount.run(["raw://a b a"], mode="local", progress=False)
    listed = first.listed_urls()
    first.close()
    with pytest.raises(JobError, match=r"is a file of an earlier run whose results were closed"):
        jobs.merge_counts.run(listed, mode=mode, progress=False)


@map
def _fails_once(line: str, params: Any) -> Iterator[tuple[str, int]]:
    if not os.path.exists(params):
        open(params, "w").close()
        raise OSError("a passing error")
    yield line, 1


@job
def _flaky_once() -> list[Any]:
    return [_fails_once]


def test_a_local_task_tried_again_is_told_with_its_reason_whatever_progress_says(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # A cluster's run tells it; a local one said nothing with progress=False, and no reason
    # with progress=True: a job passing on a retry hid a flaky input (probe DW F6).
    marker = str(tmp_path / "failed")
    assert list(_flaky_once.run(["raw://a"], mode="local", progress=False, params=marker)) == [
        ("a", 1)
    ]
    told = [line for line in capfd.readouterr().err.splitlines() if "task failed" in line]
    assert told == [
        "[_fails_once:0] task failed, 1 failure(s) so far, to be retried: stage '_fails_once' "
        "failed on input 'raw://a', record 0: OSError: a passing error"
    ], told
