"""Property: a map/reduce job gives each key's values to one reduce call, keys meeting as a
dict's keys do, whatever the runner, the partition count, the combiner and the order.

For any records spread over record files, ``sum`` per key by the job equals
``sum`` per key by a plain dict (so ``1``, ``1.0``, ``True``, ``Fraction(1)``
and ``Decimal("1.00")`` are one key, ``0`` and ``-0.0`` another, sets in any
order one), and no key comes out twice: on the inline, the local and the cluster runner
(the test master, or the real one ``DISCODSL_TEST_REAL_MASTER`` names),
with 1, 2 or 5 partitions or none, with no combiner, ``combine=True`` or a
combiner of its own, sorted or not; and so does a reduce after a map after
that reduce (how many keys have each total). A sorted reduce over one
partition gives its keys in ascending order. With one input and no
combiner, each key's values reach the reduce in the input's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discodsl import job, map, reduce
from tests.record_files import write_inputs

NUMBERS = st.one_of(
    st.integers(-3, 3),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 3.0, 1e300, float("inf"), float("-inf"), 2.0**53]),
    st.sampled_from(
        [Fraction(1, 2), Fraction(3), Fraction(-7, 3), Decimal("1.00"), Decimal("0.5")]
    ),
    st.just(2**53),
)
STRINGS = st.text(max_size=3)
TUPLES = st.tuples(st.integers(-2, 2), st.text(max_size=2))
# Keys that compare as a dict's do but do not all order: for unsorted reduces only.
UNORDERED = st.one_of(
    NUMBERS,
    STRINGS,
    TUPLES,
    st.binary(max_size=2),
    st.none(),
    st.frozensets(st.integers(0, 3), max_size=3),
    st.sampled_from([1 + 0j, 0.5 + 0j, 2j]),
)
ORDERED_FAMILIES = [NUMBERS, STRINGS, TUPLES]


@map
def passthrough(record: tuple[Any, int]) -> Iterator[tuple[Any, int]]:
    yield record[0], record[1]


def _sum(key: Any, values: Iterable[int]) -> Iterator[tuple[Any, int]]:
    yield key, sum(values)


@map
def by_total(record: tuple[Any, int]) -> Iterator[tuple[int, int]]:
    yield record[1], 1


@reduce(combine=True)
def keys_per_total(total: int, ones: Iterable[int]) -> Iterator[tuple[int, int]]:
    yield total, sum(ones)


def _job(histogram: bool, **options: Any) -> Any:
    totals = reduce(name="totals", **options)(_sum)

    @job(partitions=2)
    def grouping() -> list[Any]:
        return (
            [passthrough, totals, by_total, keys_per_total] if histogram else [passthrough, totals]
        )

    return grouping


JOBS = {
    (combine, ordered, histogram): _job(
        histogram,
        sort=ordered,
        **({"combine": True} if combine == "itself" else {"combiner": _sum} if combine else {}),
    )
    for combine in (None, "itself", "own")
    for ordered in (True, False)
    for histogram in (False, True)
}


Case = tuple[list[list[tuple[Any, int]]], Any, bool, int | None, bool]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    ordered = draw(st.booleans())
    keys = draw(st.sampled_from(ORDERED_FAMILIES)) if ordered else UNORDERED
    records = st.lists(st.tuples(keys, st.integers(-5, 5)), max_size=30)
    files = draw(st.lists(records, min_size=1, max_size=3))
    combine = draw(st.sampled_from([None, "itself", "own"]))
    partitions = draw(st.sampled_from([1, 2, 5, None]))
    return files, combine, ordered, partitions, draw(st.booleans())


def _expected(files: list[list[tuple[Any, int]]]) -> dict[Any, int]:
    totals: dict[Any, int] = {}
    for records in files:
        for key, value in records:
            totals[key] = totals.get(key, 0) + value
    return totals


def _histogram(totals: dict[Any, int]) -> dict[int, int]:
    """How many keys have each total."""
    keys: dict[int, int] = {}
    for total in totals.values():
        keys[total] = keys.get(total, 0) + 1
    return keys


def _check(mode: str, tmp: Path, case: Case) -> None:
    files, combine, ordered, partitions, histogram = case
    run = JOBS[combine, ordered, histogram].run
    got = list(run(inputs=write_inputs(tmp, files), mode=mode, partitions=partitions))
    expected = _histogram(_expected(files)) if histogram else _expected(files)
    assert len(got) == len(expected), f"a key came out twice: {got!r}"
    assert dict(got) == expected
    if ordered and partitions in (1, None):
        keys = [key for key, _ in got]
        assert keys == sorted(keys)


SLOW = [HealthCheck.too_slow]
# Examples per runner: a local run takes a few tenths of a second, a cluster one more.
EXAMPLES = {"inline": 150, "local": 30, "cluster": 12}


def test_keys_meet_as_dict_keys(mode: str, tmp_path: Path) -> None:
    @settings(max_examples=EXAMPLES[mode], suppress_health_check=SLOW)
    @given(case=cases())
    def check(case: Case) -> None:
        _check(mode, tmp_path, case)

    check()


@reduce(sort=False)
def listed(key: Any, values: Iterable[int]) -> Iterator[tuple[Any, list[int]]]:
    yield key, list(values)


@job(partitions=3)
def value_order() -> list[Any]:
    return [passthrough, listed]


@st.composite
def one_file(draw: st.DrawFn) -> list[tuple[Any, int]]:
    keys = st.one_of(st.integers(-2, 2), st.sampled_from([1.0, True, -0.0]), STRINGS)
    return draw(st.lists(st.tuples(keys, st.integers()), max_size=40))


def _check_order(mode: str, tmp: Path, records: list[tuple[Any, int]]) -> None:
    """One input, no combiner: each key's values come in the order the input has them."""
    expected: dict[Any, list[int]] = {}
    for key, value in records:
        expected.setdefault(key, []).append(value)
    got = list(value_order.run(inputs=write_inputs(tmp, [records]), mode=mode))
    assert len(got) == len(expected)
    assert dict(got) == expected


def test_values_keep_the_inputs_order(mode: str, tmp_path: Path) -> None:
    @settings(max_examples=EXAMPLES[mode] * 2 // 3, suppress_health_check=SLOW)
    @given(records=one_file())
    def check(records: list[tuple[Any, int]]) -> None:
        _check_order(mode, tmp_path, records)

    check()


@job(partitions=None)
def pass_on() -> list[Any]:
    return [passthrough]


def test_a_cluster_gives_its_first_tasks_the_inputs_last_first(
    cluster_env: str, tmp_path: Path
) -> None:
    """A Disco 0.5.4 master numbers the first stage's tasks from the last input, and lists
    a map-only job's results by task; the local runner keeps the inputs' order."""
    files = [[(f"input {index}", index)] for index in range(4)]
    inputs = write_inputs(tmp_path, files)
    assert [key for key, _ in pass_on.run(inputs=inputs, mode="local")] == [
        "input 0",
        "input 1",
        "input 2",
        "input 3",
    ]
    on_cluster = pass_on.run(inputs=inputs, mode="cluster")
    assert [key for key, _ in on_cluster] == ["input 3", "input 2", "input 1", "input 0"]
