"""The command line's standard streams: stdout for records and command output alone, what
cannot be written said in one line, and ``-o FILE`` written whole or not at all.

- :func:`notice`: a line of discodsl's own to the user, on stderr if there is one.
- :func:`prepare_streams`: text a stream cannot encode as backslash escapes; a closed
  stderr goes nowhere (print() to a None stderr writes to stdout, among the records).
- :func:`stdout_to_stderr`: while a job runs, what stage code prints goes to stderr, down
  to descriptor 1, so that stdout holds the records alone.
- :func:`output` and :func:`check_writable`: ``-o FILE`` (:mod:`discodsl.outfiles`) or
  stdout, whose write errors become a JobError saying so; :func:`reader_left` when stdout's
  reader left (``| head``), quietly, as ``cat`` would.

Not here: what a record looks like as text (:mod:`discodsl.recordtext`), the commands.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from discodsl import nonblocking, outfiles
from discodsl.errors import JobError

#: The exit status of a process killed by SIGPIPE (13), as a shell reports it.
READER_LEFT = 128 + 13


def prepare_streams() -> None:
    """Text stdout or stderr cannot encode (under PYTHONIOENCODING=latin-1, say) is written
    as backslash escapes: it ended the records with a traceback, the rest unwritten. With
    stderr closed (``2>&-``), what it would say goes nowhere (print() to a None stderr
    writes to stdout, among the records); the exit status still says it."""
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the process's life
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def reader_left() -> int:
    """Stdout's reader left (``discodsl run ... | head -1``): stop quietly, as ``cat``
    would."""
    abandon_stdout()
    return READER_LEFT


def abandon_stdout() -> None:
    """What stdout still holds goes to /dev/null, so that the interpreter's own flush at
    exit does not fail again."""
    descriptor = _fileno(sys.stdout)
    if descriptor is not None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, descriptor)
        os.close(devnull)


@contextlib.contextmanager
def writing_stdout() -> Iterator[None]:
    """Writing to stdout in the block: a JobError if it cannot be written (a full disk,
    an I/O error), saying so; a reader that left is left to :func:`main`."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        abandon_stdout()  # what it still holds is dropped
        raise JobError(
            f"cannot write to standard output: {exc.strerror or exc}; send it to a file "
            "or another device instead (discodsl run: -o FILE)"
        ) from exc


#: Held while a line goes to stderr: the threads showing what runs going at once printed
#: write a line each in turn (a text stream mixes those of two threads).
STDERR_LOCK = threading.RLock()

# Whether notices are kept quiet (the command line's --quiet): errors are still said.
QUIET = [False]


def notice(text: str) -> bool:
    """Tell the user ``text``, a line of discodsl's own, on stderr; nothing if the program
    has none (a service started with descriptor 2 closed: print() would write it to stdout,
    among the program's output), nor when the command line was told ``--quiet``. Whether
    it was not refused (see :func:`warn`)."""
    return warn(text) if not QUIET[0] else True


def warn(text: str) -> bool:
    """:func:`notice` of what ``--quiet`` must not hide (work left running, which only the
    user can stop). False where stderr refused it, whole or in part."""
    return write_line(text) == 0


def write_line(text: str) -> int:
    """Write ``text`` and a newline to stderr, at once: how many of its lines it did not
    take whole (all of them where it is closed, or a non-blocking one that took nothing
    for a while: :mod:`.nonblocking`)."""
    stream, lines = sys.stderr, text.count("\n") + 1
    if stream is None:
        return lines
    with STDERR_LOCK:  # runs in threads at once: a line of each, whole, not mixed
        return _write_line(stream, text, lines)


def _write_line(stream: IO[str], text: str, lines: int) -> int:
    cut = nonblocking.write_whole(stream, text + "\n")
    if cut is not None:
        return cut
    try:
        try:
            stream.write(text + "\n")
        except UnicodeEncodeError:  # a stream of a narrower encoding: the rest escaped
            encoding = getattr(stream, "encoding", None) or "ascii"
            stream.write(f"{text}\n".encode(encoding, "backslashreplace").decode(encoding))
        flush = getattr(stream, "flush", None)  # an app's stream to its logger may have none
        if flush is not None:
            flush()
    except (OSError, ValueError):  # closed since: nobody to tell
        return lines
    return 0


def say(*items: object, flush: bool = False) -> None:
    """``print`` to stdout, as a command's output: a JobError if it cannot be written (or
    is closed: print() would drop it without a word)."""
    if sys.stdout is None:
        raise JobError("standard output is closed: redirect it (> FILE)")
    with writing_stdout():
        print(*items, flush=flush)


def flush_stdout() -> None:
    if sys.stdout is not None:
        with writing_stdout():
            sys.stdout.flush()


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """While in the block, what is written to stdout goes to stderr: through ``sys.stdout``
    and, when that is file descriptor 1, through the descriptor (``os.write``, C code, child
    processes) too."""
    stdout = sys.stdout
    if stdout is not None:
        stdout.flush()
    if isinstance(stdout, io.TextIOWrapper) and _fileno(stdout) == 1:
        with _descriptor_1_to_stderr(stdout):
            yield
    else:  # not the process's stdout (a test's capture, a notebook): the object only
        with contextlib.redirect_stdout(sys.stderr):
            yield


@contextlib.contextmanager
def _descriptor_1_to_stderr(stdout: io.TextIOWrapper) -> Iterator[None]:
    """Descriptor 1 is stderr's while in the block, and ``stdout`` (its stream) flushes each
    line, so that what it prints takes its place among stderr's lines.

    ``sys.stdout`` stays the same object, so pdb (``breakpoint()`` inline) talks on stderr,
    the terminal even when stdout is a file or a pipe, keeps readline's line editing there,
    and reads stdin as always.
    """
    saved, line_buffering = os.dup(1), stdout.line_buffering
    os.dup2(2, 1)
    stdout.reconfigure(line_buffering=True)
    try:
        yield
    finally:
        stdout.flush()
        stdout.reconfigure(line_buffering=line_buffering)
        os.dup2(saved, 1)
        os.close(saved)


def _fileno(stream: IO[str]) -> int | None:
    """The file descriptor under ``stream``, or None if it has none (e.g. a StringIO)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None


def check_writable(name: str | None) -> None:
    """A JobError if ``-o FILE`` could not be made: a directory, or in none."""
    if name is None:
        return
    number = outfiles.descriptor(name)
    if number == 1 and sys.stdout is None:
        raise JobError(f"cannot write {name}: standard output is closed: name a file")
    if number is not None:
        try:
            os.fstat(number)
        except OSError:
            raise JobError(f"cannot write {name}: descriptor {number} is not open") from None
        return
    if not name:
        raise JobError("-o '' names no file: name one, or - for standard output")
    path = Path(name)
    if path.is_dir():
        raise JobError(f"cannot write {name}: it is a directory: name a file in it")
    if not path.parent.is_dir():
        raise JobError(
            f"cannot write {name}: no directory {str(path.parent)!r}: make it, or name a file "
            "in one that is there"
        )


@contextlib.contextmanager
def output(name: str | None, *, binary: bool = False) -> Iterator[IO[Any]]:
    """``-o FILE`` open for writing (see :mod:`discodsl.outfiles`: written whole or not at
    all), or stdout (left open); a JobError if it cannot be written (closed, a full
    disk), saying so."""
    if name is None or (not binary and outfiles.descriptor(name) == 1):
        if sys.stdout is None:
            raise JobError("standard output is closed: write the results with -o FILE")
        with writing_stdout():
            yield sys.stdout
            sys.stdout.flush()
        return
    try:
        with outfiles.written(name, binary=binary) as handle:
            yield handle
    except BrokenPipeError:  # a pipe's reader left (-o - | head -c 4): stop quietly
        raise
    except OSError as exc:  # a full disk, an I/O error, no such directory: as stdout's
        raise JobError(f"cannot write {name}: {exc.strerror or exc}") from exc
