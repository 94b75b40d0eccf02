"""Keeping user output off the protocol stream, and forwarding it to the master as MSG.

The launcher starts the interpreter with the protocol on its own fd and fds
1 and 2 pointed at a file, so nothing the interpreter prints while starting
can corrupt the stream. :class:`Capture` then points fds 1 and 2 at a pipe
(C code and child processes included, not only ``sys.stdout``), collects what
arrives up to :data:`MAX_FORWARDED` bytes a task (then counts what it drops),
and hands it out in batches of at most :data:`MAX_MESSAGE` bytes, cut after a
line where one fits; :class:`Forwarder` sends them every ``interval`` seconds
and at the end, then a note with the exact number of bytes dropped.
:class:`Pacer` keeps every MSG of a worker (output and counters) at 4 in any
1.2 seconds, under the master's limit of 5 a second (10 in a second kill the
job). Sending is the caller's: this module never touches the protocol.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct
import sys
import termios
import threading
import time
from collections.abc import Callable

# What one task may forward in all; past it, output is dropped with a note giving the count.
MAX_FORWARDED = 1 << 20
# The largest single MSG: far under a frame's limit (protocol.MAX_PAYLOAD, 100 MiB).
MAX_MESSAGE = 256 * 1024
# At most PACE_COUNT MSG in any PACE_WINDOW seconds: the master delays a worker that
# sends more than 5 in a second and kills the job at 10.
PACE_COUNT = 4
PACE_WINDOW = 1.2


class Capture:
    """Everything written to fds 1 and 2 from now on, collected by a thread."""

    def __init__(self, early: str = ""):
        self._lock = threading.Lock()
        self._pending = bytearray()
        self._total = self._dropped = 0
        self._full = False
        self._last = b"\n"  # the last byte kept
        self._keep(early.encode(errors="replace"))
        read_end, write_end = os.pipe()
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._read_end = read_end
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        """Wait for output, then read and keep it under the lock: bytes are never out of
        the pipe and not yet kept where :meth:`settle` could miss them."""
        poller = select.poll()
        poller.register(self._read_end, select.POLLIN)
        while True:
            poller.poll()
            with self._lock:
                chunk = os.read(self._read_end, 65536)  # ready: does not block
                if not chunk:
                    return
                self._keep(chunk)

    def settle(self, timeout: float = 0.5) -> None:
        """Wait (bounded) until what was written so far has been collected."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._unread():
            time.sleep(0.002)

    def _unread(self) -> int:
        with self._lock:
            return _unread(self._read_end)

    def _keep(self, chunk: bytes) -> None:
        room = 0 if self._full else MAX_FORWARDED - self._total
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

    def take(self, limit: int = MAX_MESSAGE, whole_lines: bool = False) -> str:
        """Up to ``limit`` bytes of collected output, as text (empty if none).

        A batch ends after a line when one fits, else at a character's end;
        with ``whole_lines``, a last line still being written stays for later
        unless it alone fills a batch.
        """
        with self._lock:
            cut = _cut(self._pending, limit, whole_lines)
            batch = bytes(self._pending[:cut])
            del self._pending[:cut]
        return batch.decode(errors="replace")

    def note(self) -> str:
        """The line saying how much output was over :data:`MAX_FORWARDED` (empty if none)."""
        with self._lock:
            if not self._dropped:
                return ""
            start = "" if self._last == b"\n" else "\n"
            return (
                f"{start}[{self._dropped} more bytes dropped: a task forwards at most "
                f"{MAX_FORWARDED} bytes of output; write bulk output to a file instead]\n"
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


class Pacer:
    """Makes callers of :meth:`wait` wait so that at most ``count`` pass in any ``window``."""

    def __init__(self, count: int = PACE_COUNT, window: float = PACE_WINDOW):
        self._count, self._window = count, window
        self._times: list[float] = []
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Return when one more message may go."""
        with self._lock:
            if len(self._times) >= self._count:
                delay = self._times[-self._count] + self._window - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self._times = [*self._times[1 - self._count :], time.monotonic()]


class Forwarder:
    """Sends collected output with ``send`` (which paces itself) every ``interval`` seconds."""

    def __init__(self, capture: Capture, send: Callable[[str], None], interval: float = 1.0):
        self._capture, self._send, self._interval = capture, send, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._flush(whole_lines=True)

    def _flush(self, whole_lines: bool) -> None:
        while text := self._capture.take(whole_lines=whole_lines):
            self._send(text)

    def close(self) -> None:
        """Stop the thread and send what is left, then the note on what was dropped."""
        self._stop.set()
        self._thread.join()
        self._capture.settle()
        self._flush(whole_lines=False)
        if note := self._capture.note():
            self._send(note)


def _unread(fd: int) -> int:
    """Bytes waiting in the pipe ``fd``."""
    answer = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    count: int = struct.unpack("i", answer)[0]
    return count
