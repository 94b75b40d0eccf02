"""DDFS inputs on the test master (tests/disco_master.py, or a real one): compressed files
pushed to DDFS, whose blobs lose the ``.gz`` or ``.bz2`` of their names, read decompressed
on a node; tags read by runs on this machine.

Each test's tags are named after it (``ns``) and deleted after it: a real master's DDFS
outlives a test, and a push adds to a tag that is there already."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from discodsl.ddfs import DDFS
from discodsl.errors import DataError, SettingsError, TagNotFound, TaskFailed
from tests import cluster_jobs, jobs, reader_jobs

WORDS = {"a": 2, "b": 1, "c": 3}


@pytest.fixture
def compressed_files(tmp_path: Path) -> list[Path]:
    """The words of WORDS in a ``.txt.gz`` and a ``.txt.bz2`` file."""
    one, two = tmp_path / "g1.txt.gz", tmp_path / "b2.txt.bz2"
    one.write_bytes(gzip.compress(b"a b c\n"))
    two.write_bytes(bz2.compress(b"c a\nc\n"))
    return [one, two]


def test_compressed_blobs_of_a_tag_are_read_decompressed(
    ns: str, ddfs: DDFS, compressed_files: list[Path]
) -> None:
    blobs = ddfs.push(f"{ns}:compressed", compressed_files)
    assert all("_txt_" in replicas[0] and "$" in replicas[0] for replicas in blobs)
    results = jobs.wordcount.run(inputs=[f"tag://{ns}:compressed"], mode="cluster")
    assert dict(results) == WORDS


def test_a_push_to_a_tag_url_pushes_to_its_tag(
    ns: str, ddfs: DDFS, compressed_files: list[Path]
) -> None:
    """As a job's input names it: `ddfs push tag://NAME` was refused, suggesting the tag
    `tag:__NAME`, which it then made."""
    ddfs.push(f"tag://{ns}:by_url", compressed_files[:1])
    assert ddfs.list_tags(f"{ns}:by") == [f"{ns}:by_url"]


def test_a_file_with_a_long_name_pushed_to_a_tag_is_named_by_its_hash(
    ns: str, ddfs: DDFS, tmp_path: Path
) -> None:
    """A Disco master names a blob of more than 200 characters by its name's md5 (the
    test master dropped the connection, which a run pushing its inputs retried, then
    reported as a network failure)."""
    path = tmp_path / ("x" * 240 + ".txt")
    path.write_text("a b\n")
    (blob,) = ddfs.push(f"tag://{ns}:long", [path])
    name = blob[0].rsplit("/", 1)[1].split("$")[0]
    assert name == hashlib.md5(("x" * 240 + "_txt").encode()).hexdigest()
    assert dict(jobs.wordcount.run([f"tag://{ns}:long"], mode="cluster")) == {"a": 1, "b": 1}


def test_compressed_files_pushed_as_inputs_are_read_decompressed(
    ddfs: DDFS, compressed_files: list[Path]
) -> None:
    results = jobs.wordcount.run(inputs=compressed_files, mode="cluster", push_inputs=True)
    assert dict(results) == WORDS


def test_a_reader_reads_a_compressed_blob_decompressed(ns: str, ddfs: DDFS, tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl.gz"
    path.write_bytes(gzip.compress(reader_jobs.JSON_GOOD))
    ddfs.push(f"{ns}:compressed:json", [path])
    results = reader_jobs.json_totals.run(inputs=[f"tag://{ns}:compressed:json"], mode="cluster")
    assert sorted(results) == [("ann", 7), ("bob", 3)]


# -- tags on a run here (local, inline) ---------------------------------------------------


def test_a_local_run_reads_a_tags_blobs_from_the_configured_master(
    ns: str, ddfs: DDFS, text_files: list[Path], compressed_files: list[Path]
) -> None:
    ddfs.push(f"{ns}:here", text_files)
    ddfs.push(f"{ns}:here:gz", compressed_files)
    for tag in (f"tag://{ns}:here", f"tag://{ns}:here:gz"):
        assert dict(jobs.wordcount.run(inputs=[tag], mode="local")) == WORDS


@pytest.mark.parametrize("mode", ["local", "inline"])
def test_a_run_here_reads_a_tag_through_the_master_it_is_given(
    ns: str, ddfs: DDFS, text_files: list[Path], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ddfs.push(f"{ns}:given", text_files)
    master = os.environ["DISCO_MASTER"]
    monkeypatch.delenv("DISCO_MASTER")  # master= alone names it, as keywords beat the environment
    got = jobs.wordcount.run(inputs=[f"tag://{ns}:given"], mode=mode, master=master)
    assert dict(got) == WORDS


def test_a_cached_local_run_over_a_tag_runs_again_when_the_tag_changes(
    ns: str, ddfs: DDFS, text_files: list[Path], tmp_path: Path
) -> None:
    ddfs.push(f"{ns}:here:cached", text_files[:1])
    first = jobs.wordcount.run(inputs=[f"tag://{ns}:here:cached"], mode="local", cache=True)
    assert dict(first) == {"a": 1, "b": 1, "c": 1}
    ddfs.push(f"{ns}:here:cached", text_files[1:])
    again = jobs.wordcount.run(inputs=[f"tag://{ns}:here:cached"], mode="local", cache=True)
    assert dict(again) == WORDS


def test_an_inline_run_reads_a_tags_blobs_from_the_configured_master(
    ns: str, ddfs: DDFS, text_files: list[Path]
) -> None:
    ddfs.push(f"{ns}:inline", text_files)
    assert dict(jobs.wordcount.run(inputs=[f"tag://{ns}:inline"], mode="inline")) == WORDS


def test_a_tag_with_no_master_configured_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    with pytest.raises(SettingsError) as caught:
        jobs.wordcount.submit(inputs=["tag://data:logs"], mode="local")
    message = str(caught.value)
    assert "tag://data:logs" in message and "Disco master" in message
    assert "DISCO_MASTER" in message and "master=" in message


def test_a_saved_jobs_counters_are_all_there(ddfs: DDFS) -> None:
    """A save_results job is ready before the master writes its last events (it writes
    them every 2 s, job_event.erl; a real master's run lost every count this way): the
    client reads on to the READY line, so no task's counts are lost."""
    inputs = ["raw://a b", "raw://c", "raw://a"]
    results = cluster_jobs.chatty_count.run(inputs=inputs, mode="cluster", save_results=True)
    try:
        assert dict(results) == {"a": 2, "b": 1, "c": 1}
        assert results.counters == {"lines": 3}
    finally:
        ddfs.delete(f"disco:results:{results.jobname}")


@pytest.mark.parametrize("mode", ["cluster", "local", "inline"])
def test_a_tag_of_an_earlier_jobs_result_indexes_reads_every_partition(
    ns: str, ddfs: DDFS, text_files: list[Path], mode: str
) -> None:
    # A tag holding a job's results (its dir:// indexes, as Disco's DDFS().tag(name,
    # job.wait()) keeps them): the indexes were not expanded, so a cluster job read the
    # lines of label 0 alone, and a run here read them at port 8989, not DISCO_PORT.
    first = jobs.wordcount.run(inputs=text_files, mode="cluster")
    assert all(urls[0].startswith("dir://") for urls in first.urls), first.urls
    assert len(first.record_urls()) > 1  # several partitions: label 0 alone is not all
    ddfs.tag(f"{ns}:results", first.urls)
    again = jobs.merge_counts.run(inputs=[f"tag://{ns}:results"], mode=mode)
    assert dict(again) == WORDS


@pytest.mark.parametrize("mode", ["cluster", "local", "inline"])
def test_a_tag_of_results_whose_file_was_emptied_since_fails_the_job(
    tmp_path: Path, text_files: list[Path], mode: str, damageable_cluster: Callable[[str], Path]
) -> None:
    # A tag's indexes are expanded with the sizes they give each file, which the job's
    # tasks check: an emptied file gave no records without a word (probes CW F19, CX F1).
    first = jobs.wordcount.run(inputs=text_files, mode="cluster")
    with DDFS(os.environ["DISCO_MASTER"], retries=0) as ddfs:
        ddfs.tag("test:damaged:results", first.urls)
    damageable_cluster(first.listed_urls()[0][0]).write_bytes(b"")
    failed = DataError if mode == "inline" else TaskFailed
    with pytest.raises(failed, match=r"is 0 bytes, where the index .* says \d+"):
        jobs.merge_counts.run(inputs=["tag://test:damaged:results"], mode=mode)


def test_deleting_a_tag_that_is_not_there_is_done_unless_asked_to_find_it(ddfs: DDFS) -> None:
    # A real 0.5.4 master answers 200 "deleted" (checked on one); the test master answered
    # 404 "Tag not found." (probe DZ S1).
    ddfs.delete("data:never-made")
    with pytest.raises(TagNotFound, match="data:never-made"):
        ddfs.delete("data:never-made", missing_ok=False)
    assert "data:never-made" not in ddfs.list_tags("data:never")
