"""Keeping user output off the protocol stream, and forwarding it to the master as MSG.

The launcher starts the interpreter with the protocol on its own fd and fds
1 and 2 pointed at a file, so nothing the interpreter prints while starting
can corrupt the stream. :class:`Capture` then points fds 1 and 2 at a pipe
(C code and child processes included, not only ``sys.stdout``), collects what
arrives, bounded, and hands it out in batches; :class:`Forwarder` sends one
batch at most every ``interval`` seconds, far under the master's limit of 5
MSG a second (10 in a second kill the job).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import sys
import termios
import threading
import time
from collections.abc import Callable

# What one task may forward in all; past it, output is dropped with a note.
MAX_FORWARDED = 1 << 20
# The largest single MSG.
MAX_MESSAGE = 64 * 1024


class Capture:
    """Everything written to fds 1 and 2 from now on, collected by a thread."""

    def __init__(self, early: str = ""):
        self._lock = threading.Lock()
        self._pending = bytearray(early.encode(errors="replace"))
        self._total = len(self._pending)
        self._dropped = 0
        read_end, write_end = os.pipe()
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._read_end = read_end
        self._busy = False
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while chunk := os.read(self._read_end, 65536):
            self._busy = True
            with self._lock:
                self._keep(chunk)
            self._busy = False

    def settle(self, timeout: float = 0.5) -> None:
        """Wait (bounded) until what was written so far has been collected."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (self._busy or _unread(self._read_end)):
            time.sleep(0.002)

    def _keep(self, chunk: bytes) -> None:
        room = MAX_FORWARDED - self._total
        kept = chunk[: max(room, 0)]
        self._pending += kept
        self._total += len(kept)
        self._dropped += len(chunk) - len(kept)

    def take(self, limit: int = MAX_MESSAGE) -> str:
        """Up to ``limit`` bytes of collected output, as text (empty if none)."""
        with self._lock:
            batch = bytes(self._pending[:limit])
            del self._pending[:limit]
            if not self._pending and self._dropped:
                batch += f"\n[discodsl: {self._dropped} more bytes of output dropped]".encode()
                self._dropped = 0
        return batch.decode(errors="replace")


def read_early_output(path: str) -> str:
    """What the interpreter wrote before the runtime took over fds 1 and 2; removes the file."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_MESSAGE).decode(errors="replace")
        os.unlink(path)
    except OSError:
        return ""
    return text


class Forwarder:
    """Sends collected output with ``send`` at most once every ``interval`` seconds."""

    def __init__(self, capture: Capture, send: Callable[[str], None], interval: float = 1.0):
        self._capture, self._send, self._interval = capture, send, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            text = self._capture.take()
            if text:
                self._send(text)

    def close(self) -> None:
        """Stop the thread and send what is left, in one last message."""
        self._stop.set()
        self._thread.join()
        self._capture.settle()
        text = self._capture.take()
        if text:
            self._send(text)


def _unread(fd: int) -> int:
    """Bytes waiting in the pipe ``fd``."""
    answer = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    count: int = struct.unpack("i", answer)[0]
    return count
