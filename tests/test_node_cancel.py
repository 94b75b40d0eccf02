"""NodeMaster.cancel (Ctrl-C in a local run, a killed job on the test master) ends at once."""

from __future__ import annotations

import os
import selectors
import subprocess
import threading
from pathlib import Path
from typing import IO

from discodsl.runners.node import NodeMaster, _kill


def test_cancel_is_not_held_up_by_a_write_to_a_worker_that_does_not_read(tmp_path: Path) -> None:
    """A conversation blocked writing to a worker whose pipe is full (the worker stopped
    reading) holds that pipe; cancel() kills the worker first, which frees the write."""
    master = NodeMaster(disco_data=str(tmp_path))
    worker = subprocess.Popen(
        ["sleep", "60"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    assert worker.stdin is not None
    master._running.add(worker)
    writing = threading.Thread(target=_write_until_stopped, args=(worker.stdin,), daemon=True)
    writing.start()
    writing.join(0.5)  # blocked in the write: the pipe holds 64 KiB
    assert writing.is_alive()
    cancelling = threading.Thread(target=master.cancel, daemon=True)
    cancelling.start()
    cancelling.join(10)
    assert not cancelling.is_alive(), "cancel() hung behind the blocked write"
    writing.join(10)
    assert not writing.is_alive() and worker.wait(10) is not None


def _write_until_stopped(pipe: IO[bytes]) -> None:
    try:
        pipe.write(b"x" * (1 << 20))
        pipe.flush()
    except (BrokenPipeError, ValueError):
        pass


def test_cancel_leaves_a_running_workers_pipes_to_its_conversation(tmp_path: Path) -> None:
    """A conversation reads its worker's output in its own thread (select, then read):
    cancel() kills the worker, which that read sees as the end of its output, and leaves
    the pipes to the conversation to close. Closed under it, the read failed (EBADF), or
    would read whatever file took the number."""
    master = NodeMaster(disco_data=str(tmp_path))
    worker = subprocess.Popen(
        ["sleep", "60"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    assert worker.stdout is not None
    master._running.add(worker)
    read: dict[str, object] = {}
    reading = threading.Thread(target=_read_to_the_end, args=(worker.stdout.fileno(), read))
    reading.start()
    reading.join(0.3)
    master.cancel()
    assert worker.wait(10) is not None and not worker.stdout.closed
    reading.join(10)
    assert read == {"end": b""}
    _kill(worker)  # what the conversation does when it ends
    assert worker.stdout.closed


def _read_to_the_end(fd: int, read: dict[str, object]) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not selector.select(timeout=0.05):
            pass
    try:
        read["end"] = os.read(fd, 1 << 16)
    except OSError as exc:
        read["error"] = exc
