"""Cached and resumed runs (``cache=True``): what is reused, and what never is.

Each test has an empty cache of its own (``DISCODSL_CACHE_DIR``, tests/conftest.py).
Stages leave a mark per task (tests/cache_jobs.py), so a test sees what ran.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discodsl import DataError, JobDead, JobError, SettingsError, TaskFailed, places
from discodsl.caching import reuse, store
from discodsl.ddfs import DDFS
from discodsl.worker import owners
from discodsl.worker.records import RecordWriter
from tests import cache_jobs
from tests.cache_jobs import ran

LINES = "the cat sat\non the mat the end\n"


@pytest.fixture
def marks(tmp_path: Path) -> str:
    path = tmp_path / "marks"
    path.mkdir()
    return str(path)


@pytest.fixture
def text(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text(LINES)
    return path


def counted(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in text.split():
        counts[word] = counts.get(word, 0) + 1
    return counts


def clear(marks: str) -> None:
    for path in Path(marks).iterdir():
        path.unlink()


# ---------------------------------------------------------------- cached runs


def test_a_cached_run_of_a_prefixed_job_keeps_its_runs_name(
    mode: str, marks: str, text: Path
) -> None:
    # Inline, a run named after its prefix= was served as a run named after the job's
    # function (probe DA F1).
    job = cache_jobs.wordcount(marks).with_options(prefix="counted")
    first = job.run([text], mode=mode, cache=True)
    assert first.jobname.partition("@")[0] == "counted"
    assert job.run([text], mode=mode, cache=True).jobname == first.jobname


def test_an_identical_run_is_served_from_the_cache(
    mode: str, marks: str, text: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    job = cache_jobs.wordcount(marks)
    first = job.run([text], mode=mode, cache=True)
    assert first.to_dict() == counted(LINES) and ran(marks)
    clear(marks)
    capfd.readouterr()
    again = job.run([text], mode=mode, cache=True)
    assert again.to_dict() == counted(LINES)
    assert ran(marks) == {}  # no task ran
    assert again.jobname == first.jobname
    notice = [line for line in capfd.readouterr().err.splitlines() if "cached" in line]
    assert notice == [
        f"discodsl: cached results of job 'cached_wordcount' from run {first.jobname} "
        f"({notice[0].split(' (', 1)[1].split(')')[0]}); cache=False (--no-cache on the "
        "command line) runs it again"
    ]
    assert sorted(again.stage("words")) == sorted(first.stage("words"))


def test_without_cache_nothing_is_kept_or_reused(marks: str, text: Path) -> None:
    job = cache_jobs.wordcount(marks)
    job.run([text], mode="local")
    assert store.entries() == []
    job.run([text], mode="local", cache=True)
    clear(marks)
    job.run([text], mode="local", cache=False)
    assert ran(marks)


def test_a_served_run_is_a_run(marks: str, text: Path) -> None:
    job = cache_jobs.wordcount(marks)
    first = job.run([text], mode="local", cache=True)
    run = job.submit([text], mode="local", cache=True)
    assert run.wait().to_dict() == first.to_dict()
    assert run.status == "ready" and run.jobname == first.jobname
    messages = [message for _, _, message in run.events()]
    assert f"Results of run {first.jobname} reused from the cache" in messages
    assert messages[-1].startswith("READY: Job done in")


@pytest.mark.parametrize(
    "change", ["edited stage", "closure value", "global value", "params", "partitions", "job name"]
)
def test_a_change_gives_a_fresh_run(
    change: str, marks: str, text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = cache_jobs.wordcount(marks)
    job.run([text], mode="inline", cache=True)
    clear(marks)
    other: Any = job
    options: dict[str, Any] = {}
    if change == "edited stage":
        other = cache_jobs.edited_wordcount(marks)
    elif change == "closure value":
        other = cache_jobs.wordcount(marks, weight=2)
    elif change == "global value":
        monkeypatch.setattr(cache_jobs, "SCALE", 3)
    elif change == "params":
        options = {"params": {"any": 1}}
    elif change == "partitions":
        options = {"partitions": 5}
    else:
        other = cache_jobs.wordcount(marks, name="another_wordcount")
    results = other.run([text], mode="inline", cache=True, **options)
    assert ran(marks).get("words")
    fresh = other.run([text], mode="inline", **options).to_dict()
    assert results.to_dict() == fresh


def test_the_same_closure_value_again_is_served(marks: str, text: Path) -> None:
    cache_jobs.wordcount(marks, weight=2).run([text], mode="inline", cache=True)
    cache_jobs.wordcount(marks, weight=3).run([text], mode="inline", cache=True)
    clear(marks)
    results = cache_jobs.wordcount(marks, weight=2).run([text], mode="inline", cache=True)
    assert ran(marks) == {} and results.to_dict() == {k: 2 * v for k, v in counted(LINES).items()}


def test_a_touched_input_gives_a_fresh_run(marks: str, text: Path) -> None:
    job = cache_jobs.wordcount(marks)
    job.run([text], mode="inline", cache=True)
    clear(marks)
    stat = text.stat()
    os.utime(text, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    job.run([text], mode="inline", cache=True)
    assert ran(marks).get("words")


def test_by_content_a_touched_input_is_the_same_and_an_edited_one_is_not(
    marks: str, text: Path
) -> None:
    job = cache_jobs.wordcount(marks)
    job.run([text], mode="inline", cache=True, cache_by="content")
    clear(marks)
    stat = text.stat()
    os.utime(text, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    job.run([text], mode="inline", cache=True, cache_by="content")
    assert ran(marks) == {}
    text.write_text(LINES.replace("cat", "dog"))  # same size
    os.utime(text, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # and time
    results = job.run([text], mode="inline", cache=True, cache_by="content")
    assert ran(marks).get("words") and "dog" in results.to_dict()


def test_another_runner_does_not_serve(marks: str, text: Path) -> None:
    job = cache_jobs.wordcount(marks)
    job.run([text], mode="inline", cache=True)
    clear(marks)
    job.run([text], mode="local", cache=True)
    assert ran(marks).get("words")


def test_earlier_results_as_inputs_stand_for_their_run(marks: str, text: Path) -> None:
    first = cache_jobs.wordcount(marks)
    second = cache_jobs.histogram(marks)
    upstream = first.run([text], mode="local", cache=True)
    downstream = second.run(upstream, mode="local", cache=True).to_dict()
    clear(marks)
    again = second.run(first.run([text], mode="local", cache=True), mode="local", cache=True)
    assert ran(marks) == {} and again.to_dict() == downstream
    fresh_upstream = first.run([text], mode="local")  # another run: other files
    clear(marks)
    second.run(fresh_upstream, mode="local", cache=True)
    assert ran(marks).get("by_count")


# ---------------------------------------------------------------- the store


def test_a_damaged_entry_gives_a_fresh_run_and_no_error(marks: str, text: Path) -> None:
    job = cache_jobs.wordcount(marks)
    job.run([text], mode="local", cache=True)
    entries = store.entries()
    assert {entry.stage for entry in entries} == {"words", "total"}
    last = next(entry for entry in entries if entry.last)
    last.files()[0].unlink()
    (next(entry for entry in entries if not entry.last).path / store.ENTRY).write_text("{nonsense")
    clear(marks)
    assert job.run([text], mode="local", cache=True).to_dict() == counted(LINES)
    assert ran(marks).get("words") and ran(marks).get("total")


@pytest.mark.parametrize("mode", ["local", "inline"])
def test_a_truncated_file_in_an_entry_gives_a_fresh_run(marks: str, text: Path, mode: str) -> None:
    job = cache_jobs.wordcount(marks)
    job.run([text], mode=mode, cache=True)
    last = next(entry for entry in store.entries() if entry.last)
    kept = last.files()[0]
    with open(kept, "r+b") as damaged:
        damaged.truncate(kept.stat().st_size // 2)
    clear(marks)
    assert job.run([text], mode=mode, cache=True).to_dict() == counted(LINES)
    assert ran(marks).get("total")


@pytest.mark.parametrize("mode", ["local", "inline"])
def test_a_flipped_byte_in_an_entry_gives_a_fresh_run(marks: str, text: Path, mode: str) -> None:
    """Bit rot that keeps every size (or an edit of a hard-linked file) is found too."""
    job = cache_jobs.wordcount(marks)
    job.run([text], mode=mode, cache=True)
    for entry in store.entries():
        kept = entry.files()[0]
        data = bytearray(kept.read_bytes())
        data[len(data) // 2] ^= 0x20
        kept.write_bytes(bytes(data))
    # Listing (and trimming after each kept stage) reads no file's contents: the whole
    # cache is not read again each time; a run about to reuse an entry checks it.
    assert len(store.entries()) == 2
    clear(marks)
    assert job.run([text], mode=mode, cache=True).to_dict() == counted(LINES)
    assert ran(marks).get("words") and ran(marks).get("total")
    again = job.run([text], mode=mode, cache=True)  # the fresh run was kept in their place
    assert again.to_dict() == counted(LINES)


def test_the_least_recently_used_entries_go_past_the_size_limit(
    marks: str, text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_jobs.wordcount(marks, weight=1).run([text], mode="inline", cache=True)
    one_run = store.entries()
    size = sum(entry.size for entry in one_run)
    monkeypatch.setenv("DISCODSL_CACHE_SIZE", str(size))  # room for one run's stages
    cache_jobs.wordcount(marks, weight=2).run([text], mode="inline", cache=True)
    left = store.entries()
    assert {e.key for e in left}.isdisjoint(e.key for e in one_run) and len(left) == 2
    assert sum(entry.size for entry in left) <= size
    clear(marks)
    cache_jobs.wordcount(marks, weight=2).run([text], mode="inline", cache=True)
    assert ran(marks) == {}  # the newer run was kept
    cache_jobs.wordcount(marks, weight=1).run([text], mode="inline", cache=True)
    assert ran(marks).get("words")  # the older one was evicted


@pytest.mark.parametrize("mode", ["inline", "local"])
@pytest.mark.parametrize("gone", ["evicted", "cleared"])
def test_served_results_stay_whole_when_their_entry_goes(
    marks: str, text: Path, monkeypatch: pytest.MonkeyPatch, mode: str, gone: str
) -> None:
    """Results served from the cache, not read yet, and the entries evicted by another
    cached job (a notebook's next cell) or cleared from another shell: they read whole, and
    so do the outputs of the stage before the last."""
    job = cache_jobs.wordcount(marks)
    first = job.run([text], mode=mode, cache=True)
    words = sorted(first.stage("words"))
    first.close()
    served = job.run([text], mode=mode, cache=True)
    kept = store.entries()
    if gone == "cleared":
        store.clear()
    else:
        monkeypatch.setenv("DISCODSL_CACHE_SIZE", str(sum(e.size for e in kept)))
        cache_jobs.wordcount(marks, weight=2).run([text], mode=mode, cache=True).close()
    assert {e.key for e in kept}.isdisjoint(e.key for e in store.entries())
    assert served.to_dict() == counted(LINES)
    assert sorted(served.stage("total")) == sorted(counted(LINES).items())
    assert sorted(served.stage("words")) == words


def test_a_resumed_run_reads_the_stage_it_reuses_whatever_happens_to_its_entry(
    marks: str, text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry of the stage a run resumes after, cleared (or evicted by a run beside it)
    once the run found it, before its tasks read it: the run's tasks failed."""
    with pytest.raises(TaskFailed):
        cache_jobs.four_stages(marks, broken=True).run([text], mode="local", cache=True)
    clear(marks)
    monkeypatch.setattr(store, "touch", lambda entry: store.clear())  # as it is found
    fixed = cache_jobs.four_stages(marks, broken=False)
    resumed = fixed.run([text], mode="local", cache=True)
    assert set(ran(marks)) == {"by_count", "histogram"}  # it resumed after total
    monkeypatch.undo()
    assert resumed.to_dict() == fixed.run([text], mode="local").to_dict()
    assert sorted(resumed.stage("total")) == sorted(fixed.run([text], mode="local").stage("total"))


@pytest.mark.parametrize("mode", ["inline", "local", "cluster"])
def test_a_resumed_run_refuses_a_kept_file_changed_since_its_task_wrote_it(
    mode: str,
    marks: str,
    text: Path,
    damageable_cluster: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A run resuming after a cached stage read that stage's files unchecked: one replaced
    # by a shorter whole record file, on the master or once the run had found it here,
    # gave other records (probe DE F1).
    with pytest.raises((TaskFailed, ValueError)):  # inline: the stage's own error
        cache_jobs.four_stages(marks, broken=True).run([text], mode=mode, cache=True)
    clear(marks)
    [kept] = [entry for entry in store.entries() if entry.stage == "total"]
    files = [(size, url) for _, size, urls in kept.urls() for url in urls]
    if mode == "cluster":  # the stage's results stay on the master: its indexes list them
        from discodsl.client import Master

        with Master(os.environ["DISCO_MASTER"]) as master:
            indexes = [index for [index] in master.stageresults(kept.run, "total")]
        lines = [line for index in indexes for line in damageable_cluster(index).open()]
        files = [(int(size), url) for _, url, size in map(str.split, lines)]
    url = next(url for size, url in files if size > 30)
    empty = _no_records(text.parent / "empty")

    def damaged(entry: store.Entry) -> None:  # as the run finds the entry: here, in place
        damageable_cluster(url).write_bytes(empty)

    monkeypatch.setattr(store, "touch", damaged)
    fixed = cache_jobs.four_stages(marks, broken=False)
    failed = DataError if mode == "inline" else TaskFailed
    with pytest.raises(failed, match=r"is \d+ bytes, where the cache entry of .* says \d+"):
        fixed.run([text], mode=mode, cache=True)
    assert not {"words", "total"} & set(ran(marks))  # it resumed after them


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_results_served_from_the_cache_refuse_a_file_changed_since(
    mode: str, marks: str, text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = cache_jobs.wordcount(marks)
    job.run([text], mode=mode, cache=True).close()
    [kept] = [entry for entry in store.entries() if entry.stage == "total"]
    path = next(path for path in kept.files() if path.stat().st_size > 30)
    empty = _no_records(text.parent / "empty")
    monkeypatch.setattr(store, "touch", lambda entry: path.write_bytes(empty))
    served = job.run([text], mode=mode, cache=True)
    with pytest.raises(DataError, match=r"is \d+ bytes, where the .* run .* says \d+"):
        list(served)


def _no_records(path: Path) -> bytes:
    """The bytes of a whole record file of no records."""
    with RecordWriter(str(path)):
        pass
    return path.read_bytes()


def test_links_held_for_a_run_go_with_its_results_and_a_dead_processes_with_a_clear(
    marks: str, text: Path
) -> None:
    job = cache_jobs.wordcount(marks)
    job.run([text], mode="local", cache=True).close()
    served = job.run([text], mode="local", cache=True)
    held = list(store.cache_dir().glob(f"{store.HELD}{os.getpid()}-*"))
    assert len(held) == 2 and all(list(links.iterdir()) for links in held)  # both stages
    dead = store.cache_dir() / f"{store.HELD}4194304-x"  # 2**22: no process has it
    dead.mkdir()
    store.clear()
    assert all(links.is_dir() for links in held) and not dead.exists()  # a live run's stay
    assert served.to_dict() == counted(LINES)
    served.close()
    assert not any(links.exists() for links in held)


def test_links_and_entries_of_a_process_of_another_pid_namespace_are_left_alone(
    marks: str, text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Containers sharing the cache directory (a mounted ~/.cache) do not share pids: a run
    of another one, its pid no process here, lost the links it read (and an entry it was
    writing) to this one's trim. What a process of this namespace left stays as before."""
    namespace = places.pid_namespace()
    assert namespace is not None
    monkeypatch.setattr(owners, "_namespaces", lambda: {namespace, namespace + 1})  # theirs runs
    store.cache_dir().mkdir(parents=True, exist_ok=True)
    theirs = [
        store.cache_dir() / f"{prefix}4194304-n{namespace + 1}-x"
        for prefix in (store.HELD, store.NEW)
    ]
    ours = [
        store.cache_dir() / f"{prefix}4194304-n{namespace}-y" for prefix in (store.HELD, store.NEW)
    ]
    for path in theirs + ours:
        path.mkdir()
    cache_jobs.wordcount(marks).run([text], mode="local", cache=True).close()  # keeps: trims
    assert all(path.is_dir() for path in theirs) and not any(path.exists() for path in ours)
    store.clear()  # which takes every entry being written, as it takes every entry
    assert theirs[0].is_dir()  # what a run reads stays
    held = store.hold_prefix()  # this process's own, as the trim reads it
    assert held.startswith(f"{store.HELD}{os.getpid()}-n{namespace}-")


def test_a_clear_removes_only_what_is_the_caches(marks: str, text: Path) -> None:
    # With DISCODSL_CACHE_DIR=~/.cache, `cache clear` removed pip/ and the rest.
    cache_jobs.wordcount(marks).run([text], mode="local", cache=True).close()
    root = store.cache_dir()
    (root / "pip" / "wheels").mkdir(parents=True)
    (root / "notes.txt").write_text("mine")
    half = root / ("0" * 40)  # an entry's directory whose entry.json was never written
    half.mkdir()
    assert len(store.clear()) == 2 and not half.exists()
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt", "pip"]


def _undeletable(patch: pytest.MonkeyPatch, stuck: Path) -> None:
    """Nothing in or of ``stuck`` can be removed, as on a read-only mount (the tests run as
    root, whom no chmod stops): unlink and rmdir refuse it."""
    for name in ("unlink", "rmdir"):
        patch.setattr(os, name, _refusing(getattr(os, name), stuck))


def _refusing(real: Any, stuck: Path) -> Any:
    """``real`` (os.unlink or os.rmdir), failing as a read-only file system for ``stuck``."""

    def refusing(path: str, *, dir_fd: int | None = None) -> Any:
        folder = "" if dir_fd is None else os.readlink(f"/proc/self/fd/{dir_fd}")
        where = Path(folder, os.fsdecode(path))
        if where == stuck or stuck in where.parents:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(where))
        return real(path, dir_fd=dir_fd)

    return refusing


def test_a_clear_that_cannot_remove_an_entry_names_it_and_counts_only_what_went(
    marks: str, text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read-only mount, or another user's cache: clear counted every stage as removed.
    cache_jobs.wordcount(marks).run([text], mode="local", cache=True).close()
    stuck, other = store.entries()
    with monkeypatch.context() as patch, pytest.raises(store.NotCleared) as info:
        _undeletable(patch, stuck.path)
        store.clear()
    assert [entry.key for entry in info.value.removed] == [other.key]
    assert stuck.path.is_dir() and not other.path.exists()
    assert isinstance(info.value, SettingsError)  # the command line's one error line
    message = str(info.value)
    assert f"{stuck.key} (Read-only file system)" in message
    assert "point DISCODSL_CACHE_DIR at a directory this user can write" in message


def test_an_entry_a_killed_process_was_writing_goes_when_the_cache_is_next_trimmed(
    marks: str, text: Path
) -> None:
    # It stayed for good, counted by no limit, until `cache clear` removed everything.
    store.cache_dir().mkdir(parents=True, exist_ok=True)
    dead = store.cache_dir() / f"{store.NEW}4194304-x"  # 2**22: no process has it
    dead.mkdir()
    (dead / "00000").write_bytes(b"x" * 1000)
    live = store.cache_dir() / f"{store.NEW}{os.getpid()}-y"  # one being written now
    live.mkdir()
    cache_jobs.wordcount(marks).run([text], mode="local", cache=True).close()  # keeps: trims
    assert not dead.exists() and live.is_dir()
    assert [p.name for p in store.cache_dir().glob(f"{store.NEW}*")] == [live.name]


def test_an_output_larger_than_the_limit_is_not_kept_and_says_so(
    marks: str, text: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DISCODSL_CACHE_SIZE", "10")
    results = cache_jobs.wordcount(marks).run([text], mode="local", cache=True)
    assert results.to_dict() == counted(LINES) and store.entries() == []
    said = [line for line in capfd.readouterr().err.splitlines() if "not kept" in line]
    assert len(said) == 2  # each stage, with its size
    for line, stage in zip(said, ["words", "total"], strict=True):
        assert line.startswith(f"discodsl: stage {stage!r} of job 'cached_wordcount' is not kept")
        assert line.endswith(" bytes, more than DISCODSL_CACHE_SIZE=10")


def test_stages_too_large_of_one_size_are_each_said_not_kept(
    text: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # Said once per reason: a second stage writing as many bytes (a map passing records
    # on) was left out of the cache without a word.
    from discodsl import job, map

    @map
    def pairs(line: str) -> Any:
        yield line, 1

    @map
    def passon(record: Any) -> Any:
        yield record

    @job(partitions=None)
    def two() -> list[Any]:
        return [pairs, passon]

    monkeypatch.setenv("DISCODSL_CACHE_SIZE", "10")
    two.run([text], mode="local", cache=True, progress=False)
    said = [line for line in capfd.readouterr().err.splitlines() if "not kept" in line]
    assert [line.split("'")[1] for line in said] == ["pairs", "passon"], said


def _cluster_entry() -> store.Entry:
    """A cluster run's kept stage: 0 bytes here (its outputs stay on the master)."""
    return store.Entry(
        key="0" * 40,
        job="wc",
        run="wc@5c1:2a3b4:5c6d7",
        stage="words",
        index=0,
        stages=1,
        where="http://master:8989",
        outputs=[(0, 12, ["disco://node/words-0"])],
    )


def test_a_size_limit_of_0_keeps_nothing_not_even_a_clusters_stages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cluster run's stages are 0 bytes here (their outputs stay on the master): under
    # DISCODSL_CACHE_SIZE=0 they were kept, and served, though 0 is said to keep nothing.
    entry = _cluster_entry()
    store.keep(entry, [[None]])  # under the default limit
    assert [kept.key for kept in store.entries()] == [entry.key]
    monkeypatch.setenv("DISCODSL_CACHE_SIZE", "0")
    with pytest.raises(store.NotKept, match="DISCODSL_CACHE_SIZE=0 keeps nothing"):
        store.keep(dataclasses.replace(entry, key="1" * 40), [[None]])
    assert store.entries() == []  # what was kept before the limit went to 0 goes too


@pytest.mark.parametrize(
    ("number", "said"),
    [
        (errno.ENOSPC, "is full: [Errno 28] No space left on device: free space there, set "),
        (errno.EACCES, "cannot be written: [Errno 13] Permission denied: point DISCODSL_CACHE"),
    ],
)
def test_a_cache_on_a_full_disk_is_told_to_free_space(
    monkeypatch: pytest.MonkeyPatch, number: int, said: str
) -> None:
    # A full disk was told to point DISCODSL_CACHE_DIR at a directory "this user can write"
    # (probe DT F6).
    def failing(*args: object) -> None:
        raise OSError(number, os.strerror(number))

    monkeypatch.setattr(store, "_write", failing)
    entry = _cluster_entry()
    with pytest.raises(store.NotKept) as caught:
        store.keep(entry, [[None]])
    assert said in str(caught.value), caught.value


def test_an_unwritable_cache_says_so_and_the_run_goes_on(
    marks: str,
    text: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("DISCODSL_CACHE_DIR", str(blocked / "cache"))
    results = cache_jobs.wordcount(marks).run([text], mode="inline", cache=True)
    assert results.to_dict() == counted(LINES)
    said = capfd.readouterr().err
    assert said.count("is not kept in the cache: ") == 1  # the same for every stage: once
    # A file where the cache goes was called a cache this user cannot write (probe DO S4).
    assert "cannot be made: " in said and "a file stands where one of its directories" in said


def test_stages_that_cannot_be_pickled_run_without_the_cache(
    text: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import threading

    from discodsl import PicklingError, job, map

    lock = threading.Lock()

    @map
    def locked(line: str) -> Any:
        with lock:
            yield line, 1

    @job
    def unpicklable() -> list[Any]:
        return [locked]

    assert len(unpicklable.run([text], mode="inline", cache=True).to_dict()) == 2
    assert "job 'unpicklable' runs without the cache: its stages cannot be pickled" in (
        capfd.readouterr().err
    )
    with pytest.raises(PicklingError, match="closure variable 'lock'"):
        unpicklable.run([text], mode="local", cache=True)


@pytest.mark.parametrize("mode", ["inline", "local"])
@pytest.mark.parametrize("value", ["lots", "-1", "1T", "1.5", ".5G"])
def test_a_bad_size_limit_says_what_to_write_before_any_task_runs(
    value: str, mode: str, marks: str, text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was read when the first stage was kept: that stage's work was lost, and on a
    # master the whole job ran before the client said so.
    monkeypatch.setenv("DISCODSL_CACHE_SIZE", value)
    with pytest.raises(SettingsError, match=r"DISCODSL_CACHE_SIZE=.* is not a size: give bytes"):
        cache_jobs.wordcount(marks).submit([text], mode=mode, cache=True)
    assert os.listdir(marks) == []


@pytest.mark.parametrize(
    ("value", "size"),
    [
        *[("500M", 500 << 20), ("2G", 2 << 30), ("1024", 1024), ("64k", 64 << 10)],
        *[("1.5G", 3 << 29), ("0.5 MiB", 1 << 19), ("2.5K", 2560)],
    ],
)
def test_sizes_with_units(value: str, size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCODSL_CACHE_SIZE", value)
    assert store.limit() == size


def test_a_bad_cache_by_names_the_choices() -> None:
    with pytest.raises(SettingsError, match="use 'stat' or 'content'"):
        cache_jobs.wordcount("/nowhere").with_options(cache_by="mtime")


# ---------------------------------------------------------------- resumed runs


def test_a_failed_pipeline_resumes_after_the_stages_that_finished(
    mode: str, marks: str, text: Path
) -> None:
    broken = cache_jobs.four_stages(marks, broken=True)
    with pytest.raises((TaskFailed, ValueError)):
        broken.run([text], mode=mode, cache=True)
    assert ran(marks).get("total")
    clear(marks)
    fixed = cache_jobs.four_stages(marks, broken=False)
    resumed = fixed.run([text], mode=mode, cache=True)
    assert set(ran(marks)) == {"by_count", "histogram"}  # words and total did not run again
    fresh = fixed.run([text], mode=mode)
    assert sorted(resumed) == sorted(fresh)
    assert sorted(resumed.stage("total")) == sorted(fresh.stage("total"))
    assert sorted(resumed.stage("by_count")) == sorted(fresh.stage("by_count"))


def test_a_resumed_run_says_what_it_reuses(
    marks: str, text: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(TaskFailed):
        cache_jobs.four_stages(marks, broken=True).run([text], mode="local", cache=True)
    first = store.load(next(e.key for e in store.entries() if e.stage == "total"))
    assert first is not None
    capfd.readouterr()
    cache_jobs.four_stages(marks, broken=False).run([text], mode="local", cache=True)
    lines = [line for line in capfd.readouterr().err.splitlines() if "resuming" in line]
    assert len(lines) == 1
    assert lines[0].startswith(
        "discodsl: resuming job 'counts_of_counts' after stage 'total': the outputs of "
        f"words, total are reused from run {first.run} ("
    )


def test_a_resumed_run_counts_what_a_fresh_one_counts(mode: str, marks: str, text: Path) -> None:
    with pytest.raises((TaskFailed, ValueError)):
        cache_jobs.four_stages(marks, broken=True).run([text], mode=mode, cache=True)
    fixed = cache_jobs.four_stages(marks, broken=False)
    fresh = fixed.run([text], mode=mode).counters
    assert fresh == {"words": 8, "distinct": 6}
    assert fixed.run([text], mode=mode, cache=True).counters == fresh
    assert fixed.run([text], mode=mode, cache=True).counters == fresh  # served


def test_a_dead_jobs_finished_stages_stay_on_the_master(cluster_env: str, marks: str) -> None:
    """As on a real 0.5.4 master: a job that died in its third stage still answers
    get_stageresults for the two before it (event_server keeps every stage_ready)."""
    from discodsl.client import Master
    from discodsl.errors import ClientError

    run = cache_jobs.four_stages(marks, broken=True).submit(["raw://a b a"])
    with pytest.raises(TaskFailed):
        run.wait()
    master = Master(cluster_env)
    assert master.stageresults(run.jobname, "words")
    assert master.stageresults(run.jobname, "total")
    with pytest.raises(ClientError, match="has not finished"):
        master.stageresults(run.jobname, "by_count")


def test_a_killed_run_resumes_after_the_stages_that_finished(marks: str, text: Path) -> None:
    run = cache_jobs.four_stages(marks, broken="hangs").submit([text], mode="local", cache=True)
    deadline = time.monotonic() + 60
    while not any(entry.stage == "total" for entry in store.entries()):
        assert time.monotonic() < deadline and not run.ended(0.05), "total was never kept"
    run.kill()
    with pytest.raises(JobDead):
        run.wait()
    clear(marks)
    fixed = cache_jobs.four_stages(marks, broken=False)
    resumed = fixed.run([text], mode="local", cache=True)
    assert set(ran(marks)) == {"by_count", "histogram"}
    assert resumed.to_dict() == fixed.run([text], mode="local").to_dict()


# ---------------------------------------------------------------- never the wrong results

TEXTS = ["the cat sat\non the mat\n", "a b a\n", "the cat sat\non the hat\n"]
CONFIGS = st.tuples(
    st.sampled_from(["plain", "weighted", "named", "edited"]),
    st.sampled_from([1, 2]),  # a closure value, or params
    st.sampled_from([1, 3]),  # partitions
    st.sampled_from(range(len(TEXTS))),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(configs=st.lists(CONFIGS, min_size=2, max_size=5))
def test_a_cached_run_is_what_a_fresh_run_of_that_job_gives(
    configs: list[tuple[str, int, int, int]], marks: str, tmp_path: Path
) -> None:
    """Whatever ran before with the cache (other jobs, stages, values, inputs), a cached
    run's records are those of a fresh run of the same job over the same inputs."""
    for kind, value, partitions, number in configs:
        path = tmp_path / f"text-{number}.txt"
        if not path.exists():
            path.write_text(TEXTS[number])
        options: dict[str, Any] = {"partitions": partitions}
        if kind == "plain":
            job = cache_jobs.wordcount(marks, weight=value)
        elif kind == "named":
            job = cache_jobs.wordcount(marks, weight=value, name="renamed")
        elif kind == "edited":
            job = cache_jobs.edited_wordcount(marks)
        else:
            job, options["params"] = cache_jobs.weighted(marks), value
        cached = job.run([path], mode="inline", cache=True, **options).to_dict()
        assert cached == job.run([path], mode="inline", **options).to_dict()


def test_a_run_in_another_process_is_served(tmp_path: Path, text: Path) -> None:
    """Keys do not depend on the process: a script run twice is served the second time."""
    script = tmp_path / "count.py"
    script.write_text(
        "import sys\n"
        "from discodsl import job, map, reduce\n"
        "LIMIT = {'max': 3}\n"
        "@map\n"
        "def words(line):\n"
        "    for w in line.split():\n"
        "        if len(w) <= LIMIT['max']:\n"
        "            yield w, 1\n"
        "@reduce\n"
        "def total(w, counts):\n"
        "    yield w, sum(counts)\n"
        "@job(partitions=2)\n"
        "def script_count():\n"
        "    return [words, total]\n"
        "print(sorted(script_count.run([sys.argv[1]], cache=True)))\n"
    )

    def once() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), str(text)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)

    first, second = once(), once()
    assert first.stdout == second.stdout and "('the', 3)" in first.stdout
    assert "cached results" not in first.stderr
    assert "discodsl: cached results of job 'script_count' from run script_count@" in second.stderr


def test_an_inline_run_with_a_helpers_set_is_served_in_another_process(
    tmp_path: Path, text: Path
) -> None:
    """A set of strings pickles in another order in each process: an inline run whose
    helper module holds one (used, or not) ran again in every new process."""
    (tmp_path / "stopwords.py").write_text(
        "STOP = {'the', 'a', 'on', 'of', 'and', 'to', 'in'}\n"
        "UNUSED = {'x', 'y', 'z', 'w'}\n"
        "def kept(word):\n"
        "    return word not in STOP\n"
    )
    script = tmp_path / "count.py"
    script.write_text(
        "import sys\n"
        "import stopwords\n"
        "from discodsl import job, map, reduce\n"
        "@map\n"
        "def words(line):\n"
        "    for w in line.split():\n"
        "        if stopwords.kept(w) and w not in stopwords.STOP:\n"
        "            yield w, 1\n"
        "@reduce\n"
        "def total(w, counts):\n"
        "    yield w, sum(counts)\n"
        "@job(partitions=2)\n"
        "def stopped():\n"
        "    return [words, total]\n"
        "print(sorted(stopped.run([sys.argv[1]], cache=True, mode='inline')))\n"
    )

    def once(seed: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), str(text)]
        env = {**os.environ, "PYTHONHASHSEED": seed}
        return subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=True, env=env
        )

    first, second = once("1"), once("2")  # set orders differ between the two
    assert first.stdout == second.stdout and "('the'" not in first.stdout
    assert "cached results" not in first.stderr
    assert "discodsl: cached results of job 'stopped'" in second.stderr


# Each way a helper imports its module, and each way the stage imports the helper, once,
# in pairs (all nine pairs took about 4 s each, a tenth of a minute of the suite's ten).
@pytest.mark.parametrize(
    ("helper", "stage_imports"),
    [
        ("from helpers import hdep\ndef f(w):\n    return hdep.X\n", "from helpers import hmod\n"),
        ("from helpers.hdep import X\ndef f(w):\n    return X\n", "    from helpers import hmod\n"),
        ("from .hdep import X\ndef f(w):\n    return X\n", "    import helpers.hmod as hmod\n"),
    ],
    ids=["import-at-the-top", "from-import-in-its-body", "relative-in-its-body-dotted"],
)
def test_a_module_a_helper_imports_is_part_of_the_key(
    tmp_path: Path, text: Path, helper: str, stage_imports: str
) -> None:
    """A stage calls a helper of a module of the user's (imported by name, not shipped: at
    the top of the script, or in the stage's body, where the driver never runs it), which
    takes a value from another such module: editing either gives a fresh run."""
    package = tmp_path / "helpers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "hmod.py").write_text(helper)
    script = tmp_path / "scaled.py"
    top, body = ("", stage_imports) if stage_imports.startswith(" ") else (stage_imports, "")
    script.write_text(
        "import sys\n"
        "from discodsl import job, map, reduce\n"
        f"{top}"
        "@map\n"
        "def words(line):\n"
        f"{body}"
        "    for w in line.split():\n"
        "        yield w, hmod.f(w)\n"
        "@reduce\n"
        "def total(w, counts):\n"
        "    yield w, sum(counts)\n"
        "@job(partitions=2)\n"
        "def scaled():\n"
        "    return [words, total]\n"
        "print(sorted(scaled.run([sys.argv[1]], cache=True, mode=sys.argv[2])))\n"
    )

    def run(mode: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), str(text), mode]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path
        )

    for mode in ("inline", "local"):
        (package / "hmod.py").write_text(f"{helper}# {mode}\n")
        (package / "hdep.py").write_text(f"X = 1  # {mode}\n")
        assert "('the', 3)" in run(mode).stdout
        (package / "hdep.py").write_text(f"X = 2  # {mode}\n")
        changed = run(mode)
        assert "('the', 6)" in changed.stdout, changed.stderr
        assert "cached results" not in changed.stderr
        assert "cached results" in run(mode).stderr  # unchanged since: served
        (package / "hmod.py").write_text(helper.replace("return ", "return 2 * "))
        twice = run(mode)
        assert "('the', 12)" in twice.stdout, twice.stderr
        assert "cached results" not in twice.stderr


def test_inline_a_module_edited_but_not_reloaded_is_keyed_by_the_code_that_runs(
    tmp_path: Path, text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inline, the stages run the helper module as it was imported; its file, edited since
    and not reloaded, must not key what that code made (a restarted kernel, importing the
    edited file, would be served it)."""
    name = f"helper_{uuid.uuid4().hex}"
    module = tmp_path / f"{name}.py"
    module.write_text("def weight(word):\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    job = cache_jobs.helped_wordcount(importlib.import_module(name))

    assert job.run([text], mode="inline", cache=True).to_dict() == counted(LINES)
    module.write_text("def weight(word):\n    return 10  # edited, not reloaded\n")
    assert job.run([text], mode="inline", cache=True).to_dict() == counted(LINES)  # old code
    sys.modules.pop(name)  # a restarted kernel: the edited file imported
    job = cache_jobs.helped_wordcount(importlib.import_module(name))
    assert job.run([text], mode="inline", cache=True).to_dict() == {
        word: 10 * n for word, n in counted(LINES).items()
    }


def test_inline_a_helper_modules_global_changed_in_place_gives_a_fresh_run(
    tmp_path: Path, text: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Inline, the stages read the helper module's globals as this process holds them: one
    changed in place (a dict's item, an instance's attribute) is a change of the stage."""
    name = f"helper_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "import threading, types\n"
        "TABLE = {'w': 1}\n"
        "CONFIG = types.SimpleNamespace(scale=1)\n"
        "LOCK = threading.Lock()  # does not pickle: keyed by its type\n"
        "def weight(word):\n"
        "    return TABLE['w'] * CONFIG.scale\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    monkeypatch.setitem(sys.modules, name, module)
    job = cache_jobs.helped_wordcount(module)
    for weight in (1, 5, 10):
        if weight == 5:
            module.TABLE["w"] = 5
        if weight == 10:
            module.CONFIG.scale = 2
        capfd.readouterr()
        results = job.run([text], mode="inline", cache=True)
        assert results.to_dict() == {word: weight * n for word, n in counted(LINES).items()}
        assert "cached results" not in capfd.readouterr().err  # each change: a fresh run
        assert job.run([text], mode="inline", cache=True).to_dict() == results.to_dict()
        assert "cached results" in capfd.readouterr().err  # unchanged since: served


def test_one_job_cached_from_several_threads_at_once(
    marks: str, text: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The same job, same key, run by four threads at once: each gets its results whole,
    the entry is kept once, and nothing says the cache cannot be written."""
    job = cache_jobs.wordcount(marks, name="shared_count")
    for mode in ("inline", "local", "inline"):
        with ThreadPoolExecutor(4) as pool:
            found = list(
                pool.map(lambda m: job.run([text], cache=True, mode=m).to_dict(), [mode] * 4)
            )
        assert found == [counted(LINES)] * 4
    assert "cannot be written" not in capfd.readouterr().err
    kept = sorted((entry.stage, entry.where) for entry in store.entries())
    assert kept == [
        ("total", "inline"),
        ("total", "local"),
        ("words", "inline"),
        ("words", "local"),
    ]


@pytest.mark.parametrize("mode", ["local", "inline"])
def test_an_entry_kept_after_a_run_looked_stays(
    mode: str, marks: str, text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that found nothing to reuse, beside another that kept the same stages just
    after it looked: the other's entries stay (a third run may be reading their files),
    and this run's are dropped. Replacing them once lost a reader its input in CI."""
    job = cache_jobs.wordcount(marks, name="looked_count")
    looked = reuse.look_up
    kept: dict[str, float] = {}

    def beside(*args: Any) -> Any:
        found = looked(*args)
        monkeypatch.setattr(reuse, "look_up", looked)  # the run beside looks up as usual
        job.run([text], cache=True, mode=mode)
        kept.update({entry.stage: entry.created for entry in store.entries()})
        return found

    monkeypatch.setattr(reuse, "look_up", beside)
    assert job.run([text], cache=True, mode=mode).to_dict() == counted(LINES)
    assert sorted(kept) == ["total", "words"]
    assert {entry.stage: entry.created for entry in store.entries()} == kept


# ---------------------------------------------------------------- on a cluster


def test_a_purged_job_is_run_afresh(cluster_env: str, marks: str, text: Path) -> None:
    from discodsl.client import Master

    job = cache_jobs.wordcount(marks)
    first = job.run([text], cache=True)
    clear(marks)
    assert job.run([text], cache=True).jobname == first.jobname and ran(marks) == {}
    master = Master(cluster_env)
    master.purge(first.jobname)  # asynchronous on the master
    deadline = time.monotonic() + 30
    while first.jobname in {name for *_, name in master.joblist()}:
        assert time.monotonic() < deadline, "the purge never happened"
        time.sleep(0.05)
    again = job.run([text], cache=True)
    assert again.jobname != first.jobname and ran(marks).get("words")
    assert again.to_dict() == counted(LINES)


def test_a_tag_that_changed_gives_a_fresh_run(
    cluster_env: str, marks: str, tmp_path: Path, ddfs: DDFS, ns: str
) -> None:
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("a b a\n")
    two.write_text("b c\n")
    tag = f"{ns}:cache"
    ddfs.push(tag, [one])
    job = cache_jobs.wordcount(marks)
    assert job.run([f"tag://{tag}"], cache=True).to_dict() == {"a": 2, "b": 1}
    clear(marks)
    job.run([f"tag://{tag}"], cache=True)
    assert ran(marks) == {}
    ddfs.push(tag, [two])  # the tag now holds two blobs
    assert job.run([f"tag://{tag}"], cache=True).to_dict() == {"a": 2, "b": 2, "c": 1}
    assert ran(marks).get("words")


def test_saved_results_whose_tag_was_deleted_are_made_again(
    cluster_env: str, marks: str, text: Path
) -> None:
    """A save_results run kept in the cache, its results tag deleted since (the job is
    still on the master): its last stage runs again, over the first stage's outputs the
    master still has, and saves its results again. Serving the deleted tag failed every
    later run, until the cache was cleared."""
    from discodsl.ddfs import DDFS
    from discodsl.settings import load_settings

    job = cache_jobs.wordcount(marks)
    first = job.run([text], cache=True, save_results=True)
    DDFS.from_settings(load_settings()).delete(f"disco:results:{first.jobname}")
    clear(marks)
    again = job.run([text], cache=True, save_results=True)
    assert again.to_dict() == counted(LINES)
    assert set(ran(marks)) == {"total"} and again.jobname != first.jobname
    clear(marks)
    served = job.run([text], cache=True, save_results=True)
    assert served.jobname == again.jobname and served.to_dict() == counted(LINES)
    assert ran(marks) == {}
    DDFS.from_settings(load_settings()).delete(f"disco:results:{again.jobname}")  # a real
    # master keeps it from run to run


STAGES = ["words", "total", "by_count", "histogram"]


@pytest.mark.parametrize("shape", cache_jobs.SHAPES)
@pytest.mark.parametrize(
    ("variant", "at"),
    [
        ("broken", "total"),
        ("edited", "total"),
        ("broken", "by_count"),
        ("edited", "by_count"),
        ("broken", "histogram"),
        ("edited", "histogram"),
    ],
)
def test_a_pipeline_resumes_where_it_failed_or_changed_and_equals_a_fresh_run(
    shape: str, variant: str, at: str, marks: str, tmp_path: Path
) -> None:
    """Whatever the groupings and partitioning: the stages before the broken or edited one
    are reused (labels and all), the rest run, and the records are a fresh run's."""
    resume_and_compare(shape, variant, at, marks, tmp_path, "inline")


@pytest.mark.parametrize("shape", cache_jobs.SHAPES)
def test_resuming_on_every_runner(shape: str, mode: str, marks: str, tmp_path: Path) -> None:
    resume_and_compare(shape, "broken", "by_count", marks, tmp_path, mode)


def resume_and_compare(
    shape: str, variant: str, at: str, marks: str, tmp_path: Path, mode: str
) -> None:
    inputs = []
    for number in range(3):
        path = tmp_path / f"part-{number}.txt"
        path.write_text("".join(f"w{(n * 7 + number) % 11} w{n % 5}\n" for n in range(40)))
        inputs.append(path)
    first = cache_jobs.shaped(marks, shape, variant, at)
    if variant == "broken":
        with pytest.raises((TaskFailed, ValueError)):
            first.run(inputs, mode=mode, cache=True)
    else:
        cache_jobs.shaped(marks, shape).run(inputs, mode=mode, cache=True)
    clear(marks)
    again = first if variant == "edited" else cache_jobs.shaped(marks, shape)
    resumed = again.run(inputs, mode=mode, cache=True)
    # total combines the words' pairs in the map tasks: a change to it is a change to words
    first_changed = STAGES.index(at) - (at == "total")
    assert set(ran(marks)) == set(STAGES[first_changed:])
    fresh = again.run(inputs, mode=mode)
    assert sorted(resumed) == sorted(fresh)
    for stage in STAGES:
        assert sorted(resumed.stage(stage)) == sorted(fresh.stage(stage)), stage


def test_cached_runs_from_two_threads(marks: str, text: Path) -> None:
    """Runs submitted side by side, each keyed, kept and served as if it ran alone."""
    jobs = [cache_jobs.wordcount(marks, weight=w, name=f"thread_count_{w}") for w in (1, 2, 3)]
    for _ in range(2):  # made, then served
        with ThreadPoolExecutor(3) as pool:
            found = list(pool.map(lambda job: job.run([text], cache=True).to_dict(), jobs))
        assert found == [{k: w * v for k, v in counted(LINES).items()} for w in (1, 2, 3)]
    assert {entry.job for entry in store.entries()} == {f"thread_count_{w}" for w in (1, 2, 3)}


def test_a_killed_driver_leaves_its_finished_stages_to_resume(marks: str, text: Path) -> None:
    """The process running the job is killed (SIGKILL) in the third stage; another one
    resumes after the second."""
    code = (
        "import sys; from tests import cache_jobs\n"
        "cache_jobs.four_stages(sys.argv[1], broken='hangs').run([sys.argv[2]], mode='local', "
        "cache=True)\n"
    )
    root = Path(__file__).resolve().parent.parent
    driver = subprocess.Popen([sys.executable, "-c", code, marks, str(text)], cwd=root)
    try:
        deadline = time.monotonic() + 60
        while "by_count" not in ran(marks):  # the third stage has started: two are kept
            assert time.monotonic() < deadline and driver.poll() is None, "no third stage"
            time.sleep(0.05)
    finally:
        driver.kill()
        driver.wait(30)
    clear(marks)
    fixed = cache_jobs.four_stages(marks, broken=False)
    resumed = fixed.run([text], mode="local", cache=True).to_dict()
    assert set(ran(marks)) == {"by_count", "histogram"}
    assert resumed == fixed.run([text]).to_dict()


def test_megabytes_of_results_are_kept_and_served_whole(marks: str, tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("".join(f"v{n} w{n} x{n} y{n} z{n} the\n" for n in range(20_000)))
    job = cache_jobs.wordcount(marks)
    made = job.run([big], mode="local", cache=True).to_dict()
    assert len(made) > 100_000
    assert sum(entry.size for entry in store.entries()) > 2_000_000  # words' and total's
    served = job.run([big], mode="local", cache=True)
    assert served.to_dict() == made


def test_a_reused_stage_whose_outputs_went_says_so(marks: str, text: Path) -> None:
    """A resumed run holds the kept stages before the one it resumes after, as it found
    them: cleared since, they are still read; gone before, the error says so."""
    with pytest.raises(TaskFailed):
        cache_jobs.four_stages(marks, broken=True).run([text], mode="local", cache=True)
    resumed = cache_jobs.four_stages(marks, broken=False).run([text], mode="local", cache=True)
    words = sorted(resumed.stage("words"))
    store.clear()
    assert sorted(resumed.stage("words")) == words  # held for the run
    resumed.close()
    with pytest.raises(TaskFailed):
        cache_jobs.four_stages(marks, broken=True).run([text], mode="local", cache=True)
    [entry] = [entry for entry in store.entries() if entry.stage == "words"]
    shutil.rmtree(entry.path)  # evicted before the run resumes
    resumed = cache_jobs.four_stages(marks, broken=False).run([text], mode="local", cache=True)
    gone = r"the outputs of stage 'words', reused from the cache, are gone since: evicted"
    with pytest.raises(JobError, match=gone):
        resumed.stage("words")
    fresh = cache_jobs.four_stages(marks, broken=False).run([text], mode="local")
    assert sorted(fresh.stage("words"))  # a fresh run's are its own


def test_damaged_results_of_a_cached_run_say_how_to_drop_them(tmp_path: Path) -> None:
    # "re-run that task", and every run again was served the same damaged results from
    # the cache (probe CX F6).
    from discodsl.results import Results
    from discodsl.worker.errors import DataError
    from discodsl.worker.opening import Node
    from discodsl.worker.records import RecordWriter

    path = tmp_path / "total-0-0"
    writer = RecordWriter(str(path))
    writer.write_many([("a", 1)] * 1000)
    writer.close()
    path.write_bytes(path.read_bytes()[:-30])
    results = Results("wc@1:2:3", [[path.as_uri()]], node=Node(), mode="local")
    results.cache_key = "k"
    with pytest.raises(DataError) as info:
        list(results)
    assert "these results are kept in the cache" in str(info.value)
    assert "`discodsl cache clear --job wc`" in str(info.value)


def test_params_too_deep_to_key_are_named_as_what_turns_the_cache_off(
    marks: str, text: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # The notice blamed the stages (probe CY F4).
    nested: Any = frozenset({0})
    for depth in range(250):  # deep enough for the key's pickle, not for the job's
        nested = frozenset({nested, depth})
    job = cache_jobs.wordcount(marks).with_options(params={"deep": [nested]})
    assert job.run([text], mode="inline", cache=True).to_dict() == counted(LINES)
    assert "runs without the cache: its params cannot be pickled to key them" in (
        capfd.readouterr().err
    )
