"""One meaning for a stage on every runner: which failures are retried, counters counted once,
params copied per task, None refused, counters per run, results that cross runners."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from discodsl import (
    DataError,
    JobError,
    Retry,
    SettingsError,
    StageError,
    TaskFailed,
    count,
    job,
    map,
    reduce,
)
from discodsl.errors import PicklingError
from discodsl.worker.counters import MAX_NAME_JSON
from discodsl.worker.records import RecordWriter
from tests import jobs, semantics_jobs
from tests.scripts import run_script

ROOT = Path(__file__).resolve().parent.parent


def _lines(tmp_path: Path, name: str, lines: list[str]) -> str:
    path = tmp_path / name
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


# --- failures: user bugs fail the job at once, I/O and Retry are retried -------------------


@pytest.mark.parametrize("mode", ["local", "cluster"], indirect=True)
def test_a_user_exception_fails_the_job_at_once(tmp_path: Path, mode: str) -> None:
    data = _lines(tmp_path, "people.txt", ["ann,31", "bob,old", "cy,5"])
    started = time.monotonic()
    with pytest.raises(TaskFailed) as info:
        semantics_jobs.ages.run(inputs=[data], mode=mode)
    assert time.monotonic() - started < 30
    error = info.value
    assert (error.stage, error.exc_type, error.record) == ("parse_age", "ValueError", 1)
    assert "invalid literal for int()" in str(error)
    assert "not retried" in str(error)
    assert "parse_age" in error.remote_traceback


@pytest.mark.parametrize("mode", ["inline", "local", "cluster"], indirect=True)
def test_a_user_exception_is_tried_once(tmp_path: Path, mode: str) -> None:
    attempts = tmp_path / "attempts"
    attempts.mkdir()

    @map
    def buggy(line: str, params: str) -> Any:
        with open(f"{params}/{time.monotonic_ns()}", "w"):
            pass
        raise KeyError(line)
        yield line, 1

    @job(max_failures=3)
    def once() -> list[Any]:
        return [buggy]

    with pytest.raises((TaskFailed, KeyError)):
        once.run(["raw://x"], mode=mode, params=str(attempts))
    assert len(list(attempts.iterdir())) == 1


@pytest.mark.parametrize("kind", ["retry", "oserror", "data"])
def test_retryable_failures_are_retried_and_counted_once(
    tmp_path: Path, mode: str, kind: str
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    data = [
        _lines(tmp_path, f"in-{i}.txt", ["a", "flaky" if i == 1 else "b", "c"]) for i in range(3)
    ]
    chosen = {
        "retry": semantics_jobs.flaky_job,
        "oserror": semantics_jobs.flaky_oserror_job,
        "data": semantics_jobs.flaky_data_job,
    }[kind]
    results = chosen.run(inputs=data, mode=mode, params={"markers": str(markers)})
    assert dict(results) == {"a": 3, "b": 2, "c": 3, "flaky": 1}
    assert results.counters == {"lines": 9, "keys": 4}
    assert len(list(markers.iterdir())) == 1


@pytest.mark.parametrize("mode", ["inline", "local"], indirect=True)
def test_retry_gives_up_after_max_failures(mode: str) -> None:
    with pytest.raises((TaskFailed, Retry)) as info:
        semantics_jobs.hopeless.run(inputs=["raw://x"], mode=mode)
    assert "never works" in str(info.value)
    assert "not retried" not in str(info.value)
    if mode == "local":  # how many times it ran, and the limit that stopped it
        assert "task always_retry:0 after 2 attempts (max_failures=1): " in str(info.value)


def test_a_task_failing_fatally_after_a_retry_says_how_many_attempts_it_made(
    tmp_path: Path,
) -> None:
    @map
    def retried_then_broken(line: str, params: str) -> Any:
        marker = f"{params}/retried"
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise Retry("the service is busy")
        raise KeyError(line)
        yield line, 1

    @job(max_failures=3)
    def twice() -> list[Any]:
        return [retried_then_broken]

    with pytest.raises(TaskFailed) as info:
        twice.run(["raw://x"], mode="local", params=str(tmp_path), progress=False)
    message = str(info.value)
    assert "failed in task retried_then_broken:0 after 2 attempts: " in message, message
    assert "max_failures=" not in message  # a fatal failure, not the limit, ended it


def test_inline_raises_the_users_exception_unchanged(tmp_path: Path) -> None:
    data = _lines(tmp_path, "people.txt", ["bob,old"])
    with pytest.raises(ValueError, match="invalid literal"):
        semantics_jobs.ages.run(inputs=[data], mode="inline")


# --- params: a fresh copy per task ---------------------------------------------------------


def test_every_task_gets_its_own_params(tmp_path: Path, mode: str) -> None:
    data = [_lines(tmp_path, f"in-{i}.txt", [f"line{i}"]) for i in range(4)]
    results = semantics_jobs.params_job.run(inputs=data, mode=mode)
    assert sorted(results) == [(f"line{i}", 110) for i in range(4)]


@pytest.mark.parametrize("name", ["capped_by_itself", "capped_by_own"])
def test_a_combiner_that_takes_params_gets_them(tmp_path: Path, mode: str, name: str) -> None:
    data = _lines(tmp_path, "words.txt", ["a a a a b", "a b c"])
    results = getattr(semantics_jobs, name).run(inputs=[data], mode=mode)
    assert sorted(results) == [("a", 3), ("b", 2), ("c", 1)]


@pytest.mark.parametrize(
    "spelling", ["before_an_option", "keyword_only", "positional_only", "through_a_wrapper"]
)
def test_params_reach_every_signature_that_names_them(mode: str, spelling: str) -> None:
    # a `params` parameter before options of its own, keyword-only, positional-only, or
    # behind a decorator's wrapper(*args); the reduce's has an option after it too
    chosen = getattr(semantics_jobs, f"with_params_{spelling}")
    results = chosen.run(inputs=["raw://x"], mode=mode, params={"n": 1})
    assert list(results) == [("x", ([{"n": 1}], {"n": 1}))]


def test_params_keep_their_type_when_options_are_revalidated(tmp_path: Path) -> None:
    from dataclasses import dataclass

    @dataclass
    class Settings:
        factor: int

    @map
    def scale(line: str, params: Settings) -> Any:
        yield line, params.factor

    @job(params=Settings(3))
    def scaled() -> list[Any]:
        return [scale]

    assert list(scaled.run(["raw://x"], mode="inline", partitions=2)) == [("x", 3)]


# --- None from a stage: one rule everywhere ------------------------------------------------

NONE_JOBS = [
    "none_map_only",
    "none_map_two",
    "none_map_combined",
    "none_reduce",
    "none_stage",
]


def test_raw_inputs_whose_data_has_brackets_are_read_as_given(mode: str) -> None:
    # The data of a raw:// URL is no URL: "[1, 2]" once failed as a bad IPv6 host.
    lines = ["[1, 2]", "a [b] c", "[::1"]
    got = semantics_jobs.echo_lines.run(inputs=[f"raw://{line}" for line in lines], mode=mode)
    assert sorted(key for key, _ in got) == sorted(lines)


def test_a_stage_taking_params_gets_none_when_no_one_sets_them(mode: str) -> None:
    assert list(semantics_jobs.params_unset.run(inputs=["raw://x"], mode=mode)) == [("x", "None")]
    given = semantics_jobs.params_unset.with_options(params={"a": 1})
    assert list(given.run(inputs=["raw://x"], mode=mode)) == [("x", "{'a': 1}")]


def refusal(name: str, text: str, mode: str) -> str:
    """What the failing run of ``semantics_jobs.<name>`` over ``raw://<text>`` says."""
    with pytest.raises((StageError, TaskFailed)) as info:
        getattr(semantics_jobs, name).run(inputs=[f"raw://{text}"], mode=mode)
    return str(info.value)


@pytest.mark.parametrize("name", NONE_JOBS)
def test_a_stage_returning_none_is_refused_with_the_fix(name: str, mode: str) -> None:
    message = refusal(name, "a b", mode)
    assert "returned None" in message
    assert "yield" in message and "return []" in message


@pytest.mark.parametrize("name", ["strings_map_only", "strings_map_reduce", "strings_map_combined"])
def test_a_two_character_string_is_not_a_pair(name: str, mode: str) -> None:
    message = refusal(name, "ab cd", mode)
    assert "not a (key, value) pair" in message and "'ab'" in message


@pytest.mark.parametrize(
    "name", ["returned_pair_map_only", "returned_pair_map_combined", "returned_pair_reduce"]
)
def test_a_stage_returning_one_pair_is_told_to_yield(name: str, mode: str) -> None:
    message = refusal(name, "ab cd", mode)
    assert re.search(r"returned the two-item tuple \('(ab|cd)', 1\)", message), message
    assert "it has no `yield`, so what it returns is iterated, each item a record" in message
    assert "yield the pair (`yield key, value`), or return a list of pairs" in message


def test_a_returned_pair_of_pairs_is_refused_not_taken_as_two_records(mode: str) -> None:
    # A tuple key and a tuple value: each item unpacks as a pair, so nothing else caught it.
    message = refusal("returned_pair_of_pairs", "ab ab", mode)
    assert "returned the two-item tuple (('ab', 'x'), (2, 2))" in message
    assert "('ab', 'x') and (2, 2) would be two records" in message


def test_a_combiner_returning_a_pair_of_pairs_is_refused(mode: str) -> None:
    message = refusal("combiner_returning_a_pair", "ab cd ab", mode)
    assert "the combiner 'returns_a_pair_of_pairs' of reduce" in message
    assert "returned the two-item tuple (('ab', 'x'), (2, 2))" in message


def test_a_stage_returning_a_dict_is_told_its_keys_were_taken_as_records(mode: str) -> None:
    message = refusal("returned_dict_map_only", "ab cd", mode)
    assert "produced 'ab' (str), not a (key, value) pair" in message
    assert "a dict its keys" in message and "list(counts.items())" in message


def test_a_stage_yielding_triples_is_told_to_put_the_rest_in_the_value(mode: str) -> None:
    message = refusal("triples_map_reduce", "ab cd", mode)
    assert "produced ('ab', 1, 2) (tuple), not a (key, value) pair" in message
    assert "a record is a two-item tuple: carry more in the value" in message
    assert "`yield key, (a, b)`" in message
    assert "`return word, 1`" not in message


def test_a_refused_record_names_the_stages_file_and_line_and_where_it_was(mode: str) -> None:
    message = refusal("strings_map_only", "ab cd", mode)
    line = semantics_jobs.yields_strings.spec.function.__code__.co_firstlineno
    assert f"stage 'yields_strings' (semantics_jobs.py, line {line}) produced 'ab'" in message
    assert message.count("on input 'raw://ab cd', record 0") == 1, message


def test_a_refused_record_of_a_reduce_names_its_key_not_its_input(mode: str) -> None:
    message = refusal("returned_pair_reduce", "ab ab", mode)
    assert "stage 'reduce_returns_a_pair' (semantics_jobs.py, line " in message
    assert "; on the key 'ab'" in message
    assert "on input" not in message, message


# --- counters belong to their run ----------------------------------------------------------


def test_counts_from_threads_a_stage_starts_are_kept(mode: str) -> None:
    results = semantics_jobs.threaded_counts.run(["raw://a b c d e f", "raw://g"], mode=mode)
    assert results.counters == {"inner": 7 * 500}
    for _ in range(2):  # a pool whose threads outlive tasks and runs counts for each in turn
        pooled = semantics_jobs.pooled_counts.run(["raw://a b c d e f", "raw://g"], mode=mode)
        assert pooled.counters == {"inner": 7 * 500}


def test_status_lines_from_threads_stay_whole(mode: str, capfd: pytest.CaptureFixture[str]) -> None:
    # "status: thread 2 step 0status: thread 3 step 0", and empty lines (probe DI F6).
    run = semantics_jobs.threaded_statuses.submit(["raw://a"], mode=mode, progress=False)
    run.wait(timeout=120).close()
    said = capfd.readouterr().err if mode == "inline" else "\n".join(m for _, _, m in run.events())
    lines = re.findall(r"status: [^\n]*", said)
    assert len(lines) == 400 and all(re.fullmatch(r"status: thread \d step \d+", s) for s in lines)


def test_a_task_counted_within_another_tasks_counting_in_one_thread_does_not_wait() -> None:
    # A signal handler running an inline job lands between any two bytecodes of the main
    # thread's inline task, its counting's lock held among them: the handler's task took
    # that lock again, in the same thread, and the program hung for good.
    from discodsl.worker import counters

    def nested() -> None:
        with counters.counting() as outer, counters._lock:  # the handler lands here
            with counters.counting() as inner:
                counters.count("inner")
            counters.count("outer")
        said.append((outer, inner))

    said: list[Any] = []
    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the nested task waited for the lock its thread held"
    assert said == [({"outer": 1}, {"inner": 1})]


def test_an_inline_run_within_the_locks_a_run_holds_in_its_thread_does_not_wait() -> None:
    # As the counters' lock: a signal handler's run, on top of its thread's run holding one.
    from discodsl import tracebacks
    from discodsl.runners import handle, inline
    from discodsl.worker import spills

    @map
    def pairs(line: str) -> Any:
        yield line, 1

    @reduce
    def collect(key: str, values: Any) -> Any:
        yield key, list(values)

    @job(env={"DISCODSL_TEST_HELD": "1"}, memory_budget=2**20)  # spilled past it
    def held() -> list[Any]:
        return [pairs, collect]

    said: list[Any] = []
    locks = (tracebacks._LOCK, inline._ENVS_LOCK, spills._DEEPER_LOCK, handle._EXIT_HOOK)

    def nested() -> None:
        for lock in locks:
            lock.acquire()
        try:
            lines = [f"raw://{n}{'w' * 700_000}" for n in range(3)]
            said.append([len(key) for key, _ in held.run(lines, mode="inline")])
        finally:
            for lock in locks:
                lock.release()

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the run waited for a lock its thread held"
    assert said == [[700_001] * 3]


def test_inline_counters_in_threads_do_not_mix() -> None:
    @map
    def tick(line: str, params: int) -> Any:
        for _ in range(200):
            count("ticks", params)
            time.sleep(0)
        yield line, 1

    @job(partitions=2)
    def ticking() -> list[Any]:
        return [tick]

    found: dict[int, dict[str, int]] = {}

    def run(amount: int) -> None:
        results = ticking.run(["raw://a", "raw://b"], mode="inline", params=amount)
        found[amount] = results.counters

    threads = [threading.Thread(target=run, args=(n,)) for n in (1, 10, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert found == {n: {"ticks": 2 * 200 * n} for n in (1, 10, 100)}


# --- results of any runner are inputs of any runner ----------------------------------------


@pytest.mark.parametrize("first", ["inline", "local", "cluster"])
@pytest.mark.parametrize("second", ["inline", "local", "cluster"])
def test_results_chain_across_runners(
    tmp_path: Path, first: str, second: str, request: pytest.FixtureRequest
) -> None:
    if "cluster" in (first, second):
        request.getfixturevalue("cluster_env")
    data = _lines(tmp_path, "in.txt", ["b a b", "c b"])
    counted = jobs.wordcount.run(inputs=[data], mode=first)
    histogram = jobs.histogram.run(inputs=counted, mode=second)
    assert dict(histogram) == {1: ["a", "c"], 3: ["b"]}


@pytest.mark.parametrize("first", ["inline", "local", "cluster"])
@pytest.mark.parametrize("second", ["inline", "local", "cluster"])
def test_a_result_file_replaced_since_fails_the_job_chained_on_it(
    tmp_path: Path, first: str, second: str, damageable_cluster: Callable[[str], Path]
) -> None:
    # A chained job reads its inputs' files as their indexes list them, with the sizes
    # they give: a file replaced by a shorter whole one since gave other records without
    # a word (probes CW F19, CX F1).
    counted = _counted(tmp_path, first)
    path = damageable_cluster(counted.listed_urls()[0][0])
    with RecordWriter(str(tmp_path / "other")):
        pass  # a whole record file of no records
    shorter = (tmp_path / "other").read_bytes()
    assert len(shorter) < path.stat().st_size
    path.write_bytes(shorter)
    # An inline run's results have no index: they know their files' sizes (probe DB F1).
    with pytest.raises(DataError, match=r"is \d+ bytes, where the .* says \d+"):
        list(counted)
    failed = DataError if second == "inline" else TaskFailed  # inline raises its own
    with pytest.raises(
        failed, match=r"is \d+ bytes, where the (index|inline run) .* says \d+"
    ) as info:
        jobs.histogram.run(inputs=counted, mode=second, max_failures=3)
    # A retry reads the same bytes: not retried (on a master, 15 s of pauses; DE F5)
    assert second == "inline" or "not retried: the same bytes would fail" in str(info.value)


@pytest.mark.parametrize("first", ["inline", "local"])
def test_a_result_file_replaced_since_is_refused_before_it_is_pushed(
    tmp_path: Path, first: str, damageable_cluster: Callable[[str], Path]
) -> None:
    # push_inputs=True pushed it to DDFS, whose blob no size followed (probe DE F4).
    counted = jobs.wordcount.run(inputs=[_lines(tmp_path, "in.txt", ["b a b"])], mode=first)
    damageable_cluster(counted.listed_urls()[0][0]).write_bytes(b"")
    with pytest.raises(DataError, match=r"is 0 bytes, where the .* says \d+.*not pushed"):
        jobs.histogram.run(inputs=counted, mode="cluster", push_inputs=True)


def test_a_result_file_changed_since_is_refused_though_big_enough_to_cut(
    tmp_path: Path, damageable_cluster: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The local runner cuts a big text file into a range per worker: ranges of a result
    # file's text were read as lines (probe DD F1).
    from discodsl import sources

    monkeypatch.setattr(sources, "MIN_SPLIT", 8)  # any file is big enough
    counted = _counted(tmp_path, "local")
    path = damageable_cluster(counted.listed_urls()[0][0])
    path.write_bytes(b"x" * (path.stat().st_size + 99) + b"\n")
    with pytest.raises(TaskFailed, match=r"is \d+ bytes, where the index .* says \d+"):
        jobs.histogram.run(inputs=counted, mode="local", workers=2)


@pytest.mark.parametrize("first", ["local", "cluster"])
@pytest.mark.parametrize("second", ["inline", "local", "cluster"])
def test_an_index_listing_a_file_twice_fails_the_job_chained_on_it(
    tmp_path: Path, first: str, second: str, damageable_cluster: Callable[[str], Path]
) -> None:
    # Its records were read twice: refused when its results are read, counted twice by the
    # job chained on them (probe DB F2).
    counted = _counted(tmp_path, first)
    index = damageable_cluster(counted.urls[0][0])
    lines = index.read_text()
    index.write_text(lines + lines.splitlines()[0] + "\n")
    with pytest.raises(DataError, match=r"results: lists disco://.* twice under label all"):
        jobs.histogram.run(inputs=counted, mode=second)


def _counted(tmp_path: Path, mode: str) -> Any:
    """The results of a wordcount of two lines on runner ``mode``, in partitions of their own."""
    return jobs.wordcount.run(inputs=[_lines(tmp_path, "in.txt", ["b a b", "c b"])], mode=mode)


def test_results_after_close_say_closed() -> None:
    results = jobs.wordcount.run(inputs=["raw://a b"], mode="local")
    results.close()
    with pytest.raises(JobError, match="closed"):
        list(results)


# --- inputs ---------------------------------------------------------------------------------


def test_no_inputs_is_an_error_with_the_fix() -> None:
    with pytest.raises(SettingsError, match=r"inputs=\[.*or inputs=\[\] for none"):
        jobs.wordcount.run(inputs=None, mode="inline")  # type: ignore[arg-type]


@pytest.mark.parametrize("empty", [[], ()])
def test_an_empty_list_of_inputs_gives_no_results_as_on_disco(empty: Any) -> None:
    assert list(jobs.wordcount.run(inputs=empty, mode="inline")) == []


def test_empty_results_are_valid_inputs() -> None:
    nothing = jobs.wordcount.run(inputs=["raw://"], mode="local")
    assert list(nothing) == []
    assert list(jobs.histogram.run(inputs=nothing, mode="local")) == []


def test_an_inline_run_with_bad_inputs_leaves_no_temp_dir(tmp_path: Path) -> None:
    import tempfile

    before = set(Path(tempfile.gettempdir()).glob("discodsl-inline-*"))
    with pytest.raises(JobError):
        jobs.wordcount.run(inputs=[str(tmp_path / "missing.txt")], mode="inline")
    assert set(Path(tempfile.gettempdir()).glob("discodsl-inline-*")) == before


@pytest.mark.parametrize(
    ("option", "value"),
    [("partitions", "4"), ("partitions", True), ("max_failures", "3"), ("workers", 2.0)],
)
def test_options_are_strictly_typed(option: str, value: Any) -> None:
    with pytest.raises(SettingsError, match=option):
        jobs.wordcount.with_options(**{option: value})


@pytest.mark.parametrize("mode", ["local", "cluster"], indirect=True)
def test_a_non_utf8_line_names_the_line_and_bytes(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"fine\ncaf\xe9 au lait\n")
    with pytest.raises(TaskFailed) as info:
        jobs.wordcount.run(inputs=[str(path)], mode=mode, max_failures=0)
    error = info.value
    assert error.exc_type == "MalformedRecord"  # bad data: not retried (a DataError)
    assert "not retried" in str(error)
    assert error.record == 1
    assert "line 2" in str(error) and "bytes 8-9" in str(error)
    assert "record -1" not in str(error)


def test_a_non_utf8_line_inline(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"fine\ncaf\xe9 au lait\n")
    with pytest.raises(DataError) as info:
        jobs.wordcount.run(inputs=[str(path)], mode="inline", max_failures=0)
    assert info.value.span == (8, 9)


@pytest.mark.parametrize("mode", ["inline", "local"], indirect=True)
@pytest.mark.parametrize(
    ("name", "amount", "refused"),
    [
        (404, 1, "a counter's name is a str, not int (404)"),
        (b"bytes", 1, "a counter's name is a str, not bytes"),
        ("seconds", 1.5, "adds 1.5 (float): counters count in integers"),
        ("seconds", "2", "adds '2' (str): counters count in integers"),
        ("\u00e9" * 200, 1, "a counter's name is 1202 bytes as the JSON that reports it, over"),
    ],
)
def test_count_refuses_what_no_counter_holds_in_every_mode(
    mode: str, name: Any, amount: Any, refused: str
) -> None:
    with pytest.raises((TaskFailed, TypeError, ValueError)) as info:
        semantics_jobs.odd_counts.run(inputs=["raw://a"], mode=mode, params=(name, amount))
    assert refused in str(info.value)


def test_a_counter_name_at_the_longest_is_counted(mode: str) -> None:
    name = "n" * (MAX_NAME_JSON - 2)  # and its two quotes
    results = semantics_jobs.odd_counts.run(inputs=["raw://a"], mode=mode, params=(name, 3))
    assert results.counters == {name: 3}


def test_printed_text_that_reads_as_counts_is_shown_not_counted(
    mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    results = semantics_jobs.counts_like_output.run(
        inputs=["raw://a", "raw://b"], mode=mode, progress=True
    )
    assert results.counters == {"lines": 2}
    printed = capsys.readouterr()
    shown = printed.out if mode == "inline" else printed.err
    stage = "" if mode == "inline" else "[prints_counts_like_text] "
    assert shown.count(stage + semantics_jobs.COUNTS_LIKE) == 6, shown
    assert shown.count(stage + "before it") == 2, shown


def test_a_group_all_stage_after_tasks_that_gave_nothing_runs_once_over_nothing(
    mode: str,
) -> None:
    quiet = ["raw://all fine", "raw://ok"]
    assert list(semantics_jobs.error_summary.run(inputs=quiet, mode=mode)) == [("n", 0)]
    assert list(semantics_jobs.error_summary_by_label.run(inputs=quiet, mode=mode)) == []
    loud = ["raw://an ERROR", "raw://ok"]
    assert list(semantics_jobs.error_summary.run(inputs=loud, mode=mode)) == [("n", 1)]


def test_a_done_hooks_bad_records_are_blamed_on_it_not_the_stage_or_an_input(mode: str) -> None:
    with pytest.raises((TaskFailed, StageError)) as info:
        list(semantics_jobs.returning_done_hook.run(inputs=["raw://a", "raw://b"], mode=mode))
    message = str(info.value)
    assert "the done hook '_tally_end' of stage 'tallied' (semantics_jobs.py, line " in message
    assert "produced 'seen' (str), not a (key, value) pair" in message, message
    assert "on input" not in message, message


def test_an_input_url_no_worker_can_read_is_not_blamed_on_stage_code() -> None:
    with pytest.raises(TaskFailed) as info:
        list(semantics_jobs.returning_done_hook.run(inputs=["disco://localhost"], mode="local"))
    message = str(info.value)
    assert "BadURL: disco://localhost: expected SCHEME://HOST/PATH" in message, message
    assert message.endswith("(not retried: the same URL would fail again; fix the input)")


def test_count_takes_integers_of_other_types_as_ints() -> None:
    import enum

    class Two(enum.IntEnum):
        TWO = 2

    results = semantics_jobs.odd_counts.run(
        inputs=["raw://a"], mode="inline", params=("n", Two.TWO)
    )
    assert results.counters == {"n": 2} and type(results.counters["n"]) is int


def stop_failure(name: str, inputs: list[str], mode: str) -> tuple[str, str, str]:
    """How the run of ``semantics_jobs.<name>`` fails on a StopIteration its stage raised:
    (stage, exception type, message). Inline raises that StopIteration itself, noting where;
    elsewhere TaskFailed reports it."""
    job = getattr(semantics_jobs, name)
    if mode == "inline":
        with pytest.raises(StopIteration) as stopped:
            job.run(inputs=inputs, mode=mode)
        (note,) = stopped.value.__notes__
        return note.split("'")[1], "StopIteration", note
    with pytest.raises(TaskFailed) as failed:
        job.run(inputs=inputs, mode=mode)
    return failed.value.stage, failed.value.exc_type, str(failed.value)


@pytest.mark.parametrize("name", ["stop_in_map_only", "stop_in_map", "stop_in_combined_map"])
def test_a_map_raising_stop_iteration_fails_not_ends_its_task(
    tmp_path: Path, name: str, mode: str
) -> None:
    data = _lines(tmp_path, "lines.txt", ["alpha one", "beta two", "", "gamma three"])
    stage, exc_type, message = stop_failure(name, [data], mode)
    assert (stage, exc_type) == ("first_word", "StopIteration")
    assert "lines.txt', record 2: StopIteration" in message


def test_a_reduce_raising_stop_iteration_fails_not_ends_its_task(mode: str) -> None:
    stage, exc_type, message = stop_failure("stop_in_reduce", ["raw://a b c b"], mode)
    assert (stage, exc_type) == ("stops_at_b", "StopIteration")
    assert "failed on the key 'b': StopIteration" in message


def test_a_stage_calling_another_stage_runs_on_every_runner(mode: str) -> None:
    @map
    def parse(line: str) -> Iterator[tuple[str, int]]:
        name, size = line.split("=")
        yield name, int(size)

    @map
    def long_only(line: str) -> Iterator[tuple[str, int]]:
        for name, size in parse(line):  # the stage, called as its plain function
            if size > 2:
                yield name, size

    @job(partitions=None)
    def longs() -> list[Any]:
        return [long_only]

    results = longs.run(inputs=["raw://a=5", "raw://b=1", "raw://c=3"], mode=mode)
    assert sorted(results) == [("a", 5), ("c", 3)]


def test_a_combiner_raising_stop_iteration_is_named_with_its_key(mode: str) -> None:
    stage, exc_type, message = stop_failure("stop_in_combiner", ["raw://a b b c a"], mode)
    assert (stage, exc_type) == ("word_ones", "StopIteration")
    if mode != "inline":  # inline raises the StopIteration itself, noting the stage
        assert "the combiner '_stopping_combiner' of reduce 'combined_sum', on the key 'b'" in (
            message
        )


@pytest.mark.parametrize(
    ("name", "who", "key"),
    [
        ("renaming_combined", "reduce 'labelled', as its own combiner", "'count of ab'"),
        (
            "renaming_combined_listed",
            "reduce 'labelled_listed', as its own combiner",
            "'count of ab'",
        ),
        ("renaming_combiner", "the combiner 'renames' of reduce 'summed_renamed'", "'AB'"),
    ],
)
def test_a_combiner_that_changes_its_key_is_refused(
    name: str, who: str, key: str, mode: str
) -> None:
    # Run map-side and again reduce-side, the key was changed twice: ('count of count of
    # ab', 2), silently. Only keys counted more than once in a task go through a combiner.
    message = refusal(name, "ab ab ab", mode)
    assert f"{who}" in message
    assert f"{who}, given the key 'ab', yielded the key {key}" in message
    assert "must yield the key it is given" in message


def test_a_combining_reduce_that_filters_on_its_key_alone_is_taken(mode: str) -> None:
    results = semantics_jobs.filtering_combined.run(["raw://the a the a b"], mode=mode)
    assert sorted(results) == [("a", 2), ("b", 1)]


def test_a_stage_that_runs_a_job_is_told_to_chain_jobs_instead(
    mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Inline it failed deep inside discodsl; in workers, it said to install discodsl.model.
    # Inline then said it would run the stage as it is, and raised another error after.
    with pytest.raises(PicklingError) as info:
        semantics_jobs.job_in_a_stage.run(["raw://a"], mode=mode)
    message = str(info.value)
    assert "has a stage that refers to the job" in message, message
    assert "a stage cannot run a job" in message, message
    assert "chain jobs instead, passing one's results as the next one's inputs" in message
    # One that only reads the job's name is told what to write instead (probe DL F10).
    assert "only the job's name takes it as text ('renaming_combined') or from params" in message
    assert "runs inline on its stages as they are" not in capsys.readouterr().err


def test_a_job_shipped_by_value_inside_a_stage_is_told_to_chain_jobs_instead() -> None:
    from discodsl.worker.runtime import _fix

    missing = ModuleNotFoundError("No module named 'discodsl.model'", name="discodsl.model")
    assert "a stage cannot run a job (chain jobs instead" in _fix(missing)
    other = ModuleNotFoundError("No module named 'helpers'", name="helpers")
    assert "install it on the nodes" in _fix(other)


def test_a_helper_module_that_declares_jobs_is_named_as_the_cause(tmp_path: Path) -> None:
    """A module beside the program whose functions a stage calls, and which imports the
    client (to run jobs too: declaring them works on a node, test_node_declarations): the
    workers import it, and the client is not there. The local runner said the module was
    missing, and to ship it by value (which failed too)."""
    (tmp_path / "helpers.py").write_text(
        "from discodsl import JobOptions, job, map\n\n"
        "def tokenize(line):\n    return line.split()\n"
    )
    (tmp_path / "main.py").write_text(
        textwrap.dedent(
            """
            import helpers
            from discodsl import job, map

            @map
            def words(line):
                for word in helpers.tokenize(line):
                    yield word, 1

            @job
            def split():
                return [words]

            try:
                split.run(["raw://a b"], mode="local")
            except Exception as exc:
                print(exc)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(tmp_path / "main.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert "cannot import name 'JobOptions' from 'discodsl'" in done.stdout, (
        done.stdout + done.stderr
    )
    assert "a module the stages use imports discodsl's client" in done.stdout
    assert "register_pickle_by_value" not in done.stdout


def failing_locally(stage: Any, **options: Any) -> str:
    """The words of the TaskFailed a local run of a job of ``stage`` alone ends with, on
    the input ``raw://x`` (``options`` given to the run)."""

    @job(partitions=None)
    def alone() -> list[Any]:
        return [stage]

    with pytest.raises(TaskFailed) as caught:
        alone.run(["raw://x"], mode="local", max_failures=0, **options)
    return str(caught.value)


def test_a_stages_memory_error_says_what_to_do() -> None:
    # "stage 'hog' failed on input 'raw://x', record 0: MemoryError", and nothing more.
    @map
    def hog(line: str) -> Any:
        raise MemoryError
        yield line, 1

    said = failing_locally(hog)
    assert "ran out of memory" in said and "memory_budget" in said


def test_a_pdb_set_trace_left_in_a_stage_says_to_debug_inline() -> None:
    # breakpoint() was told so; pdb.set_trace() (as tutorial 4 has Jupyter users write it)
    # failed the task with a bare BdbQuit (probe CP F10).
    @map
    def debugged(line: str) -> Any:
        import pdb

        pdb.set_trace()
        yield line, 1

    said = failing_locally(debugged)
    assert "BdbQuit" in said and "run the job with mode='inline' to debug it" in said, said


def test_a_file_past_the_size_limit_on_files_says_what_limit(tmp_path: Path) -> None:
    # Python ignores SIGXFSZ: past ulimit -f a write fails with "[Errno 27] File too large",
    # and nothing said what limit that was (probe CM F4).
    @map
    def writer(line: str, params: dict[str, str]) -> Any:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
        with open(params["out"], "wb") as out:
            out.write(b"x" * 5000)
        yield line, 1

    said = failing_locally(writer, params={"out": str(tmp_path / "big")})
    assert "File too large" in said
    assert "the size limit on files (ulimit -f)" in said


def test_a_relative_path_a_stage_cannot_open_says_where_workers_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read inline from the program's working directory, and not found by a local run's
    # worker, whose working directory is its job home (as on a Disco node), without a word.
    (tmp_path / "stopwords.txt").write_text("the\n")
    monkeypatch.chdir(tmp_path)

    @map
    def unstopped(line: str, params: dict[str, str]) -> Any:
        with open(params["stop"]) as words:
            stop = set(words.read().split())
        yield from ((w, 1) for w in line.split() if w not in stop)

    @job(partitions=None)
    def filtering() -> list[Any]:
        return [unstopped]

    relative = {"stop": "stopwords.txt"}
    assert list(filtering.run(["raw://the cat"], mode="inline", params=relative)) == [("cat", 1)]
    said = failing_locally(unstopped, params=relative)
    assert "No such file or directory: 'stopwords.txt'" in said
    assert "a relative path names a file in the worker's working directory, its job " in said
    gone = {"stop": str(tmp_path / "gone.txt")}  # a missing file named whole: no such hint
    said = failing_locally(unstopped, params=gone)
    assert "gone.txt" in said and "relative path" not in said

    # A program not on PATH is no file of the working directory: no such hint.
    @map
    def shelled(line: str) -> Any:
        import subprocess

        subprocess.run(["no-such-tool-here", line], check=True)
        yield line, 1

    said = failing_locally(shelled)
    assert "'no-such-tool-here'" in said and "a relative path names" not in said
    assert "a program a stage runs by its name must be on its workers' PATH" in said

    # A program named by a relative path is never looked for on PATH (probe CM F3).
    @map
    def run_here(line: str) -> Any:
        import subprocess

        subprocess.run(["./no-such-tool-here", line], check=True)
        yield line, 1

    said = failing_locally(run_here)
    assert "PATH" not in said
    assert "a relative path names a file in the worker's working directory, its job " in said


def counted_by(total: Any) -> Any:
    """A word count whose reduce, its own combiner, is ``total``, in one partition."""

    @job(partitions=1)
    def counting() -> list[Any]:
        return [jobs.words, reduce(total, combine=True)]

    return counting


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_a_combined_reduce_failing_on_its_own_values_says_it_reads_what_it_yields(
    mode: str,
) -> None:
    # "stage 'total' failed on the key 'a': TypeError: unsupported operand type(s) for +:
    # 'int' and 'str'", and no word that the '2 times' came from total itself, map-side.
    def total(word: Any, counts: Any) -> Any:
        yield word, f"{sum(counts)} times"

    with pytest.raises((TaskFailed, TypeError)) as caught:
        counted_by(total).run(["raw://a a", "raw://a"], mode=mode, max_failures=0)
    message = str(caught.value) + "".join(getattr(caught.value, "__notes__", []))
    assert "unsupported operand" in message
    assert "(if its values are of two kinds: reduce 'total' runs map-side too" in message


def test_a_combined_reduces_other_type_errors_are_not_blamed_on_combining() -> None:
    # len() of an int on a key with one value in its map task: told of map-side combining.
    def total(word: Any, counts: Any) -> Any:
        counts = list(counts)
        yield word, sum(counts) + (len(counts[0]) if word == "b" else 0)

    with pytest.raises(TaskFailed) as caught:
        counted_by(total).run(["raw://a a b"], mode="local", max_failures=0)
    assert "has no len()" in str(caught.value) and "map-side" not in str(caught.value)


def test_a_module_a_stage_imports_in_its_body_is_told_how_to_ship() -> None:
    # A bare "ModuleNotFoundError: No module named 'cghelpers'" on a cluster: the pre-flight
    # sees no import inside a stage's body, and gives its hint only for the others.
    @map
    def late(line: str) -> Any:
        import no_such_helpers_module  # type: ignore[import-not-found]  # noqa: F401

        yield line, 1

    said = failing_locally(late)
    assert "No module named 'no_such_helpers_module'" in said
    assert "must be installed where its workers run, or ship with the job" in said


@pytest.mark.parametrize("mode", ["local", "inline"])
def test_a_stage_handing_a_scripts_function_to_a_pool_is_told_why_it_fails(
    tmp_path: Path, mode: str
) -> None:
    # pickle's bare "attribute lookup sq on __main__ failed", on every runner (probe CT F4);
    # inline, "it's not the same object as __main__.sq" (probe DI F2).
    done = run_script(
        tmp_path / "pooled.py",
        "import multiprocessing as mp\n"
        "from discodsl import TaskFailed, job, map\n"
        "def sq(n):\n    return n * n\n"
        "@map\ndef squares(line):\n"
        "    with mp.get_context('fork').Pool(1) as pool:\n"
        "        yield line, sum(pool.map(sq, [1, 2]))\n"
        "@job(partitions=None)\ndef pooled():\n    return [squares]\n"
        "try:\n"
        f"    pooled.run(['raw://x'], mode={mode!r}, max_failures=0, progress=False)\n"
        "except Exception as exc:\n"
        "    print(exc, *getattr(exc, '__notes__', ()))\n",
    )
    assert "PicklingError" in done.stdout or "not the same object" in done.stdout, done
    assert "the standard pickle (a multiprocessing Pool's, a queue's) cannot name" in (done.stdout)
    assert "define it" in done.stdout or "define them" in done.stdout
