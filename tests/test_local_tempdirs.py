"""A driver's temporary directories do not outlive it for long, in every mode.

Each is named ``discodsl-<kind>-<pid>-n<namespace>-<random>`` (``node``: a local node's,
``inline``: an inline run's, ``preflight``: a cluster pre-flight's): a later
run of any mode removes those of a process that has ended (killed, it had no
chance to). A live process's directories are never removed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from discodsl import places
from discodsl.errors import JobError, SettingsError
from discodsl.worker import owners
from tests import jobs

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("node", "inline", "preflight")

# Runs death_jobs.runs_forever (its stage notes its pid in PIDS, then waits) in MODE.
DRIVER = """
import sys
from tests import death_jobs

mode, pids = sys.argv[1:]
death_jobs.runs_forever.run(
    inputs=["raw://a"], mode=mode, progress=False, params={"pids": pids, "seconds": 120}
)
"""

# One short run in MODE, after which its process ends normally.
LATER = """
import sys
from tests import jobs

print(sorted(jobs.wordcount.run(["raw://a b a"], mode=sys.argv[1], progress=False)))
"""


def ended_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=60)
    return process.pid


def ours(temp: Path) -> list[str]:
    return sorted(p.name for p in temp.iterdir() if p.name.startswith("discodsl-"))


def python(script: str, *args: str, temp: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(temp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(check: object, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.fixture
def temp(tmp_path: Path) -> Path:
    path = tmp_path / "tmp"
    path.mkdir()
    return path


def test_the_directories_of_ended_processes_are_removed_and_no_others(temp: Path) -> None:
    dead, live = ended_pid(), os.getpid()
    for kind in KINDS:
        (temp / f"discodsl-{kind}-{dead}-abc" / "data").mkdir(parents=True)
        (temp / f"discodsl-{kind}-{live}-abc").mkdir()
    kept = ["discodsl-inline-abc123", "discodsl-other-1-abc", f"elsewhere-node-{dead}-abc"]
    # no process's: os.kill overflowed on the first, and int() refused the second
    kept += ["discodsl-inline-99999999999999999999-x", "discodsl-node-\u00b2-x"]
    kept += [f"discodsl-node-{owners.PID_MAX + 1}-x", "discodsl-node-0-x"]
    for name in kept:
        (temp / name).mkdir()
    places.remove_dead_dirs(str(temp))
    alive = [f"discodsl-{kind}-{live}-abc" for kind in KINDS]
    assert sorted(p.name for p in temp.iterdir()) == sorted([*alive, *kept])


@pytest.mark.skipif(places.pid_namespace() is None, reason="no PID namespaces here")
def test_runs_sweep_a_temporary_directory_at_their_processs_first_and_then_now_and_then(
    temp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each run read every process directory there: a program keeping the results of
    # thousands of runs made each next one slower (probe EE S2: 10x at 4,000).
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    swept: list[str] = []
    monkeypatch.setattr(places, "remove_dead_dirs", swept.append)
    kept = [jobs.wordcount.run(["raw://a"], mode="inline", progress=False) for _ in range(3)]
    assert swept == [str(temp)]
    monkeypatch.setitem(places._SWEPT, str(temp), time.monotonic() - places.SWEEP_EVERY)
    kept.append(jobs.wordcount.run(["raw://a"], mode="inline", progress=False))
    assert swept == [str(temp)] * 2
    assert [dict(results) for results in kept] == [{"a": 1}] * 4


def test_a_forked_childs_first_run_sweeps(temp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # It took its parent's last sweep for its own: what a program killed since left stayed
    # (probe EH F3).
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    jobs.wordcount.run(["raw://a"], mode="inline", progress=False)  # the parent's sweep
    left = temp / f"discodsl-inline-{ended_pid()}-left"
    left.mkdir()
    pid = os.fork()
    if pid == 0:
        try:
            jobs.wordcount.run(["raw://a"], mode="inline", progress=False)
        finally:
            os._exit(0 if not left.exists() else 1)
    assert os.waitpid(pid, 0)[1] == 0


def test_what_is_left_for_the_end_lets_go_of_what_ran_since() -> None:
    for _ in range(300):
        jobs.wordcount.run(["raw://a"], mode="inline", progress=False).close()
    assert len(places._AT_THE_END) < 100


def _flags(path: Path) -> int | None:
    """The inode flags of ``path`` (FS_IOC_GETFLAGS), None where its file system has none."""
    import fcntl
    import struct

    if places._FLAGS is None:
        return None
    descriptor = os.open(path, os.O_RDONLY)
    try:
        return int(struct.unpack("i", fcntl.ioctl(descriptor, places._FLAGS[0], b"\0" * 4))[0])
    except OSError:
        return None
    finally:
        os.close(descriptor)


def test_a_local_jobs_home_is_placed_apart_from_the_runs_before(tmp_path: Path) -> None:
    # ext4 without a journal (this machine's) scanned past every inode the runs before had
    # freed in the last half minute for each file a task made: 0.3 to 0.6 ms a file, most
    # of what a task cost. A job's home is made in a directory flagged as the top of
    # directory trees (chattr +T), so that ext4 places it, and its files, by its own name.
    from discodsl.runners import node

    home = tmp_path / "c7" / "wordcount@704:aa74c:83d3"
    node._make_home(str(home))
    assert home.is_dir()
    with pytest.raises(FileExistsError):
        node._make_home(str(home))
    flags = _flags(tmp_path)
    if flags is not None:  # a file system with inode flags (ext4, this machine's)
        assert _flags(home.parent) == flags | places._TOPDIR
        assert _flags(home) == flags  # the flag is on its parent alone
    assert places.spread(str(tmp_path / "missing")) is None  # a hint: nothing to say


def test_the_directories_of_another_pid_namespace_are_left(
    temp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Containers sharing a temporary directory: a pid of another PID namespace says
    nothing here (the process may be running there), so its directories stay while that
    namespace has processes, and those of an ended process of ours go. A run in one
    container removed a live run's files."""
    dead, ours = ended_pid(), places.pid_namespace()
    assert ours is not None
    (temp / f"discodsl-node-{dead}-n{ours}-abc").mkdir()
    (temp / f"discodsl-node-{dead}-n{ours + 1}-abc").mkdir()
    monkeypatch.setattr(owners, "_namespaces", lambda: {ours, ours + 1})
    places.remove_dead_dirs(str(temp))
    assert [p.name for p in temp.iterdir()] == [f"discodsl-node-{dead}-n{ours + 1}-abc"]
    monkeypatch.setattr(owners, "_namespaces", lambda: {ours})  # the container ended
    places.remove_dead_dirs(str(temp))
    assert list(temp.iterdir()) == []
    made = Path(places.process_dir("node"))
    assert made.name.startswith(f"discodsl-node-{os.getpid()}-n{ours}-")
    made.rmdir()


def test_a_new_directory_names_its_process(temp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    path = Path(places.process_dir("inline"))
    assert path.parent == temp and path.name.startswith(f"discodsl-inline-{os.getpid()}-")


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_a_temporary_directory_removed_under_a_long_lived_process_is_made_again(
    temp: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    # Python found it once; inline then failed on a bare FileNotFoundError.
    gone = temp / "cleaned"
    gone.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(gone))
    gone.rmdir()
    assert sorted(jobs.wordcount.run(["raw://a b a"], mode=mode)) == [("a", 2), ("b", 1)]


def test_closed_results_are_named_after_the_temporary_directory_moved(
    temp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The node stays where the process's first local run made it; a program that set
    # tempfile.tempdir since had closed results' files taken as any missing file, and the
    # job that read them failed on it.
    first, later = temp / "first", temp / "later"
    first.mkdir()
    later.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(first))
    dropped = jobs.wordcount.run(["raw://x y x"], mode="local", progress=False)
    urls = dropped.record_urls()
    dropped.close()
    monkeypatch.setattr("tempfile.tempdir", str(later))
    with pytest.raises(JobError, match="closed or garbage-collected, which removed it"):
        jobs.histogram.submit(urls, mode="local", progress=False)


@pytest.mark.usefixtures("cluster_env")
@pytest.mark.parametrize(("mode", "kind"), [("inline", "inline"), ("cluster", "preflight")])
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_driver_killed_mid_run_leaves_nothing_a_later_run_keeps(
    temp: Path, tmp_path: Path, mode: str, kind: str, signum: int
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    driver = python(DRIVER, mode, str(pids), temp=temp)
    try:
        wait_for(lambda: list(pids.iterdir()) or driver.poll() is not None)
        assert driver.poll() is None, driver.communicate()
        assert ours(temp) and all(name.startswith(f"discodsl-{kind}-") for name in ours(temp))
        driver.send_signal(signum)
        assert driver.wait(timeout=60) == -signum
    finally:
        driver.kill()
        driver.communicate(timeout=60)
    assert [name.split("-")[2] for name in ours(temp)] == [str(driver.pid)]
    later = python(LATER, "inline", temp=temp)
    _, err = later.communicate(timeout=120)
    assert later.returncode == 0, err
    assert ours(temp) == []


@pytest.mark.usefixtures("cluster_env")
@pytest.mark.parametrize("mode", ["inline", "local", "cluster"])
def test_a_later_run_of_any_mode_removes_the_directories_of_ended_processes(
    temp: Path, mode: str
) -> None:
    dead = ended_pid()
    left = [temp / f"discodsl-{kind}-{dead}-left" for kind in KINDS]
    for path in left:
        (path / "data").mkdir(parents=True)
    later = python(LATER, mode, temp=temp)
    out, err = later.communicate(timeout=120)
    assert later.returncode == 0, err
    assert out.strip() == "[('a', 2), ('b', 1)]"
    assert not any(path.exists() for path in left)


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_a_run_an_atexit_hook_starts_leaves_no_directory(tmp_path: Path, mode: str) -> None:
    """A hook registered after `import discodsl` (a final report, say) runs before the
    cleanups a program's first run registers (atexit is last in, first out): the run it
    started left its directories."""
    temp = tmp_path / "temp"
    temp.mkdir()
    script = tmp_path / "report_at_exit.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import atexit
            from tests import jobs

            def final_report():
                print(sorted(jobs.wordcount.run(["raw://b a b"], mode={mode!r})))

            atexit.register(final_report)
            print(sorted(jobs.wordcount.run(["raw://a"], mode={mode!r})))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(ROOT)},
    )
    if sys.version_info[:2] == (3, 12) and mode == "local" and "JobError" in done.stderr:
        # Python 3.12 starts no thread at exit: the hook's run is refused, saying so.
        assert done.stdout.splitlines() == ["[('a', 1)]"], done.stderr
        assert "cannot run on the local runner now: it needs threads" in done.stderr
    else:
        assert done.stdout.splitlines() == ["[('a', 1)]", "[('a', 1), ('b', 2)]"], done.stderr
    assert list(temp.iterdir()) == []


def test_the_first_local_runs_of_threads_at_once_share_one_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each thread in the first call made a node directory of its own, whose runs' indexes
    # a job could not then read as its inputs (probe DB F8).
    import threading

    from discodsl.runners import layout

    made: list[str] = []

    def slow(kind: str) -> str:
        time.sleep(0.05)  # every thread is in the first call before it returns
        made.append(kind)
        return f"/nonexistent/{kind}-{len(made)}"

    monkeypatch.setattr(places, "process_dir", slow)
    monkeypatch.setattr(layout, "_NODE", [])  # none made yet
    barrier, roots = threading.Barrier(8), []
    threads = [
        threading.Thread(target=lambda: (barrier.wait(), roots.append(layout.node_root())))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert roots == ["/nonexistent/node-1"] * 8 and made == ["node"]


def test_a_signal_handler_running_a_job_as_its_thread_makes_the_node_gets_that_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The node's lock, taken again by a handler's run in the thread holding it, hung the
    # program for good (a regression of the lock that DB F8's fix added).
    from discodsl.runners import layout

    made: list[str] = []

    def interrupted(kind: str) -> str:
        made.append(kind)
        if len(made) == 1:  # a handler's run, as the first is made
            inner.append(layout.node_root())
        return f"/nonexistent/{kind}-{len(made)}"

    inner: list[str] = []
    monkeypatch.setattr(places, "process_dir", interrupted)
    monkeypatch.setattr(layout, "_NODE", [])
    assert layout.node_root() == inner[0] == "/nonexistent/node-2"  # one node for both


def test_a_temporary_directory_whose_name_is_not_utf8_is_named_before_a_local_run(
    temp: Path,
) -> None:
    # Every local run failed "cannot read the job's env from .../caf\udce9/...": the path
    # went to the worker as JSON, which holds text, with its byte escaped (probe DT F2).
    # Inline runs, which tell no worker a path, work there.
    latin = temp / os.fsdecode(b"caf\xe9")
    latin.mkdir()
    local = python(LATER, "local", temp=latin)
    _, err = local.communicate(timeout=120)
    assert local.returncode == 1
    assert err.strip().splitlines()[-1] == (
        f"discodsl.errors.SettingsError: the temporary directory {str(latin)!r} (TMPDIR) is "
        "not UTF-8 text, and the local runner tells its workers their files' paths in JSON, "
        "as a Disco master does, which holds only text: point TMPDIR at a directory whose "
        "name is UTF-8"
    )
    inline = python(LATER, "inline", temp=latin)
    assert inline.communicate(timeout=120)[0] == "[('a', 2), ('b', 1)]\n"


NO_HOME = """
import os, pwd, sys

def no_entry(uid):
    raise KeyError(f"getpwuid(): uid not found: {uid}")

pwd.getpwuid = no_entry  # a container's user with no passwd entry, and no HOME
from tests import jobs

for mode in sys.argv[1:]:
    try:
        print(mode, sorted(jobs.wordcount.run(["raw://a b a"], mode=mode, progress=False)))
    except Exception as exc:
        print(mode, type(exc).__name__, exc)
"""


def test_with_no_home_runs_that_need_none_work_and_the_others_say_what_to_set(
    tmp_path: Path,
) -> None:
    # Every run, inline too, failed "RuntimeError: Could not determine home directory.";
    # past that, a directory named "~" was made in the current one (probe DT F5).
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME")}
    env.pop("DISCODSL_RUNS_DIR", None)
    env.pop("DISCODSL_CACHE_DIR", None)
    work = tmp_path / "work"
    work.mkdir()

    def run(*modes: str, **extra: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", NO_HOME, *modes],
            env={**env, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path), **extra},
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.stdout.splitlines()

    said = run("inline", "local")
    assert said[0] == "inline [('a', 2), ('b', 1)]", said
    assert said[1] == (
        "local SettingsError discodsl keeps its local runs' registry, its built jobhomes and "
        "the cache of cache=True under ~/.cache/discodsl, and this process has no home "
        "directory (HOME is not set, and the user has no entry in the password database): set "
        "HOME, or XDG_CACHE_HOME, to a directory this user can write (or DISCODSL_RUNS_DIR and "
        "DISCODSL_CACHE_DIR)"
    ), said
    cache = tmp_path / "cache"
    assert run("local", XDG_CACHE_HOME=str(cache))[0] == "local [('a', 2), ('b', 1)]"
    assert (cache / "discodsl" / "runs").is_dir()
    assert list(work.iterdir()) == []  # no "~" made here


def test_an_empty_home_is_taken_as_none_not_as_the_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # HOME="" made ~ the root for Python's expanduser: the cache went to /.cache (DW S1).
    import pwd

    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "")
    entry = pwd.getpwuid(os.getuid()).pw_dir
    assert places.cache_home() == Path(entry, ".cache", "discodsl")

    def no_entry(uid: int) -> None:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(places.SettingsError, match=r"HOME is empty, and the user has no entry"):
        places.cache_home()


def test_a_relative_home_is_made_absolute_and_a_relative_xdg_cache_home_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A place that moved with the working directory would lose the runs' registry.
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", "me")
    assert places.cache_home() == tmp_path / "me" / ".cache" / "discodsl"
    monkeypatch.setenv("XDG_CACHE_HOME", "cache")  # the XDG spec: a relative one is ignored
    assert places.cache_home() == tmp_path / "me" / ".cache" / "discodsl"


UMASK = """
import os, sys
from tests import jobs

os.umask(int(sys.argv[1], 8))
if sys.argv[2:] == ["as a user"]:  # not root, whose rights no mode takes
    os.geteuid = lambda: 1000
for mode in ("inline", "local"):
    try:
        print(mode, sorted(jobs.wordcount.run(["raw://a b a"], mode=mode, progress=False)))
    except Exception as exc:
        print(mode, type(exc).__name__, exc)
"""


@pytest.mark.parametrize("umask", ["0277", "0477", "0177", "0700"])
def test_a_umask_that_takes_the_owners_own_rights_is_refused_by_name(
    tmp_path: Path, umask: str
) -> None:
    # A umask of 0277 failed every run for a user other than root, "could not lay out
    # job ... (Permission denied): set TMPDIR to a directory this program may write", of a
    # TMPDIR it could write (probe DT F12); root, who passes every check, ran on.
    done = subprocess.run(
        [sys.executable, "-c", UMASK, umask, "as a user"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = done.stdout.splitlines()
    for mode, line in zip(("inline", "local"), said, strict=True):
        assert line == (
            f"{mode} SettingsError the umask is {umask}, which takes away this user's own "
            "rights on the files and directories it makes, and discodsl's runs write files "
            "and directories of their own and read them back: set a umask that leaves the "
            "owner's rights (umask 022, or 077)"
        ), said
    assert list(tmp_path.iterdir()) == []


def test_roots_runs_go_whatever_the_umask_and_others_are_told(tmp_path: Path) -> None:
    # Refused from root too, whose runs went (a cluster's as well; probe EB F5).
    done = subprocess.run(
        [sys.executable, "-c", UMASK, "0277"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = done.stdout.splitlines()
    if os.geteuid() == 0:
        assert said == ["inline [('a', 2), ('b', 1)]", "local [('a', 2), ('b', 1)]"], said
    else:  # this user's own, real refusal
        assert len(said) == 2 and all("SettingsError the umask is 0277" in s for s in said)


def test_a_umask_that_leaves_the_owners_rights_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", UMASK, "0077", "as a user"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.splitlines() == [
        "inline [('a', 2), ('b', 1)]",
        "local [('a', 2), ('b', 1)]",
    ], done.stderr


EMBEDDED = """
import os, sys
from tests import jobs

sys.executable = sys.argv[1]  # as an embedding program (mod_wsgi, uWSGI) has it
try:
    print(sorted(jobs.wordcount.run(["raw://a b a"], mode="local", progress=False)))
except Exception as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.parametrize("executable", ["/usr/sbin/apache2-not-here", "uwsgi", "httpd", ""])
def test_a_program_embedding_python_runs_local_workers_on_a_python(
    tmp_path: Path, executable: str
) -> None:
    # Local workers were started with sys.executable as it was: a host's binary, which
    # failed every task, blaming the node's PATH (probe EA F7).
    if executable in ("uwsgi", "httpd"):  # the host's binary, there: no Python
        host = tmp_path / "bin" / executable
        host.parent.mkdir()
        host.write_text("#!/bin/sh\nexit 1\n")
        host.chmod(0o755)
        executable = str(host)
    done = subprocess.run(
        [sys.executable, "-c", EMBEDDED, executable],
        env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.splitlines() == ["[('a', 2), ('b', 1)]"], done.stdout + done.stderr


def test_a_python_of_another_name_runs_its_local_workers(tmp_path: Path) -> None:
    # Only a file named python* or pypy* was taken for one: a renamed or linked interpreter
    # (GraalPy's graalpy, a venv's link) had its workers run the venv's base Python, or
    # none (probe EC F1).
    interp = tmp_path / "interp"
    interp.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "called"}\nexec {sys.executable} "$@"\n')
    interp.chmod(0o755)
    done = subprocess.run(
        [sys.executable, "-c", EMBEDDED, str(interp)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.splitlines() == ["[('a', 2), ('b', 1)]"], done.stdout + done.stderr
    assert "discodsl.worker" in (tmp_path / "called").read_text()


def test_discodsl_python_in_the_programs_environment_names_the_workers_python(
    tmp_path: Path,
) -> None:
    # It was overridden by sys.executable: only the job's env= could name one.
    shim = tmp_path / "python-shim"
    shim.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "called"}\nexec {sys.executable} "$@"\n')
    shim.chmod(0o755)
    done = subprocess.run(
        [sys.executable, "-c", EMBEDDED, sys.executable],
        env={**os.environ, "PYTHONPATH": str(ROOT), "DISCODSL_PYTHON": str(shim)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.splitlines() == ["[('a', 2), ('b', 1)]"], done.stdout + done.stderr
    assert "discodsl.worker" in (tmp_path / "called").read_text()


@pytest.mark.parametrize("named", ["relative/python3", "/nonexistent/python3", "/dev/null"])
def test_a_discodsl_python_that_names_no_python_is_named_before_the_run(
    tmp_path: Path, named: str
) -> None:
    # Each failed every task, telling of the node's PATH and the job's env=, naming
    # neither the value nor where it was set (probe EB F4).
    done = subprocess.run(
        [sys.executable, "-c", EMBEDDED, sys.executable],
        env={**os.environ, "PYTHONPATH": str(ROOT), "DISCODSL_PYTHON": named},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.stdout.splitlines() == [
        f"SettingsError DISCODSL_PYTHON={named!r}, in this program's environment, names no "
        "program this machine can run (an absolute path, or a name on the PATH): point it at "
        f"Python {sys.version_info[0]}.{sys.version_info[1]}, or unset it to run local workers "
        "on this program's Python"
    ], done.stdout + done.stderr


def test_a_discodsl_python_of_the_jobs_env_that_names_no_python_is_named_before_the_run() -> None:
    # Its tasks failed, telling of the node's PATH, where Python was (probe ED F7).
    with pytest.raises(SettingsError) as caught:
        jobs.wordcount.run(
            ["raw://a"], mode="local", env={"DISCODSL_PYTHON": "/opt/none/bin/python3"}
        )
    assert str(caught.value).startswith(
        "DISCODSL_PYTHON='/opt/none/bin/python3', in the job's env=, names no program"
    )
    # An empty one is none, as the workers' launcher takes it (probe EE S3).
    none = {"DISCODSL_PYTHON": ""}
    assert dict(jobs.wordcount.run(["raw://a"], mode="local", env=none, progress=False)) == {"a": 1}
