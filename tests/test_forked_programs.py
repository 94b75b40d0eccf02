"""A program that forks (a pre-fork server, a daemon): what a child inherits of discodsl
(atexit hooks, finalizers, the process's node directory) is its parent's, and a child's
normal exit must leave the parent's runs and results as they were."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from discodsl import JobError
from tests import jobs

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")


def _child_exits(body: Callable[[], object] = lambda: None) -> int:
    """Fork a child that runs ``body`` and exits as a program does (atexit hooks, finalizers);
    its exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            body()
            code = 0
        except BaseException:
            code = 1
        sys.stdout.flush()
        # A program's normal end, as sys.exit() gives it, but out of pytest's own frames.
        import atexit
        import weakref

        weakref.finalize._exitfunc()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("mode", ["local", "inline"])
def test_a_forked_child_that_exits_leaves_its_parents_results(mode: str) -> None:
    held = jobs.wordcount.run(["raw://a b a"], mode=mode, progress=False)
    assert _child_exits() == 0
    assert sorted(held) == [("a", 2), ("b", 1)]  # read from its files


def test_a_forked_child_that_exits_leaves_its_parents_cached_results(tmp_path: Path) -> None:
    first = jobs.wordcount.run(["raw://a b a"], mode="local", cache=True, progress=False)
    again = jobs.wordcount.run(["raw://a b a"], mode="local", cache=True, progress=False)
    assert _child_exits() == 0
    assert sorted(first) == sorted(again) == [("a", 2), ("b", 1)]


def test_a_forked_child_that_exits_leaves_its_parents_run_going() -> None:
    run = jobs.sleepy.submit(["raw://a"], mode="local", params={"seconds": 1.5}, progress=False)
    time.sleep(0.5)
    assert _child_exits() == 0
    assert sorted(run.wait(timeout=60)) == [("a", 1)]


def test_a_forked_child_told_to_wait_for_its_parents_run_is_told_whose_it_is() -> None:
    """The run goes on in the parent only: in the child, wait() waited for good."""
    run = jobs.sleepy.submit(["raw://a"], mode="local", params={"seconds": 1.5}, progress=False)

    def waits() -> None:
        for ask in (run.wait, lambda: run.status, run.kill):
            try:
                ask()
            except JobError as exc:
                assert f"process {os.getpid()}" in str(exc) and "submitted" in str(exc)
            else:
                raise AssertionError(f"{ask} answered in the child")

    started = time.monotonic()
    assert _child_exits(waits) == 0
    assert time.monotonic() - started < 10
    assert dict(run.wait(timeout=60)) == {"a": 1}


def _run_in_a_child(answers: Any) -> None:
    """In a multiprocessing child: its pid and the results of a local run it made."""
    results = dict(jobs.wordcount.run(["raw://a b a"], mode="local", progress=False))
    answers.put((os.getpid(), results))


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_multiprocessing_child_that_ran_jobs_leaves_no_node_directory(start: str) -> None:
    """A child multiprocessing forks ends with os._exit: no atexit hook runs, and its node
    directory stayed behind (until a later run noticed its process had gone)."""
    import multiprocessing
    import tempfile

    context = multiprocessing.get_context(start)
    answers = context.Queue()
    child = context.Process(target=_run_in_a_child, args=(answers,))
    child.start()
    pid, results = answers.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0 and results == {"a": 2, "b": 1}
    assert list(Path(tempfile.gettempdir()).glob(f"discodsl-node-{pid}-*")) == []


def test_a_forked_child_runs_jobs_in_a_node_directory_of_its_own() -> None:
    parent = jobs.wordcount.run(["raw://a"], mode="local", progress=False)

    def child_run() -> None:
        results = jobs.wordcount.run(["raw://b"], mode="local", progress=False)
        assert sorted(results) == [("b", 1)]
        # Not in the parent's node directory, which the parent removes at its end.
        assert str(os.getpid()) in results.record_urls()[0][0]

    assert _child_exits(child_run) == 0
    assert sorted(parent) == [("a", 1)]


def test_a_child_forked_while_a_thread_starts_the_first_run_can_run_jobs(tmp_path: Path) -> None:
    # The thread's first run imports the runners: a fork in the middle left the child an
    # import lock held by a thread it does not have, and its own run waited for it for good.
    script = tmp_path / "forks.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing, os, sys, threading, time
            from tests import jobs

            def child():
                print(sorted(jobs.wordcount.run(["raw://a b a"], mode="inline")), flush=True)

            if __name__ == "__main__":
                threading.Thread(
                    target=lambda: jobs.wordcount.run(["raw://x"], progress=False), daemon=True
                ).start()
                time.sleep(float(sys.argv[1]))
                process = multiprocessing.get_context("fork").Process(target=child)
                process.start()
                process.join(30)
                if process.is_alive():
                    process.kill()
                    sys.exit(f"the child forked after {sys.argv[1]} s hung")
            """
        )
    )
    for delay in ("0.005", "0.01", "0.02"):
        _its_child_counts_words(script, delay)


@pytest.mark.parametrize("runner", ["inline", "local"])
def test_a_child_forked_while_another_thread_pickles_a_job_can_run_jobs(
    tmp_path: Path, runner: str
) -> None:
    # cloudpickle's by-value registry is taken in turns under a lock: a fork while another
    # thread held it left the child a lock held by a thread it does not have, and its own
    # run, which pickles its job, waited for good (CI saw the test above hang once).
    script = tmp_path / "forks.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing, os, sys, threading, time
            from tests import jobs

            READ, WRITE = os.pipe()

            class Slow:  # pickles slowly, and says when it starts
                def __reduce__(self):
                    os.write(WRITE, b"x")
                    time.sleep(1.0)
                    return (Slow, ())

            def child():
                print(sorted(jobs.wordcount.run(["raw://a b a"], mode=sys.argv[1])), flush=True)

            if __name__ == "__main__":
                slow = jobs.wordcount.with_options(params={"slow": Slow()})
                threading.Thread(
                    target=lambda: slow.run(["raw://x"], mode="inline"), daemon=True
                ).start()
                os.read(READ, 1)
                process = multiprocessing.get_context("fork").Process(target=child)
                process.start()
                process.join(20)
                if process.is_alive():
                    process.kill()
                    sys.exit("the child hung")
            """
        )
    )
    _its_child_counts_words(script, runner)


def test_a_child_forked_while_an_inline_run_of_a_thread_imports_asyncio_can_run_jobs(
    tmp_path: Path,
) -> None:
    # An inline run in a thread imports asyncio, for its tasks' event loops: a fork in the
    # middle left the child asyncio half made, its lock held by a thread it did not have,
    # and the child's run, which imported it again, waited for good (CI saw it once).
    script = tmp_path / "forks.py"
    script.write_text(
        textwrap.dedent(
            """
            import importlib.abc, multiprocessing, os, sys, threading, time

            READ, WRITE = os.pipe()

            class Slow(importlib.abc.MetaPathFinder):  # asyncio half made, for a while
                def find_spec(self, name, path, target=None):
                    if name == "asyncio.base_events" and threading.current_thread().daemon:
                        os.write(WRITE, b"x")
                        time.sleep(1.0)
                    return None

            sys.meta_path.insert(0, Slow())
            from tests import jobs

            def child():
                print(sorted(jobs.wordcount.run(["raw://a b a"], mode="inline")), flush=True)

            if __name__ == "__main__":
                assert "asyncio" not in sys.modules
                threading.Thread(
                    target=lambda: jobs.wordcount.run(["raw://x"], mode=sys.argv[1]), daemon=True
                ).start()
                os.read(READ, 1)
                process = multiprocessing.get_context("fork").Process(target=child)
                process.start()
                process.join(20)
                if process.is_alive():
                    process.kill()
                    sys.exit("the child hung")
            """
        )
    )
    _its_child_counts_words(script, "inline")


def _its_child_counts_words(script: Path, argument: str) -> None:
    """Run ``script argument`` from the repository: its forked child printed the count of
    ``a b a``, and it ended well."""
    _its_child_prints(script, argument, "[('a', 2), ('b', 1)]")


def _its_child_prints(script: Path, argument: str, printed: str) -> None:
    """Run ``script argument`` from the repository: its forked child printed ``printed``,
    and it ended well."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(script), argument],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [printed]


def test_the_locks_a_fork_waits_for_have_their_hooks_from_import_discodsl() -> None:
    """A module that registered its lock's fork hooks on its first import, in a thread that
    imported it while another forked, left the lock held in the child by a thread it did
    not have (the child's first run hung, 1 time in CI's runs): every lock a fork waits
    for is discodsl.forking's, whose hooks ``import discodsl`` registers, before any run."""
    from discodsl import forking, model, shipping

    assert shipping._REGISTRY is forking.PICKLING and model._IMPORTING is forking.IMPORTING
    done = subprocess.run(
        [sys.executable, "-c", "import sys, discodsl; print('discodsl.forking' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout == "True\n", done.stderr
    script = (
        "import os, sys, threading, time\n"
        "import discodsl\n"
        "from discodsl import forking\n"
        "def hold():\n"
        "    with forking.PICKLING:\n"
        "        time.sleep(0.3)\n"
        "threading.Thread(target=hold).start()\n"
        "time.sleep(0.1)\n"
        "pid = os.fork()\n"  # waits for the thread's pickling to end
        "if pid == 0:\n"
        "    os._exit(0 if forking.PICKLING.acquire(timeout=5) else 1)\n"
        "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    forked = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert forked.returncode == 0, forked.stderr


def test_a_child_forked_while_an_inline_task_runs_can_run_jobs_on_the_classes_as_they_were(
    tmp_path: Path,
) -> None:
    # A thread's inline task holds the lock of inline tasks, and the class holds the task's
    # copies of its attributes: a child forked then waited for the lock for good, and would
    # have shipped the task's copies.
    script = tmp_path / "forks.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import multiprocessing, os, sys, threading, time
            from tests import inline_class_jobs as jobs

            PARAMS = {{"started": {str(tmp_path / "started")!r}, "go": {str(tmp_path / "go")!r}}}

            def child():
                assert "seen" not in vars(jobs.Tally), vars(jobs.Tally)
                print(sorted(jobs.tallies.run(["raw://x y"], mode=sys.argv[1])), flush=True)

            if __name__ == "__main__":
                threading.Thread(
                    target=lambda: jobs.waiting.run(["raw://a"], mode="inline", params=PARAMS),
                    daemon=True,
                ).start()
                while not os.path.exists(PARAMS["started"]):
                    time.sleep(0.01)
                process = multiprocessing.get_context("fork").Process(target=child)
                process.start()
                process.join(30)
                open(PARAMS["go"], "w").close()
                if process.is_alive():
                    process.kill()
                    sys.exit("the child hung")
                sys.exit(process.exitcode)
            """
        )
    )
    _its_child_prints(script, "inline", "[('x y', 2)]")


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_a_process_a_stage_forks_sees_the_class_as_the_task_left_it(
    tmp_path: Path, mode: str
) -> None:
    # Inline, every forked child had the script's classes put back as they were before the
    # task, the stage's own child too: a table the stage had just loaded was gone in it.
    script = tmp_path / "loads.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing, sys
            from discodsl import job, map

            class Lookup:
                table = None

            def looked_up(key, answers):
                answers.put(Lookup.table and Lookup.table.get(key))

            @map
            def annotate(line):
                Lookup.table = {"a": 1}
                answers = multiprocessing.get_context("fork").Queue()
                child = multiprocessing.get_context("fork").Process(
                    target=looked_up, args=(line, answers)
                )
                child.start()
                yield line, answers.get(timeout=30)
                child.join(30)

            @job
            def annotated():
                return [annotate]

            if __name__ == "__main__":
                print(sorted(annotated.run(["raw://a"], mode=sys.argv[1])), flush=True)
            """
        )
    )
    _its_child_prints(script, mode, "[('a', 1)]")


def test_a_forked_child_can_show_a_run_still_active_in_its_parent() -> None:
    # repr(run) raised JobError in a fork (a logged %r, a debugger's locals, print([run])).
    run = jobs.sleepy.submit(["raw://a"], mode="local", progress=False)
    try:

        def child_shows() -> None:
            shown = repr([run])
            assert f"{run.jobname}, active in process {os.getppid()}>]" in shown, shown

        assert _child_exits(child_shows) == 0
    finally:
        run.kill()
