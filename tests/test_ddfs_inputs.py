"""DDFS inputs on the test master (tests/disco_master.py): compressed files pushed to DDFS,
whose blobs lose the ``.gz`` or ``.bz2`` of their names, read decompressed on a node."""

from __future__ import annotations

import bz2
import gzip
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from discodsl.ddfs import DDFS
from tests import jobs, reader_jobs

WORDS = {"a": 2, "b": 1, "c": 3}


@pytest.fixture
def ddfs(cluster_env: str) -> Iterator[DDFS]:
    port = urlsplit(cluster_env).port or 8989
    with DDFS(cluster_env, disco_port=port, retries=0) as client:
        yield client


@pytest.fixture
def compressed_files(tmp_path: Path) -> list[Path]:
    """The words of WORDS in a ``.txt.gz`` and a ``.txt.bz2`` file."""
    one, two = tmp_path / "g1.txt.gz", tmp_path / "b2.txt.bz2"
    one.write_bytes(gzip.compress(b"a b c\n"))
    two.write_bytes(bz2.compress(b"c a\nc\n"))
    return [one, two]


def test_compressed_blobs_of_a_tag_are_read_decompressed(
    ddfs: DDFS, compressed_files: list[Path]
) -> None:
    blobs = ddfs.push("test:compressed", compressed_files)
    assert all("_txt_" in replicas[0] and "$" in replicas[0] for replicas in blobs)
    results = jobs.wordcount.run(inputs=["tag://test:compressed"], mode="cluster")
    assert dict(results) == WORDS


def test_compressed_files_pushed_as_inputs_are_read_decompressed(
    ddfs: DDFS, compressed_files: list[Path]
) -> None:
    results = jobs.wordcount.run(inputs=compressed_files, mode="cluster", push_inputs=True)
    assert dict(results) == WORDS


def test_a_reader_reads_a_compressed_blob_decompressed(ddfs: DDFS, tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl.gz"
    path.write_bytes(gzip.compress(reader_jobs.JSON_GOOD))
    ddfs.push("test:compressed:json", [path])
    results = reader_jobs.json_totals.run(inputs=["tag://test:compressed:json"], mode="cluster")
    assert sorted(results) == [("ann", 7), ("bob", 3)]
