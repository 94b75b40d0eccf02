"""NodeMaster.cancel (Ctrl-C in a local run, a killed job on the test master) ends at once."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import IO

from discodsl.runners.node import NodeMaster


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
    assert not writing.is_alive() and worker.poll() is not None


def _write_until_stopped(pipe: IO[bytes]) -> None:
    try:
        pipe.write(b"x" * (1 << 20))
        pipe.flush()
    except (BrokenPipeError, ValueError):
        pass
