"""Writing whole lines to a non-blocking stream (a stderr an event loop set O_NONBLOCK on).

Python's text streams lose what such a descriptor refuses: a buffered one raises
``BlockingIOError`` after writing part of a line, an unbuffered one (``python -u``) drops
the rest without a word. :func:`write_whole` writes to the descriptor itself, waiting
for it to take more, and gives up only once it has taken nothing for ``STALLED`` seconds
(a reader that stopped reading): the lines it did not write whole are counted, for the
caller to say.
"""

from __future__ import annotations

import os
import select
import time
from typing import IO

# Seconds a non-blocking stream may take nothing before what is left of a write is dropped.
STALLED = 2.0


def write_whole(stream: IO[str], text: str) -> int | None:
    """Write ``text`` to ``stream`` if its descriptor is non-blocking: how many of its lines
    (each ending with a newline, or its end) were not written whole; None for any other
    stream, which the caller writes as it is."""
    descriptor = nonblocking_descriptor(stream)
    if descriptor is None:
        return None
    encoding = getattr(stream, "encoding", None) or "utf-8"
    data = memoryview(text.encode(encoding, "backslashreplace"))
    if not _flushed(stream, descriptor):  # what the stream held goes first
        return _lines(data)
    taken = time.monotonic()
    while data:
        try:
            written = os.write(descriptor, data)
        except BlockingIOError:
            written = 0
        except OSError:  # closed since
            return _lines(data)
        if written:
            data, taken = data[written:], time.monotonic()
        elif time.monotonic() - taken >= STALLED or not _writable(descriptor):
            return _lines(data)
    return 0


def nonblocking_descriptor(stream: IO[str]) -> int | None:
    """The descriptor under ``stream`` if it has one that is non-blocking (and poll() can
    wait for it)."""
    if not hasattr(select, "poll"):
        return None
    try:
        descriptor = stream.fileno()
        return None if os.get_blocking(descriptor) else descriptor
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None


def _flushed(stream: IO[str], descriptor: int) -> bool:
    """Whether what ``stream`` buffers could be written, waiting for its descriptor."""
    taken = time.monotonic()
    while True:
        try:
            stream.flush()  # a buffered stream keeps what the descriptor refused
            return True
        except BlockingIOError:
            if time.monotonic() - taken >= STALLED or not _writable(descriptor):
                return False
        except (OSError, ValueError):
            return False


def _writable(descriptor: int) -> bool:
    """Wait up to STALLED seconds for ``descriptor`` to take more; False if it is gone."""
    poller = select.poll()
    poller.register(descriptor, select.POLLOUT)
    try:
        ready = poller.poll(STALLED * 1000)
    except OSError:
        return False
    return not any(events & (select.POLLERR | select.POLLNVAL) for _, events in ready)


def _lines(left: memoryview) -> int:
    """The lines of what is ``left`` of a write: the one it cut, and those after it."""
    return bytes(left).count(b"\n") + (0 if bytes(left).endswith(b"\n") else 1)
