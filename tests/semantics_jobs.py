"""Jobs for tests/test_semantics.py: failures and retries, counters, params, None results."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from typing import Any

from discodsl import DataError, Retry, count, job, map, reduce, stage


def _first_attempt(params: dict[str, str], name: str) -> bool:
    """True the first time any task asks about ``name`` (a marker file in params["markers"])."""
    marker = os.path.join(params["markers"], name)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


@map
def parse_age(line: str) -> Iterator[tuple[str, int]]:
    name, age = line.split(",")
    yield name, int(age)  # ValueError on "bob,old": a bug in the data, not worth a retry


@reduce
def oldest(name: str, ages: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield name, max(ages)


@job(partitions=2, max_failures=3)
def ages() -> list[Any]:
    return [parse_age, oldest]


def _flaky(kind: str) -> Any:
    @map(name=f"flaky_{kind}")
    def flaky(line: str, params: dict[str, str]) -> Iterator[tuple[str, int]]:
        count("lines")
        if line == "flaky" and _first_attempt(params, kind):
            if kind == "retry":
                raise Retry("the service is busy")
            if kind == "oserror":
                raise ConnectionResetError("the service hung up")
            raise DataError("a flaky read")
        yield line, 1

    return flaky


@reduce
def tally(key: str, values: Iterable[int]) -> Iterator[tuple[str, int]]:
    count("keys")
    yield key, sum(values)


flaky_retry, flaky_oserror, flaky_data = _flaky("retry"), _flaky("oserror"), _flaky("data")


@job(partitions=2, max_failures=2)
def flaky_job() -> list[Any]:
    return [flaky_retry, tally]


@job(partitions=2, max_failures=2)
def flaky_oserror_job() -> list[Any]:
    return [flaky_oserror, tally]


@job(partitions=2, max_failures=2)
def flaky_data_job() -> list[Any]:
    return [flaky_data, tally]


@map
def always_retry(line: str) -> Iterator[tuple[str, int]]:
    raise Retry("never works")
    yield line, 1  # pragma: no cover - makes this a generator


@job(max_failures=1)
def hopeless() -> list[Any]:
    return [always_retry]


# params: every task gets its own copy, whatever a hook does to it
def bump(params: dict[str, int]) -> None:
    params["value"] += 100


@map(init=bump)
def show_value(line: str, params: dict[str, int]) -> Iterator[tuple[str, int]]:
    yield line, params["value"]


@job(partitions=2, params={"value": 10})
def params_job() -> list[Any]:
    return [show_value]


# params reach a combiner: the reduce itself (combine=True), or a combiner of its own
@map
def word_ones(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        yield word, 1


def _capped_sum(key: str, values: Iterable[int], params: dict[str, int]) -> Iterator[Any]:
    yield key, min(sum(values), params["cap"])


capped_itself = reduce(name="capped_itself", combine=True)(_capped_sum)
capped_own = reduce(name="capped_own", combiner=_capped_sum)(_capped_sum)


@job(partitions=2, params={"cap": 3})
def capped_by_itself() -> list[Any]:
    return [word_ones, capped_itself]


@job(partitions=2, params={"cap": 3})
def capped_by_own() -> list[Any]:
    return [word_ones, capped_own]


# a plain function returning None: refused the same way everywhere
@map
def returns_none(line: str) -> None:
    line.split()


@reduce
def reduce_returns_none(key: Any, values: Iterable[Any]) -> None:
    sum(values)


@stage(grouping="group_all")
def stage_returns_none(records: Iterable[Any]) -> None:
    list(records)


@job(partitions=1)
def none_map_only() -> list[Any]:
    return [returns_none]


@job(partitions=2)
def none_map_two() -> list[Any]:
    return [returns_none, tally]


@reduce(combine=True)
def combined_tally(key: str, values: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield key, sum(values)


@job(partitions=2)
def none_map_combined() -> list[Any]:
    return [returns_none, combined_tally]


@map
def pairs(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        yield word, 1


@job(partitions=2)
def none_reduce() -> list[Any]:
    return [pairs, reduce_returns_none]


@job(partitions=2)
def none_stage() -> list[Any]:
    return [pairs, stage_returns_none]


# a map yielding strings where pairs belong (unannotated: `-> Iterator[str]` is refused when
# the job is declared, and these jobs are for what a run says)
@map
def yields_strings(line: str) -> Iterator[Any]:
    yield from line.split()


@job(partitions=1)
def strings_map_only() -> list[Any]:
    return [yields_strings]


@job(partitions=2)
def strings_map_reduce() -> list[Any]:
    return [yields_strings, tally]


@job(partitions=2)
def strings_map_combined() -> list[Any]:
    return [yields_strings, combined_tally]


# stages that return one pair where they meant to yield pairs
@map
def returns_a_pair(line: str) -> Any:
    for word in line.split():
        return word, 1  # the mistake: one pair, returned


@reduce
def reduce_returns_a_pair(key: str, values: Iterable[int]) -> Any:
    return key, sum(values)


@map
def tuple_keys(line: str) -> Iterator[tuple[tuple[str, str], int]]:
    for word in line.split():
        yield (word, "x"), 1


@reduce
def reduce_returns_a_pair_of_pairs(key: tuple[str, str], values: Iterable[int]) -> Any:
    listed = list(values)
    return key, (len(listed), sum(listed))  # the mistake: both items unpack as pairs


def returns_a_pair_of_pairs(key: tuple[str, str], values: Iterable[int]) -> Any:
    listed = list(values)
    return key, (len(listed), sum(listed))


@reduce(combiner=returns_a_pair_of_pairs)
def sums_pairs(key: tuple[str, str], values: Iterable[Any]) -> Iterator[Any]:
    yield key, sum(v if isinstance(v, int) else v[1] for v in values)


@job(partitions=2)
def returned_pair_of_pairs() -> list[Any]:
    return [tuple_keys, reduce_returns_a_pair_of_pairs]


@job(partitions=2)
def combiner_returning_a_pair() -> list[Any]:
    return [tuple_keys, sums_pairs]


@map
def returns_a_dict(line: str) -> Any:
    return {word: 1 for word in line.split()}  # the mistake: a dict iterates as its keys


@map
def yields_triples(line: str) -> Iterator[Any]:
    for word in line.split():
        yield word, 1, len(word)  # the mistake: three items, not (key, value)


@job(partitions=None)
def returned_dict_map_only() -> list[Any]:
    return [returns_a_dict]


@job(partitions=2)
def triples_map_reduce() -> list[Any]:
    return [yields_triples, tally]


@job(partitions=None)
def returned_pair_map_only() -> list[Any]:
    return [returns_a_pair]


@job(partitions=2)
def returned_pair_map_combined() -> list[Any]:
    return [returns_a_pair, combined_tally]


@job(partitions=2)
def returned_pair_reduce() -> list[Any]:
    return [pairs, reduce_returns_a_pair]


# counts from threads the stage code starts (they do not inherit its context)
@map
def counts_in_threads(line: str) -> Iterator[tuple[str, int]]:
    from concurrent.futures import ThreadPoolExecutor

    from discodsl import count

    words = line.split()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda word: [count("inner") for _ in range(500)], words))
    yield line, len(words)


@job(partitions=1)
def threaded_counts() -> list[Any]:
    return [counts_in_threads]


# status lines from threads the stage code starts, at once
@map
def statuses_in_threads(line: str) -> Iterator[tuple[str, int]]:
    from concurrent.futures import ThreadPoolExecutor

    from discodsl import status

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: [status(f"thread {n} step {i}") for i in range(50)], range(8)))
    yield line, 1


@job(partitions=1)
def threaded_statuses() -> list[Any]:
    return [statuses_in_threads]


# the same, through one pool that outlives tasks and runs (its threads count for each in turn);
# kept on a module the workers import, so that no pickled global captures it
@map
def counts_in_a_shared_pool(line: str) -> Iterator[tuple[str, int]]:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from discodsl import count

    pool = getattr(threading, "discodsl_test_pool", None)
    if pool is None:
        pool = threading.discodsl_test_pool = ThreadPoolExecutor(2)  # type: ignore[attr-defined]
    words = line.split()
    list(pool.map(lambda word: [count("inner") for _ in range(500)], words))
    yield line, len(words)


@job(partitions=1)
def pooled_counts() -> list[Any]:
    return [counts_in_a_shared_pool]


# each input line as a key, unchanged
@map
def echo_line(line: str) -> Iterator[tuple[str, None]]:
    yield line, None


@job(partitions=None)
def echo_lines() -> list[Any]:
    return [echo_line]


# what a stage taking params gets when neither the job nor the run sets them
@map
def params_seen(line: str, params: Any) -> Iterator[tuple[str, str]]:
    yield line, repr(params)


@job(partitions=None)
def params_unset() -> list[Any]:
    return [params_seen]


# count() with names and amounts of other types: refused alike in every mode, or taken as
# the integers they stand for
@map
def counted_oddly(line: str, params: Any) -> Iterator[tuple[str, int]]:
    name, amount = params
    count(name, amount)
    yield line, 1


@job(max_failures=0)
def odd_counts() -> list[Any]:
    return [counted_oddly]


# printed output that reads as a report of counts (a log of another run, echoed): shown as
# printed, never counted
COUNTS_LIKE = 'discodsl-counters: {"lines": 1000}'


@map
def prints_counts_like_text(line: str) -> Iterator[tuple[str, int]]:
    print(COUNTS_LIKE)  # a line of its own, first of the task's output
    print(f"before it\n{COUNTS_LIKE}")  # a line among others
    print(COUNTS_LIKE, end="")  # the last, without its newline
    count("lines")
    yield line, 1


@job(partitions=None)
def counts_like_output() -> list[Any]:
    return [prints_counts_like_text]


# a StopIteration raised by a stage's function fails the task as any exception does: a loop
# over its calls must not take it for the end of the records
@map
def first_word(line: str) -> list[tuple[str, int]]:
    return [(next(iter(line.split())), 1)]  # StopIteration on an empty line


@reduce
def summed(key: str, values: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield key, sum(values)


summed_combined = reduce(name="summed_combined", combine=True)(summed.function)


@reduce
def stops_at_b(key: str, values: Iterable[int]) -> list[tuple[str, int]]:
    if key == "b":
        raise StopIteration
    return [(key, sum(values))]


@job(partitions=None)
def stop_in_map_only() -> list[Any]:
    return [first_word]


@job(partitions=1)
def stop_in_map() -> list[Any]:
    return [first_word, summed]


@job(partitions=1)
def stop_in_combined_map() -> list[Any]:
    return [first_word, summed_combined]


@job(partitions=1)
def stop_in_reduce() -> list[Any]:
    return [word_ones, stops_at_b]


def _stopping_combiner(key: str, values: Iterable[int]) -> list[tuple[str, int]]:
    if key == "b":
        raise StopIteration
    return [(key, sum(values))]


@job(partitions=1)
def stop_in_combiner() -> list[Any]:
    return [word_ones, reduce(name="combined_sum", combiner=_stopping_combiner)(summed.function)]


# reduces that combine (combine=True) but change their key: wrong once run map-side
@reduce(combine=True)
def labelled(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield "count of " + word, sum(counts)


@reduce(combine=True)
def labelled_listed(word: str, values: Iterable[Any]) -> Iterator[tuple[str, int]]:
    yield "count of " + word, sum(1 for _ in values)


@map
def word_and_length(line: str) -> Iterator[tuple[str, list[int]]]:
    for word in line.split():
        yield word, [len(word)]  # a new object each time: listed, not counted


def renames(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word.upper(), sum(counts)


@reduce(combiner=renames)
def summed_renamed(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@reduce(combine=True)
def without_stop_words(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    if word != "the":  # a filter on the key alone: the same map-side and reduce-side
        yield word, sum(counts)


@job(partitions=2)
def renaming_combined() -> list[Any]:
    return [pairs, labelled]


@job(partitions=2)
def renaming_combined_listed() -> list[Any]:
    return [word_and_length, labelled_listed]


@job(partitions=2)
def renaming_combiner() -> list[Any]:
    return [pairs, summed_renamed]


@job(partitions=2)
def filtering_combined() -> list[Any]:
    return [pairs, without_stop_words]


# a stage that runs a job (a "sub-job per record"): no stage can
@map
def runs_a_job(line: str) -> Iterator[tuple[str, int]]:
    yield line, len(list(renaming_combined.run([f"raw://{line}"], mode="inline")))


@job(partitions=None)
def job_in_a_stage() -> list[Any]:
    return [runs_a_job]


# a group_all stage after tasks that gave nothing runs once, over no record, as a Disco
# 0.5.4 master runs it (its grouping of done tasks' outputs makes one group of none; seen
# on the real master); a group_label stage there has no task
@map
def errors_only(line: str) -> Iterator[tuple[str, str]]:
    if "ERROR" in line:
        yield "error", line


@stage(grouping="group_all")
def how_many(records: Iterable[Any]) -> Iterator[tuple[str, int]]:
    yield "n", sum(1 for _ in records)


@stage(grouping="group_label")
def how_many_of_label(records: Iterable[Any]) -> Iterator[tuple[str, int]]:
    yield "n", sum(1 for _ in records)


@job
def error_summary() -> list[Any]:
    return [errors_only, how_many]


@job
def error_summary_by_label() -> list[Any]:
    return [errors_only, how_many_of_label]


# a done hook returning its state (a natural slip): its error names the hook, and no input
def _tally_start(params: Any) -> dict[str, int]:
    return {"seen": 0}


def _tally_end(state: dict[str, int], params: Any) -> dict[str, int]:
    return state


@map(init=_tally_start, done=_tally_end)
def tallied(line: str) -> Iterator[tuple[str, int]]:
    yield line, 1


@job(max_failures=0)
def returning_done_hook() -> list[Any]:
    return [tallied]


# --- params wherever a signature can take them: one job per spelling of the map -----------


def _passing_positionally(function: Any) -> Any:
    """A decorator whose wrapper takes positional arguments only (its signature, as
    inspect reads it, is the wrapped function's)."""

    @functools.wraps(function)
    def wrapper(*args: Any) -> Any:
        return function(*args)

    return wrapper


@map
def params_before_an_option(line: str, params: Any = None, verbose: bool = False) -> Any:
    yield line, params


@map
def params_keyword_only(line: str, *, params: Any = None) -> Any:
    yield line, params


@map
def params_positional_only(line: str, params: Any, /) -> Any:
    yield line, params


@map
@_passing_positionally
def params_through_a_wrapper(line: str, params: Any) -> Any:
    yield line, params


@reduce
def params_after_the_values(
    key: str, values: Iterable[Any], params: Any = None, extra: int = 0
) -> Any:
    yield key, (list(values), params)


@job
def with_params_before_an_option() -> list[Any]:
    return [params_before_an_option, params_after_the_values]


@job
def with_params_keyword_only() -> list[Any]:
    return [params_keyword_only, params_after_the_values]


@job
def with_params_positional_only() -> list[Any]:
    return [params_positional_only, params_after_the_values]


@job
def with_params_through_a_wrapper() -> list[Any]:
    return [params_through_a_wrapper, params_after_the_values]
