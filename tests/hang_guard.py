"""A hung test ends the run, printing every thread's stack, instead of stalling it.

pytest-timeout fails a test that runs past its timeout by raising in the main
thread (its signal method). That cannot reach a test stuck where no signal
gets through (a thread holding the interpreter, a wait in C), and once a
test's call has failed (its own timeout or any other error), pytest-timeout
cancels its timer (pytest_exception_interact): the teardown then runs with no
timeout at all. Either stalls the whole run with nothing printed; the second
stalled CI for 90 minutes (tests/loopback.py). So past a test's timeout plus
``GRACE_ENV`` seconds (default 120) in any one phase (setup, call, teardown),
faulthandler prints the stack of every thread to the run's stderr and the run
exits with status 1.

Registered by ``pytest_plugins`` in :mod:`tests.conftest`.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Generator

import pytest

GRACE_ENV = "DISCODSL_TEST_HANG_GRACE"
_STDERR = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    # The run's own stderr, before capturing redirects it: where the stacks must go.
    config.stash[_STDERR] = os.dup(sys.stderr.fileno())


def pytest_unconfigure(config: pytest.Config) -> None:
    os.close(config.stash[_STDERR])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item))


def _guarded(item: pytest.Item) -> Generator[None, object, object]:
    """One phase of a test, watched. Each phase sets the watch again: pytest's faulthandler
    plugin cancels it when a phase fails (pytest_exception_interact)."""
    limit = _timeout(item) + float(os.environ.get(GRACE_ENV, "120"))
    faulthandler.dump_traceback_later(limit, exit=True, file=item.config.stash[_STDERR])
    try:
        return (yield)
    finally:
        faulthandler.cancel_dump_traceback_later()


def _timeout(item: pytest.Item) -> float:
    """The test's pytest-timeout: its marker's, else the configured one."""
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getini("timeout") or 0)
