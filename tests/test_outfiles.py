"""``-o FILE`` (discodsl.outfiles): a file written whole or not at all, never mixed with
another command's output, and a name that stands for a stream written as it is open."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from discodsl import outfiles


def test_two_writers_of_one_name_at_once_each_write_a_file_of_their_own(tmp_path: Path) -> None:
    """Overlapping runs (two cron jobs) wrote one FILE.partial between them: the file
    held both runs' records, or one run's while the other failed."""
    target = tmp_path / "same.tsv"
    with outfiles.written(str(target)) as first:
        first.write("A\n" * 1000)
        with outfiles.written(str(target)) as second:
            second.write("B\n" * 1000)
        assert target.read_text() == "B\n" * 1000  # the second finished first: it is there
        first.write("A\n" * 1000)
    assert target.read_text() == "A\n" * 2000  # the last to finish wins, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.tsv"]


def test_a_failure_leaves_the_file_as_it_was_and_nothing_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "out.tsv"
    target.write_text("OLD\n")
    with pytest.raises(RuntimeError), outfiles.written(str(target)) as out:
        out.write("NEW\n")
        raise RuntimeError("the run failed")
    assert target.read_text() == "OLD\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tsv"]


def test_a_file_keeps_its_permissions_and_a_new_one_gets_the_umasks(tmp_path: Path) -> None:
    private = tmp_path / "secret.tsv"
    private.write_text("OLD\n")
    private.chmod(0o600)
    with outfiles.written(str(private)) as out:
        out.write("NEW\n")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and private.read_text() == "NEW\n"
    umask = os.umask(0o027)
    try:
        with outfiles.written(str(tmp_path / "new.tsv")) as out:
            out.write("x\n")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.tsv").stat().st_mode) == 0o640


@pytest.mark.parametrize(
    ("name", "number"),
    [("/dev/stdout", 1), ("/dev/stderr", 2), ("/dev/fd/7", 7), ("/proc/self/fd/12", 12)],
)
def test_names_of_this_processs_descriptors(name: str, number: int) -> None:
    assert outfiles.descriptor(name) == number


@pytest.mark.parametrize("name", ["/dev/null", "stdout", "/dev/stdout2", "/proc/1/fd/1"])
def test_other_names_are_no_descriptors(name: str) -> None:
    assert outfiles.descriptor(name) is None


WRITE = (
    "import sys; from discodsl import outfiles\n"
    "with outfiles.written(sys.argv[1]) as out: out.write('new line\\n')\n"
)


def test_a_descriptor_appended_to_keeps_what_it_held(tmp_path: Path) -> None:
    """`-o /dev/stdout >> log` resolved /dev/stdout to the log and renamed a new file over
    it: what the log held was lost."""
    log = tmp_path / "log.txt"
    log.write_text("precious line\n")
    with open(log, "a") as appended:
        subprocess.run(
            [sys.executable, "-c", WRITE, "/dev/stdout"], stdout=appended, check=True, timeout=60
        )
    assert log.read_text() == "precious line\nnew line\n"


def test_a_descriptor_that_is_a_pipe_is_written(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WRITE, "/dev/stdout"], capture_output=True, check=True, timeout=60
    )
    assert done.stdout == b"new line\n"


def test_a_fifo_is_written_as_it_is(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    try:
        with outfiles.written(str(fifo)) as out:
            out.write("through\n")
        assert reader.communicate(timeout=60)[0] == b"through\n"
    finally:
        reader.kill()
        reader.wait()
    assert fifo.is_fifo()


def _writer_holding(target: Path) -> subprocess.Popen[str]:
    """A process writing ``target`` (through its partial file), holding it until killed."""
    script = (
        "import sys, time\n"
        "from discodsl import outfiles\n"
        "with outfiles.written(sys.argv[1]) as out:\n"
        "    out.write('half'); out.flush(); print('writing', flush=True); time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline() == "writing\n"
    return process


def test_what_a_killed_writer_left_goes_when_the_name_is_written_again(tmp_path: Path) -> None:
    # A command killed (SIGKILL, the OOM killer) while writing -o FILE left its hidden
    # .FILE.*.partial beside FILE for good, whatever wrote FILE next.
    target = tmp_path / "out.tsv"
    killed, live = _writer_holding(target), _writer_holding(target)
    try:
        killed.kill()
        killed.wait(timeout=30)
        partials = sorted(p.name for p in tmp_path.iterdir())
        assert len(partials) == 2 and all(p.endswith(".partial") for p in partials)
        with outfiles.written(str(target)) as out:
            out.write("whole\n")
        left = sorted(p.name for p in tmp_path.iterdir())
        assert target.read_text() == "whole\n"
        assert len(left) == 2 and f".{live.pid}-" in "".join(left), left  # the live one's stays
    finally:
        live.kill()
        live.wait(timeout=30)


def test_a_live_writer_of_a_name_that_starts_alike_is_left_alone(tmp_path: Path) -> None:
    # Writing `stats` removed the file of a live command writing `stats.HOST.2024-12-07.tsv`:
    # "2024-" read as the mark of an ended process.
    import socket

    target = tmp_path / f"stats.{socket.gethostname()}.2024-12-07.tsv"
    live = _writer_holding(target)
    try:
        before = sorted(p.name for p in tmp_path.iterdir())
        with outfiles.written(str(tmp_path / "stats")) as out:
            out.write("x\n")
        after = sorted(p.name for p in tmp_path.iterdir() if p.name != "stats")
        assert after == before
    finally:
        live.kill()
        live.wait(timeout=30)
