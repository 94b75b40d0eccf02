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
    stream, which the caller writes as it is. Once the descriptor has taken nothing for
    STALLED seconds, writes wait no more until it takes something again (each would
    wait as long, and a run's end waits for its lines)."""
    descriptor = nonblocking_descriptor(stream)
    if descriptor is None:
        return None
    encoding = getattr(stream, "encoding", None) or "utf-8"
    data = memoryview(text.encode(encoding, "backslashreplace"))
    if descriptor in _CUT:  # a line cut short before: this one starts on a line of its own
        data = memoryview(b"\n" + bytes(data))
    waiting = descriptor not in _STALLED
    if not _flushed(stream, descriptor, waiting):  # what the stream held goes first
        return _left(descriptor, data)
    taken = time.monotonic()
    while data:
        try:
            written = os.write(descriptor, data)
        except BlockingIOError:
            written = 0
        except OSError:  # closed since
            return _left(descriptor, data)
        if written:
            _CUT.discard(descriptor)
            _STALLED.discard(descriptor)
            data, taken, waiting = data[written:], time.monotonic(), True
        elif not waiting or time.monotonic() - taken >= STALLED or not _writable(descriptor):
            _STALLED.add(descriptor)
            return _left(descriptor, data)
    return 0


# Descriptors that took nothing for STALLED seconds, and took nothing since; those whose
# last line was cut short.
_STALLED: set[int] = set()
_CUT: set[int] = set()


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


def _flushed(stream: IO[str], descriptor: int, waiting: bool) -> bool:
    """Whether what ``stream`` buffers could be written, ``waiting`` for its descriptor."""
    taken = time.monotonic()
    while True:
        try:
            stream.flush()  # a buffered stream keeps what the descriptor refused
            return True
        except BlockingIOError:
            if not waiting or time.monotonic() - taken >= STALLED or not _writable(descriptor):
                _STALLED.add(descriptor)
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


def _left(descriptor: int, left: memoryview) -> int:
    """The lines of what is ``left`` of a write to ``descriptor``: the one it cut (whose
    start was written: the next write begins a line of its own), and those after it."""
    whole, rest = bytes(left.obj), bytes(left)
    written = whole[: len(whole) - len(rest)]
    if written and not written.endswith(b"\n"):
        _CUT.add(descriptor)
    return rest.count(b"\n") + (0 if rest.endswith(b"\n") else 1)
