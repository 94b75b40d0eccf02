"""The default partitioner is a content hash of a canonical encoding: keys that compare equal
get one partition in every process, whatever PYTHONHASHSEED or how the key was built."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import os
import re
import subprocess
import sys
from collections import namedtuple
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discodsl.worker import partition
from discodsl.worker.errors import StageError
from discodsl.worker.partition import canonical_bytes, default_partition, partitioner, spread
from discodsl.worker.records import NotAPair

# Built so that equal keys are distinct objects: pickle's memo and set order would differ.
KEYS_SCRIPT = """
import datetime as dt
from decimal import Decimal
from fractions import Fraction

def fresh(text):
    return "".join(list(text))

words = "the cat sat on a mat with alpha beta gamma delta".split()
keys = [
    "apple", "", "unicodé ✓", b"bytes", 7, -12345678901234567890, (1, "a"), 2.5, None,
    ("the", "the"), (fresh("the"), fresh("the")), (("the", 1), [fresh("the"), 1.0]),
    frozenset(words), set(reversed(words)), frozenset({("a", 1), ("b", 2)}),
    1, 1.0, True, Fraction(1), Decimal("1.00"), 0.5, Fraction(1, 2), Decimal("0.5"),
    10 ** 5000, float("inf"), float("nan"), complex(1, 2),
    dt.date(2024, 2, 29), dt.datetime(2024, 2, 29, 12, 30), dt.timedelta(days=1, seconds=5),
    dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=1))),
]
"""

LABELS_SCRIPT = """
import json
from discodsl.worker.partition import canonical_bytes, default_partition
print(json.dumps([[default_partition(k, 13), canonical_bytes(k).hex()] for k in keys]))
"""
SCRIPT = KEYS_SCRIPT + LABELS_SCRIPT


def script_keys() -> list[Any]:
    space: dict[str, Any] = {}
    exec(KEYS_SCRIPT, space)
    return list(space["keys"])


def test_same_partition_across_processes_and_hash_seeds() -> None:
    keys = script_keys()
    here = [[default_partition(k, 13), canonical_bytes(k).hex()] for k in keys]
    for seed in ("0", "1", "12345", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert json.loads(out) == here, f"PYTHONHASHSEED={seed}"


def test_keys_built_differently_but_equal_encode_alike() -> None:
    keys = script_keys()
    assert keys[9] == keys[10] and canonical_bytes(keys[9]) == canonical_bytes(keys[10])
    assert keys[12] == keys[13] and canonical_bytes(keys[12]) == canonical_bytes(keys[13])
    ones = {canonical_bytes(k) for k in (1, 1.0, True, Fraction(1), Decimal("1.00"))}
    halves = {canonical_bytes(k) for k in (0.5, Fraction(1, 2), Decimal("0.5"))}
    assert len(ones) == len(halves) == 1 and ones != halves


def test_in_range_and_spread() -> None:
    labels = [default_partition(f"word{i}", 8) for i in range(8000)]
    assert set(labels) == set(range(8))
    assert min(labels.count(p) for p in range(8)) > 800
    assert default_partition("anything", 1) == 0
    pair_labels = [default_partition((f"w{i}", f"v{i % 7}"), 8) for i in range(8000)]
    assert min(pair_labels.count(p) for p in range(8)) > 800


def test_fast_partitioner_agrees_with_the_definition() -> None:
    keys = [*script_keys(), "\udc80lone surrogate", "ascii", "ü" * 50, 0, -1, ("t", 1)]
    for n in (1, 2, 7, 64):
        label = partitioner(n)
        assert [label(k) for k in keys] == [default_partition(k, n) for k in keys]


def spread_all(pairs: Any, partitions: int, **options: Any) -> list[list[Any]]:
    """What ``spread`` writes, as one list per partition (its batches joined)."""
    written: list[list[Any]] = [[] for _ in range(partitions)]
    spread(pairs, partitions, lambda label, batch: written[label].extend(batch), **options)
    return written


def test_spread_sorts_pairs_by_the_default_partition_in_order() -> None:
    """Many records at once land where one at a time would, str keys (inline) or not,
    each partition's in input order; lists are pairs too, made tuples."""
    keys = [*script_keys(), "\udc80lone surrogate", "ascii", Word("ascii"), 0, ("t", 1)]
    for n in (1, 2, 7):
        pairs = [(key, index) for index, key in enumerate(keys)] + [["list", "pair"]]
        buckets = spread_all(iter(pairs), n)
        for label, bucket in enumerate(buckets):
            expected = [tuple(pair) for pair in pairs if default_partition(pair[0], n) == label]
            assert bucket == expected
            assert all(type(pair) is tuple for pair in bucket)


def test_spread_by_a_labeler_of_ones_own() -> None:
    buckets = spread_all([("a", 1), ("bb", 2), ("c", 3)], 3, label=lambda key: len(key) % 3)
    assert buckets == [[], [("a", 1), ("c", 3)], [("bb", 2)]]


@given(
    labels=st.lists(st.integers(0, 3), max_size=60),
    batch=st.integers(1, 7),
)
def test_spread_writes_full_batches_as_they_fill_and_the_rest_at_the_end(
    labels: list[int], batch: int
) -> None:
    """A partition's pairs go out ``batch`` at a time, each batch as soon as it is full (so
    no more than ``batch`` pairs of a partition are held), in order; never an empty one."""
    writes: list[tuple[int, list[Any], int]] = []
    taken = [0]

    def pairs() -> Iterator[tuple[int, int]]:
        for index, label in enumerate(labels):
            taken[0] = index + 1
            yield label, index

    def write(label: int, pairs: list[Any]) -> None:
        writes.append((label, list(pairs), taken[0]))

    spread(pairs(), 4, write, label=lambda key: key, batch=batch)
    for label in range(4):
        mine = [index for index, key in enumerate(labels) if key == label]
        batches = [pairs for written, pairs, _ in writes if written == label]
        assert [index for pairs in batches for _, index in pairs] == mine
        assert all(0 < len(pairs) <= batch for pairs in batches)
        assert all(len(pairs) == batch for pairs in batches[:-1])
    for _, pairs, when in writes:
        if len(pairs) == batch:  # a full batch: written right after its last pair came
            assert when == pairs[-1][1] + 1


@pytest.mark.parametrize("item", ["ab", ("k", 1, 2), (), None, 5, ["k"]])
def test_spread_refuses_what_is_not_a_pair(item: Any) -> None:
    with pytest.raises(NotAPair) as info:
        spread_all([("k", 1), item], 4)
    assert info.value.item == item


def test_spread_names_the_stage_of_a_refused_key() -> None:
    with pytest.raises(StageError, match="'pairs'"):
        spread_all([({"a": 1}, 1)], 4, stage="pairs")


# -- equal keys, built every way a program might ----------------------------------------------


class Word(str):
    """A str subclass: compares equal to the plain str."""


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


Pair = namedtuple("Pair", "left right")


class Color(enum.Enum):
    RED = 1
    GREEN = "g"
    CRIMSON = 1  # an alias: the same member as RED


@dataclasses.dataclass(frozen=True)
class Point:
    x: Any
    y: Any
    note: str = dataclasses.field(default="", compare=False)  # not compared: not encoded


@dataclasses.dataclass(frozen=True)
class OtherPoint:  # the same fields, another class: never equal to a Point
    x: Any
    y: Any


@dataclasses.dataclass(eq=False)
class Identity:  # compared by identity: no canonical form
    x: int


@dataclasses.dataclass(frozen=True)
class CaselessName:  # eq=True, but an __eq__ of its own: not compared by its fields
    text: str

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CaselessName) and self.text.lower() == other.text.lower()

    def __hash__(self) -> int:
        return hash(self.text.lower())


DAY = dt.timedelta(hours=23, minutes=59)
FINITE = st.floats(allow_nan=False, allow_infinity=True)
ATOMS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70).map(float),
    FINITE,
    st.fractions(max_denominator=1000),
    st.decimals(allow_nan=False, places=3),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.complex_numbers(allow_nan=False),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=st.builds(dt.timezone, st.timedeltas(-DAY, DAY))),
    st.timedeltas(),
    st.times(),
    st.sampled_from([Color.RED, Color.GREEN, Color["CRIMSON"]]),
    st.builds(Point, st.integers(-1, 1), st.sampled_from([0, 0.0, "a"]), st.text(max_size=1)),
    st.builds(OtherPoint, st.integers(-1, 1), st.sampled_from([0, 0.0, "a"])),
)


def nested(atoms: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Keys built of ``atoms`` (all hashable): tuples, lists and sets of them, nested; a set's
    items are hashable by construction (tuples and frozensets), not by a filter, whose
    rejections make hypothesis print this strategy's 40 kB repr and warn about it."""
    hashable = st.recursive(
        atoms,
        lambda inner: st.one_of(st.tuples(inner, inner), st.frozensets(inner, max_size=3)),
        max_leaves=4,
    )
    return st.recursive(
        atoms,
        lambda inner: st.one_of(
            st.tuples(inner, inner),
            st.lists(inner, max_size=3),
            st.frozensets(hashable, max_size=3),
            st.sets(hashable, max_size=3),
        ),
        max_leaves=8,
    )


KEYS = nested(ATOMS)


def rebuilt(key: Any, draw: Any, hashable: bool = False) -> Any:
    """A different object equal to ``key``: other types, other identity, other order."""
    if isinstance(key, bool):
        return draw(st.sampled_from([key, int(key), float(key), Fraction(int(key))]))
    if isinstance(key, int):
        options: list[Any] = [int(str(key)), Fraction(key), Decimal(key)]
        if key in (1, 2):
            options.append(Level(key))
        if abs(key) < 2**53:
            options.append(float(key))
        return draw(st.sampled_from(options))
    if isinstance(key, float) and math.isfinite(key):
        same = [Fraction(key), Decimal(key), complex(key, 0), float(repr(key))]
        return draw(st.sampled_from(same))
    if isinstance(key, str):
        return draw(st.sampled_from([Word(key), "".join(list(key))]))
    if isinstance(key, tuple):
        items = tuple(rebuilt(item, draw, hashable) for item in key)
        return Pair(*items) if len(items) == 2 and draw(st.booleans()) else items
    if isinstance(key, list):
        return [rebuilt(item, draw) for item in key]
    if isinstance(key, (set, frozenset)):
        items = [rebuilt(item, draw, True) for item in reversed(list(key))]
        return frozenset(items) if hashable or draw(st.booleans()) else set(items)
    if isinstance(key, dt.datetime) and key.tzinfo is not None:
        try:
            return key.astimezone(dt.timezone(draw(st.timedeltas(-DAY, DAY))))
        except OverflowError:  # the same instant is not a datetime in that zone
            return key
    return key


@settings(max_examples=400, deadline=None)
@given(key=KEYS, data=st.data())
def test_equal_keys_get_equal_partitions(key: Any, data: st.DataObject) -> None:
    other = rebuilt(key, data.draw)
    assert other == key
    assert canonical_bytes(other) == canonical_bytes(key)
    for n in (2, 7, 64):
        assert partitioner(n)(other) == partitioner(n)(key) == default_partition(key, n)


@settings(max_examples=400, deadline=None)
@given(first=KEYS, second=KEYS)
def test_encodings_are_equal_exactly_when_keys_are(first: Any, second: Any) -> None:
    assert (canonical_bytes(first) == canonical_bytes(second)) == (first == second)


@settings(max_examples=200, deadline=None)
@given(first=ATOMS, second=ATOMS)
def test_atoms_encode_equal_exactly_when_equal(first: Any, second: Any) -> None:
    assert (canonical_bytes(first) == canonical_bytes(second)) == (first == second)


def test_tuples_and_lists_and_types_stay_apart() -> None:
    apart = [(1,), [1], 1, "1", b"1", frozenset({1}), (1, 2), ((1, 2),), ("a", "b"), ("ab",)]
    apart += [("a", ""), ("", "a"), None, (), [], frozenset(), 0.5, complex(0, 1)]
    assert len({canonical_bytes(key) for key in apart}) == len(apart)


def test_subclasses_encode_as_their_value() -> None:
    assert canonical_bytes(Word("the")) == canonical_bytes("the")
    assert canonical_bytes(Level.HIGH) == canonical_bytes(2)
    assert canonical_bytes(Pair("a", 1)) == canonical_bytes(("a", 1))
    assert canonical_bytes(bytearray(b"x")) == canonical_bytes(b"x")


def test_numbers_too_big_for_str_and_zero_signs() -> None:
    huge = 10**5000  # str() refuses ints this long
    assert canonical_bytes(huge) == canonical_bytes(Decimal(huge)) != canonical_bytes(huge + 1)
    assert canonical_bytes(-0.0) == canonical_bytes(0) == canonical_bytes(Decimal("-0"))
    assert canonical_bytes(float("inf")) == canonical_bytes(Decimal("Infinity"))
    assert canonical_bytes(float("-inf")) != canonical_bytes(float("inf"))


def test_every_nan_goes_to_one_partition() -> None:
    nans = [float("nan"), -float("nan"), Decimal("NaN"), complex(float("nan"), 0)]
    assert len({canonical_bytes(nan) for nan in nans}) == 1
    assert canonical_bytes((float("nan"), 1)) == canonical_bytes((math.nan, 1))


def test_aware_datetimes_are_their_instant() -> None:
    utc = dt.datetime(2024, 1, 1, 11, tzinfo=dt.timezone.utc)
    paris = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    naive = dt.datetime(2024, 1, 1, 11)
    assert utc == paris and canonical_bytes(utc) == canonical_bytes(paris)
    assert utc != naive and canonical_bytes(utc) != canonical_bytes(naive)
    assert canonical_bytes(dt.date(2024, 1, 1)) != canonical_bytes(dt.datetime(2024, 1, 1))


class Opaque:
    """A key type with no canonical form."""


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        (Opaque(), "Opaque"),
        (("a", [object()]), "object"),
        ({"a": 1}, "dict"),
        (Identity(1), "Identity"),
        (CaselessName("Ann"), "CaselessName"),  # CaselessName("ann") equals it
    ],
)
def test_a_refused_key_names_the_stage_and_the_type(key: Any, kind: str) -> None:
    with pytest.raises(StageError) as info:
        partitioner(4, stage="pairs")(key)
    assert info.value.stage == "pairs"
    message = str(info.value)
    assert "'pairs'" in message and kind in message
    assert "partitioner=" in message and "tuple" in message
    with pytest.raises(StageError):
        default_partition(key, 4)


class _Stamp(dt.datetime):
    """A datetime finer than a microsecond, as pandas' Timestamp is."""

    nanosecond = 0

    def __eq__(self, other: object) -> bool:
        same = dt.datetime.__eq__(self, other)
        return same is True and getattr(other, "nanosecond", 0) == self.nanosecond

    __hash__ = dt.datetime.__hash__

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return _stamp, (self.nanosecond,)


class _Span(dt.timedelta):
    """A timedelta finer than a microsecond, as pandas' Timedelta is."""

    nanoseconds = 0


def _stamp(nanosecond: int) -> _Stamp:
    made = _Stamp(2020, 1, 1, 12)
    made.nanosecond = nanosecond
    return made


def test_keys_finer_than_a_microsecond_keep_their_nanoseconds() -> None:
    """Two pandas Timestamps a nanosecond apart encoded alike, and a reduce that spilled
    grouped them as one key."""
    assert canonical_bytes(_stamp(1)) != canonical_bytes(_stamp(2))
    assert canonical_bytes(_stamp(0)) == canonical_bytes(dt.datetime(2020, 1, 1, 12))
    spans = [_Span(microseconds=5), _Span(microseconds=5)]
    spans[1].nanoseconds = 7
    assert canonical_bytes(spans[0]) == canonical_bytes(dt.timedelta(microseconds=5))
    assert canonical_bytes(spans[1]) != canonical_bytes(spans[0])


def test_a_container_ends_where_its_last_item_does() -> None:
    """Without the 0xFF that ends a container, () and ("",) encoded alike, as did set() and
    {""}: two keys in one group of a reduce that groups by encodings."""
    assert canonical_bytes(()) != canonical_bytes(("",))
    assert canonical_bytes([]) != canonical_bytes([""])
    assert canonical_bytes(frozenset()) != canonical_bytes(frozenset({""}))
    assert canonical_bytes(("a",)) != canonical_bytes(("a", ""))


def test_equal_aware_dates_and_times_encode_alike() -> None:
    """An ambiguous local time and its fold=1 twin are equal (and hash equal), and so are
    one time of day in two offsets: each pair must be one key."""
    from zoneinfo import ZoneInfo

    utc, plus_one = dt.timezone.utc, dt.timezone(dt.timedelta(hours=1))
    first = dt.datetime(2021, 10, 31, 2, 30, tzinfo=ZoneInfo("Europe/Paris"))  # twice that day
    second = first.replace(fold=1)
    assert first.utcoffset() != second.utcoffset()
    assert first == second and canonical_bytes(first) == canonical_bytes(second)
    noon = dt.time(12, 0, tzinfo=plus_one)
    eleven = dt.time(11, 0, tzinfo=utc)
    assert noon == eleven and canonical_bytes(noon) == canonical_bytes(eleven)
    assert canonical_bytes(noon) != canonical_bytes(dt.time(13, 0, tzinfo=utc))


@pytest.mark.parametrize("text", ["1E+300000", "1E-300000"])
def test_a_decimal_whose_exact_value_is_too_long_is_refused(text: str) -> None:
    with pytest.raises(StageError, match=r"a Decimal with an exponent beyond ±100000"):
        canonical_bytes(Decimal(text))


class _Caseless(str):
    """Text equal whatever its case: what a plain str key holds does not tell its group."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.lower() == other.lower()

    def __hash__(self) -> int:
        return hash(self.lower())


class _ModTen(int):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, int) and self % 10 == other % 10

    def __hash__(self) -> int:
        return hash(self % 10)


@pytest.mark.parametrize("key", [_Caseless("Apple"), _ModTen(13)], ids=["str", "int"])
def test_a_subclass_that_compares_its_own_way_is_refused(key: Any) -> None:
    # They were partitioned as the plain values they hold: "apple", "Apple" and "APPLE",
    # equal keys, landed in three partitions, three groups (probe DI F12).
    with pytest.raises(StageError, match=r"compares or hashes its own way \(its __eq__"):
        canonical_bytes(key, "count")


def test_numpy_and_pandas_values_of_a_base_type_are_that_value() -> None:
    import numpy
    import pandas

    assert canonical_bytes(numpy.str_("a"), "s") == canonical_bytes("a", "s")
    assert canonical_bytes(numpy.float64(1.5), "s") == canonical_bytes(1.5, "s")
    when = dt.datetime(2026, 12, 7, 17, 0)
    assert canonical_bytes(pandas.Timestamp(when), "s") == canonical_bytes(when, "s")
    assert canonical_bytes(enum.IntEnum("E", "A").A, "s") == canonical_bytes(1, "s")


def test_a_numpy_array_key_is_told_what_it_can_be() -> None:
    # An array of two values was told key.item(), which fails for it (probe DI F17).
    import numpy

    for key, fix in (
        (numpy.array([1, 2]), "(tuple(key.tolist()))"),
        (numpy.array(5), "(key.item())"),
    ):
        with pytest.raises(StageError, match=re.escape(fix)):
            canonical_bytes(key, "f")


def test_a_plain_subclass_of_a_numpy_type_is_the_value_it_holds() -> None:
    # Refused as a key "that compares its own way", numpy's (probe DJ F12, a regression).
    import numpy

    class Label(numpy.str_):
        pass

    class Weight(numpy.float64):
        pass

    assert canonical_bytes(Label("a"), "s") == canonical_bytes("a", "s")
    assert canonical_bytes(Weight(1.5), "s") == canonical_bytes(1.5, "s")


def _deep(levels: int) -> Any:
    key: Any = ()
    for _ in range(levels):
        key = (key,)
    return key


def _at_depth(frames: int, call: Any) -> Any:
    """``call()`` made ``frames`` Python frames deeper than here."""
    return call() if frames <= 0 else _at_depth(frames - 1, call)


def test_a_deep_keys_encoding_does_not_hang_on_how_deep_it_is_asked() -> None:
    # A tuple 150 deep was grouped when run() was called at the top of a program, refused
    # 500 frames deeper; a local worker refused one 244 deep that a cluster's took, and its
    # map partitioned one its reduce then refused (probe DN F2).
    key = _deep(150)
    here = partition.canonical_bytes(key)
    assert _at_depth(600, lambda: partition.canonical_bytes(key)) == here
    assert _at_depth(600, lambda: partition.canonical_or_none(key)) == here
    _at_depth(600, lambda: partition.check_grouped(key, "total"))
    label = partition.partitioner(7)
    assert _at_depth(600, lambda: label(key)) == label(key)
    with pytest.raises(StageError, match="nested too deeply"):
        partition.canonical_bytes(_deep(5000), "total")
