"""Fixtures for the cluster runner and the CLI: a test Disco master on 127.0.0.1.

Registered by ``pytest_plugins`` in :mod:`tests.conftest`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.disco_master import DiscoMaster
from tests.disco_state import FAST, Clock


@pytest.fixture
def disco_master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiscoMaster]:
    """A running test master with its own DISCO_DATA and DDFS, stopped (jobs killed) after.

    Its failure limit is 1, as the recordings' operator set it (settings.jsonl)
    so that failing jobs die quickly; the real default of 100 is what
    get_settings shows on a fresh DiscoMaster. Its retry pauses follow the
    real schedule (14.308 s after the first failure ...) 1000 times faster.
    """
    root: Path = tmp_path_factory.mktemp("disco-master")
    with DiscoMaster(root, clock=Clock(scale=FAST)) as master:
        master.jobs.save_setting("max_failure_rate", 1)
        yield master


@pytest.fixture
def cluster_env(disco_master: DiscoMaster, monkeypatch: pytest.MonkeyPatch) -> DiscoMaster:
    """``DISCO_MASTER`` and ``DISCO_PORT`` point at the test master for this test."""
    monkeypatch.setenv("DISCO_MASTER", disco_master.url)
    monkeypatch.setenv("DISCO_PORT", str(disco_master.port))
    monkeypatch.setenv("DISCODSL_RETRIES", "0")
    return disco_master
