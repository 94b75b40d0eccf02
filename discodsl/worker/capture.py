"""Keeping user output off the protocol stream, and forwarding it to the master as MSG.

The launcher starts the interpreter with the protocol on its own fd and fds
1 and 2 pointed at a file, so nothing the interpreter prints while starting
can corrupt the stream. :class:`Capture` then points fds 1 and 2 at a pipe
(C code and child processes included, not only ``sys.stdout``), collects what
arrives up to a cap a task (then counts what it drops), and hands it out in
batches no bigger than a MSG the master keeps whole (a Disco master keeps only
the first 8 KB of an event; the local runner's, any), cut after a line where
one fits, every ``interval`` seconds and at the end, then a note with the
exact number of bytes dropped.
:class:`Pacer` keeps every MSG of a worker (output and counters) at 4 in any
1.2 seconds, under a Disco master's limit of 5 a second (10 in a second kill
the job); the local runner's master has none. Sending is the caller's: this
module never touches the protocol.
"""

from __future__ import annotations

import _thread
import contextlib
import io
import os
import select
import sys
import threading
import time
from collections.abc import Callable

from discodsl.worker.counters import PREFIX as COUNTER_PREFIX
from discodsl.worker.messages import EVENT_TEXT_LIMIT

# How big a MSG the master keeps whole, in bytes, when the worker's environment says (the
# local runner's master: LOCAL_MESSAGE); else a Disco master's (messages.EVENT_TEXT_LIMIT).
MESSAGE_ENV = "DISCODSL_MSG_BYTES"
# Set to "0" in a worker's environment by a master that limits no worker's MSG rate (the
# local runner's): its MSGs then go unpaced (see Pacer).
PACE_ENV = "DISCODSL_MSG_PACED"
# The local runner's master keeps any MSG whole; batches stay far under a frame's limit
# (frames.MAX_PAYLOAD, 100 MiB).
LOCAL_MESSAGE = 256 * 1024
# What one task may forward in all: MAX_FORWARDED, or as many bytes as MESSAGES_PER_TASK
# MSGs hold if fewer (on a Disco master, 8 of 7000 bytes: with the pacing below, a task's
# end waits at most about a second for its output). Past it, output is dropped with a note
# giving the count.
MAX_FORWARDED = 1 << 20
MESSAGES_PER_TASK = 8
# What close() waits for output still arriving (a child process of the stage's may go on).
CLOSE_WAIT = 0.5
# At most PACE_COUNT MSG in any PACE_WINDOW seconds: the master delays a worker that
# sends more than 5 in a second and kills the job at 10.
PACE_COUNT = 4
PACE_WINDOW = 1.2
# How a MSG reporting counts starts: no batch of output does (see Capture._take).
_COUNTS = COUNTER_PREFIX.encode()


class Capture:
    """Everything written to fds 1 and 2 from now on, collected by a helper thread that, once
    :meth:`forward` named where to, sends it every ``interval`` seconds, cut after a line;
    :meth:`close` sends the rest, then the note on what was dropped."""

    def __init__(self, early: str = "", interval: float = 1.0):
        self.message = message_bytes()  # the largest MSG text, in bytes
        self.cap = min(MAX_FORWARDED, MESSAGES_PER_TASK * self.message)
        self._lock = threading.Lock()  # over the collected bytes and each read of the pipe
        self._sending = threading.Lock()  # over sending: one batch at a time, in order
        self._send: Callable[[str], None] | None = None
        self._interval = interval
        self._closed = False  # from then on, what arrives is dropped
        self._pending = bytearray()
        self._total = self._dropped = 0
        self._full = False
        self._last = b"\n"  # the last byte kept
        self._keep(early.encode(errors="replace"))
        read_end, write_end = os.pipe()
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        for stream in (sys.stdout, sys.stderr):  # read as UTF-8, whatever PYTHONIOENCODING says
            if isinstance(stream, io.TextIOWrapper):
                with contextlib.suppress(ValueError, OSError):
                    stream.reconfigure(encoding="utf-8", errors="backslashreplace")
        _fresh_standard_streams()
        os.set_blocking(read_end, False)  # close() may have emptied it after a poll said ready
        self._read_end = read_end
        # A bare thread, never joined: threading.Thread's start and join handshakes cost a
        # forked worker about 0.6 ms a task, more than all the rest of its output handling.
        _thread.start_new_thread(self._run, ())

    def forward(self, send: Callable[[str], None]) -> None:
        """Send what is collected with ``send`` (which paces itself) from now on."""
        with self._sending:
            self._send = send

    def close(self) -> None:
        """Send what was written so far (nothing if :meth:`forward` never named where to),
        then the note on what was dropped; fds 1 and 2 point at /dev/null from now on."""
        flush_standard_streams()
        # A stage's own stdout (None, a logging shim with no flush) would fail the
        # interpreter's last flush, and the worker with it, after the task succeeded.
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        with self._sending:
            with self._lock:
                self._read_waiting()
                self._closed = True
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.close(null)
            self._flush(whole_lines=False)
            if self._send is not None and (note := self._note()):
                self._send(note)

    def _run(self) -> None:
        """Collect output as it comes, and send it when a tick is due, until end of file (no
        writer left); after close(), whatever still arrives (a child process of the stage's)
        is read and dropped, so that no writer ever blocks."""
        poller = select.poll()
        poller.register(self._read_end, select.POLLIN)
        due = time.monotonic() + self._interval
        while True:
            wait = due - time.monotonic()
            if wait > 0 and poller.poll(wait * 1000):
                if not self._collect():
                    return
            else:
                with self._sending:
                    if not self._closed:
                        self._flush(whole_lines=True)
                due = time.monotonic() + self._interval

    def _collect(self) -> bool:
        """Keep (once closed: drop) what the pipe holds; False at end of file."""
        with self._lock:
            chunk = self._read()
            if chunk is None:  # close() read it first
                return True
            if not self._closed:
                self._keep(chunk)
        return bool(chunk)

    def _read_waiting(self) -> None:
        """Keep what the pipe holds now, for up to CLOSE_WAIT seconds (a child process of
        the stage's may go on writing); under the lock."""
        deadline = time.monotonic() + CLOSE_WAIT
        while time.monotonic() < deadline and (chunk := self._read()):
            self._keep(chunk)

    def _read(self) -> bytes | None:
        """A read of the pipe: b"" at end of file, None if it holds nothing now."""
        try:
            return os.read(self._read_end, 65536)
        except BlockingIOError:
            return None

    def _flush(self, whole_lines: bool) -> None:
        """Send what is collected (kept for later while there is nowhere to send it)."""
        while self._send is not None and (text := self._take(whole_lines)):
            self._send(text)

    def _keep(self, chunk: bytes) -> None:
        room = 0 if self._full else self.cap - self._total
        kept = chunk[:room]
        self._pending += kept
        self._total += len(kept)
        self._dropped += len(chunk) - len(kept)
        if len(kept) < len(chunk) and not self._full:
            self._full = True
            if chunk[len(kept)] & 0xC0 == 0x80:  # the cap falls inside a character
                self._drop_partial_character()
        self._last = bytes(self._pending[-1:]) or self._last

    def _drop_partial_character(self) -> None:
        """Drop the start of a character whose end was over the cap (still pending: a
        batch never ends inside a character)."""
        if not self._pending:
            return
        start = _char_start(self._pending, len(self._pending) - 1)
        if self._pending[start] >= 0xC0:  # the lead byte of a multi-byte character
            self._dropped += len(self._pending) - start
            del self._pending[start:]

    def _take(self, whole_lines: bool) -> str:
        """Up to a MSG's worth of collected output, as text (empty if none).

        A batch ends after a line when one fits, else at a character's end;
        with ``whole_lines``, a last line still being written stays for later
        unless it alone fills a batch. A batch that starts as counts do
        (counters.PREFIX) gets a newline before it: a runner counts a MSG that
        reads as counts, printed output must never be counted, and a blank line
        shows as nothing.
        """
        with self._lock:
            counts_like = self._pending.startswith(_COUNTS)
            cut = _cut(
                self._pending, self.message - 1 if counts_like else self.message, whole_lines
            )
            batch = bytes(self._pending[:cut])
            del self._pending[:cut]
        text = batch.decode(errors="replace")
        return "\n" + text if counts_like and text else text

    def _note(self) -> str:
        """The line saying how much output was over the cap (empty if none)."""
        with self._lock:
            if not self._dropped:
                return ""
            start = "" if self._last == b"\n" else "\n"
            return (
                f"{start}[{self._dropped} more bytes dropped: a task forwards at most "
                f"{self.cap} bytes of output; write bulk output to a file instead]\n"
            )


def _cut(pending: bytearray, limit: int, whole_lines: bool) -> int:
    """Where a batch of at most ``limit`` bytes of ``pending`` should end."""
    if len(pending) <= limit:
        return pending.rfind(b"\n") + 1 if whole_lines else len(pending)
    line_end = pending.rfind(b"\n", 0, limit) + 1
    if line_end:
        return line_end
    return _char_start(pending, limit)


def _char_start(data: bytes | bytearray, at: int) -> int:
    """``at``, moved back to the start of the UTF-8 character ``data[at]`` is inside of."""
    for start in range(at, max(at - 4, -1), -1):
        if data[start] & 0xC0 != 0x80:  # not a continuation byte
            return start
    return at  # not UTF-8: any cut will do


def read_early_output(path: str) -> str:
    """What the interpreter wrote before the runtime took over fds 1 and 2; removes the file."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_FORWARDED).decode(errors="replace")
        os.unlink(path)
    except OSError:
        return ""
    return text


def message_bytes() -> int:
    """The largest MSG text the master keeps whole, in bytes: what the environment says
    (MESSAGE_ENV), else what a Disco master keeps (messages.EVENT_TEXT_LIMIT)."""
    try:
        given = int(os.environ.get(MESSAGE_ENV, ""))
    except ValueError:
        given = 0
    return given if given > 0 else EVENT_TEXT_LIMIT


class Pacer:
    """Makes callers of :meth:`wait` wait so that at most ``count`` pass in any ``window``;
    none waits where the environment says the master limits no rate (PACE_ENV)."""

    def __init__(self, count: int = PACE_COUNT, window: float = PACE_WINDOW):
        self._count, self._window = count, window
        self._paced = os.environ.get(PACE_ENV) != "0"
        self._times: list[float] = []
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Return when one more message may go."""
        if not self._paced:
            return
        with self._lock:
            if len(self._times) >= self._count:
                delay = self._times[-self._count] + self._window - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self._times = [*self._times[1 - self._count :], time.monotonic()]


def _fresh_standard_streams() -> None:
    """``sys.stdout`` and ``sys.stderr`` (and their ``__stdout__``, ``__stderr__``) made anew
    over fds 1 and 2, now the capture's pipe, where they are Python's own: their FileIO
    remembers that the fd it had was seekable, so a TextIOWrapper a stage makes over
    ``sys.stdout.buffer`` asked the pipe for its position (Illegal seek). Streams the
    program put in their place are its own, and stay."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        old = getattr(sys, name)
        if old is not getattr(sys, f"__{name}__") or not isinstance(old, io.TextIOWrapper):
            continue
        with contextlib.suppress(ValueError, OSError):
            old.flush()
        raw = io.FileIO(fd, "w", closefd=False)
        with contextlib.suppress(AttributeError, TypeError):
            raw.name = old.buffer.name  # "<stdout>", as a stage may show it
        # Unbuffered as python -u made them (their buffer the raw FileIO): what a stage
        # prints reaches the pipe as it prints it, in order, and before a crash.
        unbuffered = isinstance(getattr(old, "buffer", None), io.RawIOBase)
        stream = io.TextIOWrapper(
            raw if unbuffered else io.BufferedWriter(raw),
            encoding="utf-8",
            errors="backslashreplace",
            line_buffering=old.line_buffering,
            write_through=old.write_through,
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def flush_standard_streams() -> None:
    """Flush what was written to stdout and stderr: Python's own streams, and what stage or
    module code replaced them with (which may have no ``flush``, or be None)."""
    streams = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    for stream in {id(stream): stream for stream in streams}.values():
        with contextlib.suppress(Exception):
            stream.flush()  # type: ignore[union-attr]
