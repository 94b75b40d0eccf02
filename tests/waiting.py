"""Waiting in tests for what another thread or process does, bounded."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(check: Callable[[], bool], seconds: float = 60.0) -> None:
    """Wait until ``check()`` holds, failing the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)
