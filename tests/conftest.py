"""Shared fixtures: a clean Disco environment for every test, paths to the reference data."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# No deadline for property tests: on a loaded 2-core machine a first example that imports
# or starts something can take a second, and hypothesis would call that flaky.
settings.register_profile("discodsl", deadline=None)
settings.load_profile("discodsl")

# Started with standard input closed (`0<&-`), Python has no sys.__stdin__, which pytest's
# captured stdin asks for its encoding (IPython asks, when the tutorials start a kernel):
# /dev/null takes fd 0, as a shell's `</dev/null` would give it.
if sys.__stdin__ is None:
    sys.__stdin__ = open(os.devnull)  # noqa: SIM115 - the process's stdin until it ends

ROOT = Path(__file__).resolve().parent.parent
# Exchanges recorded with a real Disco 0.5.4 master, and record files its library wrote
# (tests/disco-reference/README.md says how they were made); DISCODSL_REFERENCE names
# another copy.
REFERENCE = Path(os.environ.get("DISCODSL_REFERENCE") or ROOT / "tests" / "disco-reference")
pytest_plugins = ["tests.conftest_cluster", "tests.hang_guard"]


@pytest.fixture(scope="session")
def _runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local-runs")


@pytest.fixture(autouse=True)
def _clean_disco_env(
    monkeypatch: pytest.MonkeyPatch, _runs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """No test sees the developer's DISCO_* / DDFS_* / DISCODSL_* settings (a
    DISCODSL_RETRIES=0 or DISCODSL_NO_FORKSERVER=1 would change what tests find; the
    suite's own DISCODSL_TEST_* switches stay), their registry of local runs (the suite's
    local runs register in a directory of its own) or their cache (each test starts with
    an empty one)."""
    for name in list(os.environ):
        if name.startswith(("DISCO_", "DDFS_", "DISCODSL_")) and not name.startswith(
            "DISCODSL_TEST_"
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DISCO_SETTINGS_FILE", os.devnull)
    monkeypatch.setenv("DISCODSL_RUNS_DIR", str(_runs_dir))
    monkeypatch.setenv("DISCODSL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as at a terminal, even when the suite was started in
    the background, which a shell does with SIGINT ignored (Python then leaves it so)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def removed_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory, made and then removed (a program whose directory went)."""
    removed = tmp_path / "removed"
    removed.mkdir()
    monkeypatch.chdir(removed)
    removed.rmdir()
    return removed


@pytest.fixture
def reference() -> Path:
    """The recordings from a real Disco 0.5.4 master (tests/disco-reference)."""
    if not REFERENCE.is_dir():
        pytest.fail(
            f"reference recordings missing at {REFERENCE}: the repository holds them in "
            "tests/disco-reference; DISCODSL_REFERENCE, if set, must name such a directory"
        )
    return REFERENCE
