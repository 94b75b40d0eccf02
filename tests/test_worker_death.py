"""Workers that die, and drivers that die: clear errors, bounded runs, nothing left running.

A worker that dies mid-task (os._exit, SIGKILL, a segfault) fails its task
with a TaskFailed naming the stage, the task, its inputs and what the exit
means; ``timeout=`` stops a stage that never ends; a driver killed by SIGKILL
or SIGTERM takes its workers with it, and the next run removes its files.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from discodsl import places
from discodsl.errors import SettingsError, TaskFailed
from discodsl.runners import layout
from tests import death_jobs, jobs
from tests.interpreters import old_pythons

ROOT = Path(__file__).resolve().parent.parent


def _still_alive(pids: list[int], patience: float = 10.0) -> list[int]:
    """Those of ``pids`` still running after ``patience`` seconds, killed now (the test
    leaves no process behind, whatever it finds)."""
    deadline = time.monotonic() + patience
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in pids if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _parent(pid: int) -> int:
    """The parent of ``pid`` (0 if it has ended)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except OSError:
        return 0


def _workers_under(root: Path) -> list[int]:
    """Live processes whose working directory is under ``root`` (workers run in job homes)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "cwd").startswith(str(root)):
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if _alive(pid)]


def _wait_until(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return bool(condition())  # type: ignore[operator]


def _kill_left_over(pids: set[int]) -> None:
    """Workers this test's runs started that outlived the test's driver (a failing test)."""
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _script(body: str) -> str:
    return f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n" + textwrap.dedent(body)


def _input(tmp_path: Path) -> Path:
    data = tmp_path / "in.txt"
    data.write_text("a\nb\n")
    return data


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_driver_takes_its_workers_along_and_the_next_run_cleans_up(
    tmp_path: Path, how: signal.Signals
) -> None:
    temp, pids = tmp_path / "tmp", tmp_path / "pids"
    temp.mkdir()
    pids.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _script(f"""
            from tests import death_jobs
            death_jobs.runs_forever.run(
                inputs=[{str(_input(tmp_path))!r}], mode="local", progress=False,
                workers=2, params={{"pids": {str(pids)!r}, "seconds": 300}},
            )
        """),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _wait_until(lambda: list(pids.iterdir()), 60), "the stage never started"
        assert _wait_until(lambda: len(_workers_under(temp)) >= 2, 30), "no spare started"
        stages = [int(p.name) for p in pids.iterdir()]
        zygotes = {_parent(pid) for pid in stages}
        assert driver.pid not in zygotes, "the stage ran in a worker the driver started"
        workers = {*_workers_under(temp), *stages, *zygotes}
        assert zygotes <= set(_workers_under(temp)), "the zygote runs outside the job home"
        driver.send_signal(how)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    try:
        assert _wait_until(lambda: not any(_alive(pid) for pid in workers), 15), [
            pid for pid in workers if _alive(pid)
        ]
    finally:
        _kill_left_over(workers)
    assert [p.name for p in temp.iterdir() if p.name.startswith("discodsl-node-")]
    later = subprocess.run(
        [
            sys.executable,
            "-c",
            _script("""
            from tests import death_jobs
            print(list(death_jobs.instant.run(inputs=["raw://x"], mode="local", progress=False)))
        """),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert later.stdout.strip() == "[('x', 1)]", later.stderr
    assert list(temp.iterdir()) == []


def test_node_directories_of_dead_processes_are_removed(tmp_path: Path) -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    dead = tmp_path / f"discodsl-node-{ended.stdout.strip()}-x1"
    (dead / "data").mkdir(parents=True)
    (dead / "data" / "file").write_text("left behind")
    live = tmp_path / f"discodsl-node-{os.getpid()}-x2"
    live.mkdir()
    other = tmp_path / "discodsl-node-unknownowner"
    other.mkdir()
    places.remove_dead_dirs(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


@pytest.mark.parametrize(
    ("chosen", "stage", "meaning"),
    [
        (death_jobs.exiting, "exits_3", r"exit code 3\b.*os\._exit\(3\) or sys\.exit\(3\)"),
        (death_jobs.self_killing, "kills_itself", r"SIGKILL.*out-of-memory killer"),
        (death_jobs.segfaulting, "segfaults", r"SIGSEGV.*crash in C code"),
    ],
)
def test_a_dying_worker_fails_its_task_saying_what_the_exit_means(
    tmp_path: Path, chosen: object, stage: str, meaning: str
) -> None:
    data = _input(tmp_path)
    with pytest.raises(TaskFailed) as info:
        chosen.run(inputs=[data], mode="local", progress=False)  # type: ignore[attr-defined]
    error = info.value
    message = str(error)
    assert (error.stage, error.taskid) == (stage, 0)
    assert f"{stage}:0" in message and str(data) in message, message
    assert re.search(meaning, message, re.DOTALL), message
    assert "Worker crashed!" not in message and "Last words" not in message
    assert len(message) < 2000


def test_a_worker_that_dies_before_it_starts_says_so_with_what_it_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interpreter that cannot start the worker (here one that only complains): no stage
    ran, so none is blamed, and what it printed is the clue."""
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'Fatal Python error: cannot start here' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(broken))
    with pytest.raises(TaskFailed) as info:
        death_jobs.exiting.run(inputs=[_input(tmp_path)], mode="local", progress=False)
    message = str(info.value)
    assert "its worker process ended before it began the task (exit code 1)" in message
    assert f"check that the job's Python ({broken}) can run" in message
    assert "Fatal Python error: cannot start here" in message
    assert "os._exit" not in message, message


def test_a_python_of_the_jobs_env_that_runs_no_worker_is_named(tmp_path: Path) -> None:
    """DISCODSL_PYTHON=/bin/true: tried four times, its failure named no Python (probe ED S3)."""
    with pytest.raises(TaskFailed) as info:
        death_jobs.exiting.run(
            inputs=[_input(tmp_path)], mode="local", env={"DISCODSL_PYTHON": "/bin/true"}
        )
    message = str(info.value)
    assert "before it began the task (exit code 0)" in message, message
    assert "check that the job's Python (/bin/true) can run discodsl's worker" in message


@pytest.mark.parametrize("where", ["forked", "started", "cluster"])
@pytest.mark.parametrize("python", ["missing", *old_pythons()[:1]])
def test_a_node_without_the_python_the_job_needs_fails_it_at_once_saying_so(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    where: str,
    python: str,
) -> None:
    """No interpreter, or one too old to read the runtime: the job fails at once, saying
    which Python it needs (on the local runner, the zygote's failure is not a hang)."""
    if where == "cluster":
        request.getfixturevalue("cluster_env")
    if where == "started":
        monkeypatch.setenv("DISCODSL_NO_FORKSERVER", "1")
    interpreter = str(tmp_path / "no-python") if python == "missing" else python
    # No PYTHONPATH: the test master's (this interpreter's import path) would not do for
    # another Python, as a node's own would not.
    job = jobs.wordcount.with_options(env={"DISCODSL_PYTHON": interpreter, "PYTHONPATH": ""})
    mode = "cluster" if where == "cluster" else "local"
    if python == "missing" and mode == "local":  # this machine's: looked for before the run
        with pytest.raises(SettingsError, match="in the job's env=, names no program"):
            job.submit(inputs=[_input(tmp_path)], mode=mode, progress=False)
        return
    run = job.submit(inputs=[_input(tmp_path)], mode=mode, progress=False)
    with pytest.raises(TaskFailed) as info:
        run.wait(timeout=60)
    needed = "{}.{}".format(*sys.version_info[:2])
    assert f"install Python {needed} on the nodes" in str(info.value) or (
        f"this job needs Python {needed}" in str(info.value) and interpreter in str(info.value)
    ), str(info.value)


def test_timeout_stops_a_stage_that_never_ends(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    started = time.monotonic()
    with pytest.raises(TaskFailed) as info:
        death_jobs.runs_forever.run(
            inputs=[_input(tmp_path)],
            mode="local",
            progress=False,
            timeout=3,
            params={"pids": str(pids), "seconds": 60},
        )
    assert time.monotonic() - started < 30
    message = str(info.value)
    assert "timeout=3" in message and "forever:0" in message, message
    assert info.value.stage == "forever"
    # On a loaded machine the timeout may strike before the stage has begun: then no pid.
    workers = [int(p.name) for p in pids.iterdir()]
    assert _wait_until(lambda: not any(_alive(pid) for pid in workers), 10), workers
    node = Path(layout.node_root())
    assert _workers_under(node) == []
    assert list(node.rglob("runs_forever@*")) == []


def test_the_events_of_a_run_that_timed_out_say_so(tmp_path: Path) -> None:
    """Someone watching the events (``discodsl events``, another shell) sees why the run
    was killed, not "WARN: Job killed" alone."""
    pids = tmp_path / "pids"
    pids.mkdir()
    run = death_jobs.runs_forever.submit(
        inputs=[_input(tmp_path)],
        mode="local",
        progress=False,
        timeout=1,
        params={"pids": str(pids), "seconds": 60},
    )
    with pytest.raises(TaskFailed, match="timeout=1 "):
        run.wait(timeout=60)
    messages = [message for _, _, message in run.events()]
    assert messages[-1] == "WARN: Job killed"
    assert "ERROR: the run passed its timeout=1 seconds: its workers were killed" in messages


def test_inline_mode_refuses_a_timeout() -> None:
    with pytest.raises(SettingsError, match="mode='local'"):
        death_jobs.instant.run(inputs=["raw://x"], mode="inline", timeout=5)


@pytest.mark.parametrize(
    ("chosen", "stage", "meaning"),
    [
        (death_jobs.exiting, "exits_3", r"exit code 3\b.*os\._exit\(3\) or sys\.exit\(3\)"),
        (death_jobs.self_killing, "kills_itself", r"SIGKILL.*out-of-memory killer"),
    ],
)
def test_a_dying_worker_on_a_cluster_fails_its_task_saying_what_the_exit_means(
    cluster_env: str, tmp_path: Path, chosen: object, stage: str, meaning: str
) -> None:
    # The master's events say only "Worker crashed! (exit code: N)", then "Worker died
    # without output": the exit code's meaning is ours to give.
    with pytest.raises(TaskFailed) as info:
        chosen.run(inputs=[_input(tmp_path)], progress=False)  # type: ignore[attr-defined]
    message = str(info.value)
    assert (info.value.stage, info.value.taskid) == (stage, 0)
    # The master fails the job itself, or (a real one's max_failure_rate being above the
    # job's max_failures=0) discodsl kills it after the first failure, and says so.
    after = r"( after 1 attempt \(max_failures=0\))?"
    assert re.search(rf"failed in task {stage}:0{after}: its worker process died", message)
    assert re.search(meaning, message, re.DOTALL), message


@pytest.mark.parametrize("mode", ["local", "cluster"])
def test_what_a_stage_printed_before_it_called_sys_exit_is_told(
    tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    # The worker's output is sent about once a second: what a stage printed in its last
    # second before sys.exit() (the print a user adds to find a crash) was lost.
    if mode == "cluster":
        request.getfixturevalue("cluster_env")
    run = death_jobs.saying_then_exiting.submit(inputs=["raw://here"], mode=mode, progress=False)
    with pytest.raises(TaskFailed, match="exit code 4"):
        run.wait(timeout=120)
    assert any("last words before here" in event[2] for event in run.events())


@pytest.mark.parametrize("mode", ["local", "cluster"])
def test_a_worker_killed_in_a_first_stage_task_names_the_input_it_read(
    tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    if mode == "cluster":
        request.getfixturevalue("cluster_env")
    paths = []
    for index, text in enumerate(["a\n", "b\n", "die\n"]):
        paths.append(tmp_path / f"in-{index}.txt")
        paths[-1].write_text(text)
    with pytest.raises(TaskFailed) as info:
        death_jobs.dying_on_one_input.run(inputs=paths, mode=mode, progress=False)
    message = str(info.value)
    # A Disco master numbers the first stage's tasks from the last input.
    assert info.value.taskid == (0 if mode == "cluster" else 2), message
    assert f"died running stage 'dies_on_die' reading '{paths[2].as_uri()}'" in message


@pytest.mark.parametrize("mode", ["local", "plain workers", "cluster"])
def test_a_worker_that_dies_leaving_processes_on_its_pipes_is_tried_again_at_once(
    tmp_path: Path, mode: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its end was seen only at end of file on its output, which what it started (a
    multiprocessing child, a subprocess) holds open: the run waited for them, here for
    ever. It is seen as it ends, and what it started is killed with it."""
    if mode == "cluster":
        request.getfixturevalue("cluster_env")
    if mode == "plain workers":
        monkeypatch.setenv("DISCODSL_NO_FORKSERVER", "1")
    data = tmp_path / "in.txt"
    data.write_text("a\nb\n")
    marks = tmp_path / "marks"
    marks.mkdir()
    started = time.monotonic()
    results = death_jobs.leaving_helpers.run(
        inputs=[data],
        mode="cluster" if mode == "cluster" else "local",
        params=str(marks),
        timeout=60,
        progress=False,
    )
    assert sorted(results) == [("a", 1), ("b", 1)]
    assert time.monotonic() - started < 20  # a Disco master too: the pipes are not held
    left = _still_alive([int(pid) for pid in (marks / "helpers").read_text().split()])
    # A Disco node kills a worker's children when it kills the worker, not after it died.
    assert not left or (mode == "cluster" and os.environ.get("DISCODSL_TEST_REAL_MASTER")), left


@pytest.mark.parametrize("how", ["end", "die"])
def test_what_a_task_starts_in_a_session_of_its_own_is_killed_with_its_worker(
    tmp_path: Path, how: str
) -> None:
    """start_new_session=True takes a process out of the worker's group, which is what was
    killed: it outlived the run and the program. The zygote adopts it (a subreaper)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    run = death_jobs.leaving_a_daemon.submit(
        ["raw://a", "raw://b"], mode="local", params=f"{how} {marks}", progress=False
    )
    if how == "end":
        assert sorted(run.wait(timeout=60)) == [("a", 1), ("b", 1)]
    else:
        with pytest.raises(TaskFailed):
            run.wait(timeout=60)
    daemons = [int(pid) for pid in (marks / "daemons").read_text().split()]
    assert daemons and not _still_alive(daemons)


def test_without_the_fork_server_a_tasks_own_session_child_is_killed_as_disco_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Disco node ends a task with `pkill -9 -P <worker>`, then the worker: its children,
    in sessions of their own too. Without the fork server only the worker's group was
    killed, and the child outlived the run."""
    monkeypatch.setenv("DISCODSL_NO_FORKSERVER", "1")
    marks = tmp_path / "marks"
    marks.mkdir()
    results = death_jobs.leaving_a_daemon.run(
        ["raw://a", "raw://b"], mode="local", params=f"end {marks}", progress=False
    )
    assert sorted(results) == [("a", 1), ("b", 1)]
    daemons = [int(pid) for pid in (marks / "daemons").read_text().split()]
    assert len(daemons) == 2 and not _still_alive(daemons)


def test_a_daemon_a_task_starts_runs_as_long_as_its_task(tmp_path: Path) -> None:
    """A daemon (forked twice) is an orphan while its task runs: the fork server, adopting
    orphans to kill what ended workers leave, must not take it for another's leftover."""
    results = death_jobs.keeping_a_daemon.run(
        ["raw://daemon", "raw://quick"], mode="local", params=str(tmp_path), progress=False
    )
    assert dict(results) == {"daemon": True, "quick": True}
    assert not _still_alive([int((tmp_path / "daemon").read_text())])


def test_what_stage_code_starts_holds_none_of_the_protocols_pipes() -> None:
    """On a Disco node the launcher's fd 3 (the master's pipe) was inheritable, and a fork
    of stage code held both pipes: a dead worker's end was hidden from the master, which
    waited for it for good (seen on the real master). Run in a process of its own: the
    worker takes over fds 0 and 1."""
    script = textwrap.dedent(
        """
        import os, sys
        from discodsl.worker import runtime
        out = os.dup(1)
        os.set_inheritable(out, True)  # as the launcher's 3>&1 makes it
        protocol_in, protocol_out = runtime._private_fds(out)
        assert not os.get_inheritable(protocol_in) and not os.get_inheritable(protocol_out)
        runtime._closed_in_forks(protocol_in, protocol_out)
        pid = os.fork()
        if pid == 0:
            for fd in (protocol_in, protocol_out):
                try:
                    os.fstat(fd)
                    os._exit(3)  # still open in the child
                except OSError:
                    pass
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        os.write(protocol_out, b"child %d" % os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60, cwd=ROOT)
    assert done.stdout == b"child 0", (done.stdout, done.stderr)


def test_a_reply_to_a_dead_worker_does_not_end_a_program_that_restored_sigpipe() -> None:
    # A script run into `| head` often sets SIGPIPE back to its default: a reply written to
    # a worker the OOM killer had just ended then killed the whole program, without a word.
    script = textwrap.dedent(
        """
        import os, signal, socket
        from discodsl.runners import forkserver
        from discodsl.runners.node import write_without_sigpipe

        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        read, write = os.pipe()
        os.close(read)
        try:
            write_without_sigpipe(write, b"OK 4 \\"ok\\"\\n")
        except BrokenPipeError:
            print("broken pipe")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs.close()
        server = object.__new__(forkserver._Zygote)
        server.control, server.send_lock = ours, forkserver.threading.Lock()
        try:
            server._send("F 1")
        except forkserver.ForkFailed:
            print("fork server gone")
        print("alive", signal.SIGPIPE in signal.sigpending())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert done.stdout.split("\n") == ["broken pipe", "fork server gone", "alive False", ""]


@pytest.mark.parametrize("fork_server", ["1", ""])
def test_a_temporary_directory_mounted_noexec_still_runs_local_jobs(
    fork_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hardened /tmp is mounted noexec: the job home's launcher could not be exec'd there.
    monkeypatch.setenv("DISCODSL_NO_FORKSERVER", "" if fork_server else "1")
    real = subprocess.Popen

    def noexec(args: list[str], *rest: Any, **options: Any) -> Any:
        if args[0].endswith(os.sep + "worker"):
            raise PermissionError(errno.EACCES, "Permission denied", args[0])
        return real(args, *rest, **options)

    monkeypatch.setattr(subprocess, "Popen", noexec)
    assert sorted(jobs.wordcount.run(["raw://a b a"], mode="local", progress=False)) == [
        ("a", 2),
        ("b", 1),
    ]


def test_pythonsafepath_in_the_environment_does_not_keep_workers_from_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Python 3.11+ then leaves the working directory (the job home) off sys.path, and every
    # worker failed with "No module named 'discodsl'".
    monkeypatch.setenv("PYTHONSAFEPATH", "1")
    assert sorted(jobs.wordcount.run(["raw://a b a"], mode="local", progress=False)) == [
        ("a", 2),
        ("b", 1),
    ]


@pytest.mark.parametrize(
    ("number", "said"),
    [
        (signal.SIGXCPU, "used up its CPU-time limit (ulimit -t)"),
        (signal.SIGXFSZ, "a file it wrote reached the size limit on files (ulimit -f)"),
        (signal.SIGKILL, "or the hard CPU-time limit (ulimit -t)"),
    ],
)
def test_a_worker_killed_by_a_limit_is_told_which(number: int, said: str) -> None:
    # SIGXCPU, which the kernel sends at the CPU-time limit, was "sent from outside the job".
    from discodsl.runners.failures import exit_meaning

    assert said in exit_meaning(-number)
    assert "sent from outside the job" not in exit_meaning(-number)


def test_a_signal_from_no_known_source_may_be_the_stages_own() -> None:
    # A stage that "cleans up its children" with os.killpg(os.getpgid(0), SIGTERM) was told
    # the signal was "sent from outside the job" (probe DI F7).
    from discodsl.runners.failures import exit_meaning

    said = exit_meaning(-signal.SIGTERM)
    assert said.startswith("killed by signal 15 (SIGTERM), sent by the stage itself (os.kill ")
    assert said.endswith("or from outside the job")


def test_a_stage_that_closes_the_workers_descriptors_is_told_so_not_oom() -> None:
    # The runner stopped the worker that closed its protocol's descriptor, and its SIGKILL
    # was worded as the out-of-memory killer's.
    with pytest.raises(TaskFailed) as caught:
        death_jobs.cutting_off.run(inputs=["raw://x"], mode="local", progress=False)
    said = str(caught.value)
    assert "closed its connection to the runner" in said and "os.closerange" in said
    assert "out-of-memory" not in said


@pytest.fixture(params=[True, False], ids=["forked", "interpreter"])
def worker_start(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local workers forked from the job's zygote, or each a new interpreter."""
    if not request.param:
        monkeypatch.setenv("DISCODSL_NO_FORKSERVER", "1")


@pytest.mark.usefixtures("worker_start")
@pytest.mark.parametrize(
    ("job", "not_said"),
    [
        # Its worker found the channel closed as it sent DONE, and exited 1: "the stage
        # ended the process with os._exit(1) or sys.exit(1)", retried 3 times (probe DI F8).
        (death_jobs.cutting_off_and_going_on, "sys.exit"),
        # Its worker sent DONE into /dev/null, read its end of file as the master's hang-up
        # after the last frame, and exited 0: "... with os._exit(0)" (probe DL F9).
        (death_jobs.replacing_and_going_on, "exit(0)"),
    ],
    ids=["closes", "replaces"],
)
def test_a_stage_that_closes_or_replaces_the_workers_descriptors_is_told_so_once(
    job: Any, not_said: str
) -> None:
    run = job.submit(["raw://x"], mode="local", progress=False)
    with pytest.raises(TaskFailed) as caught:
        run.wait(timeout=120)
    said = str(caught.value)
    assert "closed its connection to the runner" in said and not_said not in said, said
    assert sum("assigned to" in message for _, _, message in run.events()) == 1  # one try


@pytest.mark.parametrize("start", ["forked", "interpreter", "cluster"])
def test_a_stage_that_replaces_descriptor_3_is_cut_off_as_on_a_node(
    start: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A node's worker has its protocol on fds 3 and 4, a local one forked from the zygote
    # had it on 6 and 7: a stage pointing fds 0 to 3 at /dev/null passed locally and
    # failed on a master (probes DQ F8, DR F4).
    options: dict[str, Any] = {"mode": "local"}
    if start == "cluster":
        request.getfixturevalue("cluster_env")
        options = {}
    elif start == "interpreter":
        monkeypatch.setenv("DISCODSL_NO_FORKSERVER", "1")
    run = death_jobs.replacing_low.submit(["raw://x"], progress=False, **options)
    with pytest.raises(TaskFailed) as caught:
        run.wait(timeout=120)
    assert "closed its connection to the runner" in str(caught.value), str(caught.value)


@pytest.mark.usefixtures("worker_start")
def test_a_worker_ignores_sighup_as_a_disco_nodes_does() -> None:
    # A Disco node's workers inherit SIGHUP (and SIGFPE) ignored from Erlang; a local one
    # was killed by it, failing the job that passes on a master (probe DK F8).
    results = death_jobs.hanging_up.run(["raw://x"], mode="local", progress=False)
    assert list(results) == [("x", 1)]


def test_a_stages_own_exit_76_is_retried_and_told_as_its_exit() -> None:
    # Taken for a worker that found its channel closed: not retried, told so (DJ F3).
    run = death_jobs.exiting_76.submit(["raw://x"], mode="local", progress=False)
    with pytest.raises(TaskFailed) as caught:
        run.wait(timeout=120)
    said = str(caught.value)
    assert "after 2 attempts" in said and "ended the process with os._exit(76) or sys" in said
    assert "closed its connection" not in said, said  # known not to be (DL F1)
    from discodsl.runners.failures import exit_meaning

    assert exit_meaning(76).endswith("or the stage called sys.exit(76)")  # a master's: unknown


def test_a_stage_that_closes_the_workers_descriptors_then_exits_0_is_told_exit_code_0() -> None:
    # Sending what it printed over the closed descriptor raised an OSError that replaced its
    # SystemExit(0): "exit code 1 ... sys.exit(1)" (probe CM F16, a regression).
    with pytest.raises(TaskFailed) as caught:
        death_jobs.cut_off_exiting.run(inputs=["raw://x"], mode="local", progress=False)
    assert "exit code 0" in str(caught.value), str(caught.value)


@pytest.mark.parametrize("mode", ["local", "cluster"])
def test_the_words_a_stage_gives_sys_exit_are_told(
    mode: str, request: pytest.FixtureRequest
) -> None:
    # Inline quoted them; a worker lost them, and told "sys.exit(1)" (probe CM F17): they are
    # printed, as Python prints them, with what the stage printed before.
    if mode == "cluster":
        request.getfixturevalue("cluster_env")
    run = death_jobs.exiting_with_words.submit(inputs=["raw://x"], mode=mode, progress=False)
    with pytest.raises(TaskFailed, match="exit code 1") as failed:
        run.wait(timeout=120)
    assert "or sys.exit('words'), whose words end what it printed" in str(failed.value)
    said = [event[2] for event in run.events()]
    assert any("partial work done" in text for text in said), said
    assert any("fatal: config missing" in text for text in said), said
