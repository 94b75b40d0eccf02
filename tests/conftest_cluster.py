"""Fixtures for the cluster runner and the CLI: a test Disco master on 127.0.0.1.

Registered by ``pytest_plugins`` in :mod:`tests.conftest`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from discodsl.ddfs import DDFS
from discodsl.runners.layout import LOCAL_HOST, this_node
from discodsl.worker import urls
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


# Where the cluster cases of the shared job tables run: the test master, unless this names
# a real Disco 0.5.4 master (e.g. http://127.0.0.1:8989) to check the same cases against.
REAL_MASTER = os.environ.get("DISCODSL_TEST_REAL_MASTER", "")


@pytest.fixture
def cluster_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``DISCO_MASTER`` and ``DISCO_PORT`` point at the test master for this test (or at
    ``DISCODSL_TEST_REAL_MASTER``); the master's URL."""
    if REAL_MASTER:
        return point_at(monkeypatch, REAL_MASTER, urlsplit(REAL_MASTER).port or 8989)
    master: DiscoMaster = request.getfixturevalue("disco_master")
    return point_at(monkeypatch, master.url, master.port)


@pytest.fixture
def damageable_cluster(
    disco_master: DiscoMaster, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], Path]:
    """``DISCO_MASTER`` and ``DISCO_PORT`` point at the test master, whatever
    ``DISCODSL_TEST_REAL_MASTER`` says (its files are at hand); the file on this machine of
    a result file a run lists (``disco://HOST/disco/...`` of a local run or the test
    master, ``file://`` of an inline run)."""
    point_at(monkeypatch, disco_master.url, disco_master.port)

    def file_of(listed: str) -> Path:
        here = urls.file_path(listed)  # an inline run's
        if here is not None:
            return Path(here)
        host, path = urls.split_host(urls.split(listed)[1])
        data = this_node().disco_data if host == LOCAL_HOST else disco_master.jobs.disco_data
        return Path(data, path.removeprefix("disco/"))

    return file_of


def point_at(monkeypatch: pytest.MonkeyPatch, url: str, port: int) -> str:
    """``DISCO_MASTER`` and ``DISCO_PORT`` for the master at ``url``, for this test; ``url``."""
    monkeypatch.setenv("DISCO_MASTER", url)
    monkeypatch.setenv("DISCO_PORT", str(port))
    # Requests that may be sent again are, twice, as users' are (five times): a connection
    # dropped on a loaded machine is no failure of the job. Tests of failures set 0.
    monkeypatch.setenv("DISCODSL_RETRIES", "2")
    return url


MODES = ["inline", "local", "cluster"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """The runner for the shared job tables; ``cluster`` runs against the test master
    (``DISCO_MASTER`` set for the test), or the real one ``DISCODSL_TEST_REAL_MASTER`` names."""
    if request.param == "cluster":
        request.getfixturevalue("cluster_env")
    return str(request.param)


@pytest.fixture
def ddfs(cluster_env: str) -> Iterator[DDFS]:
    """A DDFS client of the test's master."""
    port = urlsplit(cluster_env).port or 8989
    with DDFS(cluster_env, disco_port=port, retries=0) as client:
        yield client


@pytest.fixture
def ns(ddfs: DDFS) -> Iterator[str]:
    """A prefix of tag names of this test's own; its tags are deleted after it (a real
    master keeps them from run to run)."""
    prefix = f"test{uuid.uuid4().hex[:8]}"
    yield prefix
    for tag in ddfs.list_tags(prefix):
        ddfs.delete(tag)


@pytest.fixture
def text_files(tmp_path: Path) -> list[Path]:
    """Two small text files: the words a (2), b (1) and c (3)."""
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("a b c\n")
    two.write_text("c a\nc\n")
    return [one, two]
