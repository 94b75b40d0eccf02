"""``discodsl run`` in a real process, its stdout a pipe: the records alone go there
(what stage code prints, even at the file descriptor level, goes to stderr), and a
reader that leaves early (``| head``) ends the command quietly, leaving no worker behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from discodsl.client import Master

JOB_MODULE = """
import os
from discodsl import job, map, reduce


@map
def words(line):
    print("STAGEPRINT", line)
    os.write(1, b"FDPRINT\\n")
    for word in line.split():
        yield word, 1


@reduce
def total(word, counts):
    yield word, sum(counts)


@job(partitions=2)
def wc():
    return [words, total]


@map
def split(line):
    for word in line.split():
        yield word, 1


@job(partitions=2)
def quiet():
    return [split, total]


@map
def stops(line):
    breakpoint()
    yield line, 1


@job
def debugged():
    return [stops]
"""

TIMEOUT = 120


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory holding ``cli_output_job.py``, with a ``tmp`` for the runs' job homes."""
    (tmp_path / "cli_output_job.py").write_text(JOB_MODULE)
    (tmp_path / "tmp").mkdir()
    return tmp_path


def discodsl(*argv: str) -> list[str]:
    """The command line of ``discodsl argv``."""
    return [sys.executable, "-m", "discodsl", *argv]


def environment(workdir: Path) -> dict[str, str]:
    """This environment, with job homes under ``workdir/tmp``."""
    return {**os.environ, "TMPDIR": str(workdir / "tmp")}


def completed(
    workdir: Path, command: list[str] | str, **changes: Any
) -> subprocess.CompletedProcess[Any]:
    """``command`` (its argv, or a shell line) run to its end in ``workdir``, with job homes
    there, its output caught as text; ``changes`` to those options (``env``: added)."""
    env = {**environment(workdir), **changes.pop("env", {})}
    options = {"capture_output": True, "text": True, "timeout": TIMEOUT, **changes}
    return subprocess.run(command, shell=isinstance(command, str), cwd=workdir, env=env, **options)


@pytest.mark.parametrize("mode", ["--inline", "--local"])
def test_stdout_holds_the_records_and_stage_output_goes_to_stderr(workdir: Path, mode: str) -> None:
    (workdir / "in.txt").write_text("a b c\na a\n")
    done = completed(workdir, discodsl("run", "cli_output_job.py:wc", "in.txt", mode, "--json"))
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ['["a", 3]', '["b", 1]', '["c", 1]']
    assert "STAGEPRINT a b c" in done.stderr and "FDPRINT" in done.stderr


def test_pdb_talks_on_stderr_inline_and_stdout_keeps_the_records(workdir: Path) -> None:
    (workdir / "in.txt").write_text("x\n")
    done = completed(
        workdir,
        discodsl("run", "cli_output_job.py:debugged", "in.txt", "--inline"),
        env={"PYTHONBREAKPOINT": "pdb.set_trace"},
        input="p line\nc\n",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "x\t1\n"
    assert "(Pdb)" in done.stderr and "'x'" in done.stderr  # the prompt, and `p line`


def _workers_under(root: Path) -> list[int]:
    """Live processes whose working directory is under ``root`` (workers run in job homes)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "cwd").startswith(str(root)):
                stat = (entry / "stat").read_text()
                if stat.rpartition(")")[2].split()[0] != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("mode", ["--inline", "--local"])
def test_a_reader_that_leaves_early_ends_the_command_quietly(workdir: Path, mode: str) -> None:
    """``discodsl run ... | head -1``: no traceback, the status of a process killed by
    SIGPIPE (128 + 13), and no worker left running."""
    (workdir / "in.txt").write_text("".join(f"word{i} other{i}\n" for i in range(40_000)))
    command = discodsl("run", "cli_output_job.py:quiet", "in.txt", mode)
    with (
        (workdir / "stderr").open("w+") as stderr,
        subprocess.Popen(
            command, cwd=workdir, env=environment(workdir), stdout=subprocess.PIPE, stderr=stderr
        ) as process,
    ):
        assert process.stdout is not None
        assert b"\t" in process.stdout.readline()
        process.stdout.close()  # as head does after its line
        status = process.wait(timeout=TIMEOUT)
    errors = (workdir / "stderr").read_text()
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors
    assert status == 128 + signal.SIGPIPE
    deadline = time.monotonic() + 10
    while _workers_under(workdir / "tmp") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _workers_under(workdir / "tmp") == []


@pytest.mark.parametrize("name", ["-", "/dev/stdout"])
def test_a_jobpack_written_to_a_reader_that_leaves_ends_the_command_quietly(
    workdir: Path, name: str
) -> None:
    """``discodsl jobpack build ... -o - | head -c 4``: as ``run``'s, where it said
    "error: cannot write -: Broken pipe" and ended with 1."""
    command = discodsl("jobpack", "build", "cli_output_job.py:quiet", "raw://x", "-o", name)
    with subprocess.Popen(
        command,
        cwd=workdir,
        env=environment(workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # before a byte is read: the first write fails
        errors = process.stderr.read().decode()
        status = process.wait(timeout=TIMEOUT)
    assert errors == ""
    assert status == 128 + signal.SIGPIPE


NAPPING = """
import time
from discodsl import job, map

@map
def naps(line):
    open({mark!r}, "w").close()
    time.sleep(60)
    yield line, 1

@job
def napping():
    return [naps]
"""


def _sigint_as_at_a_terminal() -> None:
    """In the child, before it runs: SIGINT as a terminal leaves it, whatever the suite has
    (a shell starts a background job with SIGINT ignored, and Python keeps that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("where", ["--local", "--master"])
@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_ctrl_c_ends_the_command_saying_only_what_the_command_line_needs(
    workdir: Path, where: str, sent: signal.Signals, request: pytest.FixtureRequest
) -> None:
    """Ctrl-C in ``discodsl run``: status 130, and no advice for programs (it said to
    wait() for the run before the program ends); on a cluster, how to kill the job. SIGTERM
    ends it the same way, with 143 (it left the -o file's temporary file, the workers of a
    local run to be reaped by the next, and a cluster job without a word)."""
    mark = workdir / "napping"
    (workdir / "napping_job.py").write_text(NAPPING.format(mark=str(mark)))
    (workdir / "in.txt").write_text("a\n")
    place = [where, request.getfixturevalue("cluster_env")] if where == "--master" else [where]
    output = ["-o", "out.tsv"] if sent == signal.SIGTERM else []
    command = discodsl("run", "napping_job.py:napping", "in.txt", *place, *output)
    with subprocess.Popen(
        command,
        cwd=workdir,
        env=environment(workdir),
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_as_at_a_terminal,
    ) as process:
        deadline = time.monotonic() + TIMEOUT
        while not mark.exists():
            assert process.poll() is None and time.monotonic() < deadline, "no task started"
            time.sleep(0.05)
        process.send_signal(sent)
        _, errors = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 128 + sent, errors
    assert "wait() for a run" not in errors and "Traceback" not in errors, errors
    assert sorted(path.name for path in workdir.iterdir() if "out.tsv" in path.name) == []
    assert _workers_under(workdir / "tmp") == []
    if where == "--master":
        jobname = re.search(r"stop it with `discodsl --master \S+ kill (\S+)`", errors)
        assert jobname is not None, errors
        Master(request.getfixturevalue("cluster_env")).kill(jobname.group(1))


@pytest.mark.parametrize(
    ("stdout", "says"),
    [
        (
            "closed",
            "standard output is closed: redirect it (> FILE, or > /dev/null to drop what the "
            "command prints), or give -o FILE",
        ),
        (
            "/dev/full",
            "cannot write to standard output: No space left on device; send it to a file or "
            "another device instead (discodsl run: -o FILE)",
        ),
    ],
)
def test_results_that_cannot_be_written_to_stdout_end_in_one_line(
    workdir: Path, stdout: str, says: str
) -> None:
    (workdir / "in.txt").write_text("a b c\na a\n")
    command = " ".join(discodsl("run", "cli_output_job.py:quiet", "in.txt", "--inline"))
    redirect = ">&-" if stdout == "closed" else "> /dev/full"
    done = completed(
        workdir, f"exec {command} {redirect}", capture_output=False, stderr=subprocess.PIPE
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"discodsl: error: {says}"], done.stderr


@pytest.mark.parametrize("into", ["appended", "piped"])
def test_output_to_dev_stdout_goes_where_stdout_goes(workdir: Path, into: str) -> None:
    """``-o /dev/stdout >> log`` replaced the log with the results (the name was resolved
    to the log's file and a new file renamed over it), and into a pipe it failed."""
    (workdir / "in.txt").write_text("a b a\n")
    (workdir / "log.txt").write_text("precious line\n")
    command = " ".join(discodsl("run", "cli_output_job.py:quiet", "in.txt", "--inline"))
    shell = f"{command} -o /dev/stdout " + (">> log.txt" if into == "appended" else "| cat")
    done = completed(workdir, shell)
    assert done.returncode == 0, done.stderr
    records = done.stdout if into == "piped" else (workdir / "log.txt").read_text()
    if into == "appended":
        assert records.startswith("precious line\n")
    assert sorted(records.splitlines()[-2:]) == ["a\t2", "b\t1"]


def test_records_a_stdout_cannot_encode_are_escaped_not_cut_short(workdir: Path) -> None:
    """Under an encoding that cannot write every record (latin-1 here), the records before
    one that it cannot came, then a traceback, and the rest never did."""
    (workdir / "in.txt").write_text("日本 b 日本\nzählen b\n")
    done = completed(
        workdir,
        discodsl("run", "cli_output_job.py:quiet", "in.txt", "--inline"),
        env={"PYTHONIOENCODING": "latin-1"},
        text=False,
    )
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.decode("latin-1").splitlines()) == {
        "b\t2",
        "z\xe4hlen\t1",
        "\\u65e5\\u672c\t2",
    }


def test_with_stderr_closed_an_error_is_not_written_among_the_records(workdir: Path) -> None:
    """``2>&-``: print() to a None stderr writes to stdout, so the error and its hint went
    into the records' file."""
    command = " ".join(discodsl("run", "cli_output_job.py:quiet", "missing.txt", "--inline"))
    done = completed(workdir, f"exec {command} 2>&-")
    assert done.returncode == 1
    assert done.stdout == ""
