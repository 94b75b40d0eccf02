"""Starting a job's launcher while another thread's child still holds it open for writing.

Each local job writes its jobhome's ``worker`` launcher, then starts it. A
process forked by another thread (another run's worker start) while that
file was open for writing holds it open until it execs, and exec'ing the
launcher then fails with ETXTBSY ("Text file busy"). CI met it: three runs
submitted from one thread, one of them failed with "cannot start the worker:
[Errno 26] Text file busy". The start is tried again after short pauses.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from discodsl.runners.node import popen


def _script(tmp_path: Path) -> Path:
    script = tmp_path / "worker"
    script.write_text("#!/bin/sh\nexit 7\n")
    script.chmod(0o755)
    return script


def test_a_launcher_busy_for_a_moment_starts_once_free(tmp_path: Path) -> None:
    script = _script(tmp_path)
    writer = os.open(script, os.O_WRONLY)  # as the other thread's child holds it
    threading.Timer(0.1, os.close, args=(writer,)).start()
    process = popen([str(script)])
    assert process.wait(timeout=10) == 7


def test_a_launcher_busy_for_good_fails_with_the_error(tmp_path: Path) -> None:
    script = _script(tmp_path)
    writer = os.open(script, os.O_WRONLY)
    try:
        with pytest.raises(OSError) as caught:
            popen([str(script)])
    finally:
        os.close(writer)
    assert caught.value.errno == errno.ETXTBSY
