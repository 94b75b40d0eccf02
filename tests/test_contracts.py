"""Typed stage contracts: adjacent annotated stages must agree when the job is declared, and
the first records each stage yields are checked against its annotation at run time."""

# The old spellings (Optional[X], Union[X, Y]) are what some of these tests check.
# ruff: noqa: UP007, UP045

from __future__ import annotations

import pickle
import re
from collections import Counter
from collections.abc import Generator, ItemsView, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, NewType, Optional, TypedDict, TypeVar, Union

import cloudpickle
import pytest
from hypothesis import given
from hypothesis import strategies as st

from discodsl import JobError, StageError, TaskFailed, job, map, reduce, stage
from discodsl.contracts import accepts, describe, runtime_specs, runtime_type
from discodsl.worker import typecheck

T = TypeVar("T")
UserId = NewType("UserId", int)


class Animal:
    pass


class Dog(Animal):
    pass


def _declare(*stages: Any) -> Any:
    @job
    def declared() -> list[Any]:
        return list(stages)

    return declared


# --- the must-show: a map yielding (str, int) before a reduce annotated for (int, str) -------


@map
def words(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        yield word, 1


@reduce
def total(word: int, counts: Iterable[str]) -> Iterator[tuple[int, str]]:
    yield word, "".join(counts)


def test_a_map_yielding_str_int_before_a_reduce_for_int_str_is_refused_when_declared() -> None:
    with pytest.raises(JobError) as info:
        _declare(words, total)
    message = str(info.value)
    assert "stage 'words' yields (str, int) but reduce 'total' takes keys of type int" in message
    assert "change total's `word: int` to `word: str`, or make words yield int keys" in message


def test_values_of_the_wrong_type_are_named_with_the_fix() -> None:
    @reduce
    def joined(word: str, counts: Iterable[str]) -> Iterator[tuple[str, str]]:
        yield word, "".join(counts)

    with pytest.raises(JobError) as info:
        _declare(words, joined)
    message = str(info.value)
    assert "reduce 'joined' takes values of type str" in message
    assert "`counts: Iterable[str]` to `counts: Iterable[int]`" in message


# --- declaration: what agrees, what does not ------------------------------------------------


@reduce
def summed(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@map
def words_generator(line: str) -> Generator[tuple[str, int], None, None]:
    yield from ((w, 1) for w in line.split())


@map
def words_list(line: str) -> list[tuple[str, int]]:
    return [(w, 1) for w in line.split()]


@map
def words_iterable(line: str) -> Iterable[tuple[str, bool]]:  # bool is an int
    return [(w, True) for w in line.split()]


@map
def words_counted(line: str) -> ItemsView[str, int]:  # a Counter's items: pairs
    return Counter(line.split()).items()


@map
def words_in_a_tuple(line: str) -> tuple[tuple[str, int], tuple[str, bool], tuple[str, int]]:
    first, second, third = line.split()[:3]
    return (first, 1), (second, True), (third, 1)


@pytest.mark.parametrize(
    "first",
    [words, words_generator, words_list, words_iterable, words_counted, words_in_a_tuple],
)
def test_iterator_iterable_generator_and_list_returns_agree_with_a_reduce(first: Any) -> None:
    assert [s.name for s in _declare(first, summed).stages] == [first.name, "summed"]


def test_an_items_view_is_checked_as_its_pairs_inline() -> None:
    counted = _declare(words_counted, summed)
    assert sorted(counted.run(inputs=["raw://a b a"], mode="inline")) == [("a", 2), ("b", 1)]


def test_a_map_after_a_stage_takes_the_pair() -> None:
    @map
    def swap(pair: tuple[str, int]) -> Iterator[tuple[int, str]]:
        yield pair[1], pair[0]

    @map
    def wrong(pair: tuple[int, int]) -> Iterator[tuple[int, int]]:
        yield pair

    _declare(words, summed, swap)
    with pytest.raises(JobError) as info:
        _declare(words, summed, wrong)
    message = str(info.value)
    assert "stage 'summed' yields (str, int) but map 'wrong' takes records of type " in message
    assert "`pair: tuple[int, int]` to `pair: tuple[str, int]`" in message


def test_a_stages_records_annotated_as_no_iterable_is_told_what_to_write() -> None:
    """It read "takes records of type Any ... or make summed yield Any records"."""

    @stage(grouping="group_all")
    def wrong(records: int) -> Iterator[tuple[str, int]]:  # type: ignore[misc]
        yield "n", records

    with pytest.raises(JobError) as info:
        _declare(words, summed, wrong)
    assert str(info.value) == (
        "stage 'summed' yields (str, int) but stage 'wrong' annotates `records: int`, which "
        "holds no records: change wrong's `records: int` to "
        "`records: Iterable[tuple[str, int]]`"
    )


def test_a_stages_records_annotated_as_a_list_are_told_they_come_as_an_iterator() -> None:
    # "change s_list's `records: list[tuple[str, int]]` to `records: list[tuple[str, int]]`"
    @stage(grouping="group_all")
    def listed(records: list[tuple[str, int]]) -> Iterator[tuple[str, int]]:
        yield "n", len(records)

    with pytest.raises(JobError) as info:
        _declare(words, summed, listed)
    assert str(info.value) == (
        "stage 'listed' takes `records: list[tuple[str, int]]`, but a stage's records come as "
        "an iterator (read once, no len()): annotate `records: Iterable[tuple[str, int]]`, and "
        "call list(records) if you need a list"
    )


def test_a_stage_takes_an_iterator_of_pairs() -> None:
    @stage(grouping="group_all")
    def top(records: Iterator[tuple[str, float]]) -> Iterator[tuple[str, float]]:
        yield from records

    @stage(grouping="group_all")
    def wrong(records: Iterable[tuple[int, float]]) -> Iterator[tuple[int, float]]:
        yield from records

    _declare(words, summed, top)  # int is accepted where float is expected
    with pytest.raises(JobError, match=r"stage 'wrong' takes records of type tuple\[int, float\]"):
        _declare(words, summed, wrong)


def test_unannotated_and_any_stages_are_unchecked() -> None:
    @map
    def plain(line):  # type: ignore[no-untyped-def]
        yield line, 1

    @reduce
    def anything(word: Any, counts: Any) -> Any:
        yield word, counts

    @reduce
    def untyped(word, counts):  # type: ignore[no-untyped-def]
        yield word, 1

    _declare(plain, total)
    _declare(words, anything, total)
    _declare(words, untyped, total)


def test_partial_annotations_check_what_they_state() -> None:
    @map
    def only_return(line):  # type: ignore[no-untyped-def]
        yield line, 1

    only_return.function.__annotations__["return"] = Iterator[tuple[str, int]]

    @reduce
    def only_values(word, counts: Iterable[int]):  # type: ignore[no-untyped-def]
        yield word, 1

    @reduce
    def only_key(word: str, counts):  # type: ignore[no-untyped-def]
        yield word, 1

    _declare(only_return, only_values)
    _declare(only_return, only_key)
    with pytest.raises(JobError, match="takes keys of type int"):
        _declare(only_return, total)


def test_values_come_as_an_iterator_not_a_list() -> None:
    @reduce
    def counted(word: str, counts: list[int]) -> Iterator[tuple[str, int]]:
        yield word, len(counts)

    with pytest.raises(JobError) as info:
        _declare(words, counted)
    assert "`counts: list[int]`" in str(info.value)
    assert "`counts: Iterable[int]`" in str(info.value)


def test_a_combining_reduce_reads_what_it_yields() -> None:
    @reduce(combine=True)
    def stringify(word: str, counts: Iterable[int]) -> Iterator[tuple[str, str]]:
        yield word, str(sum(counts))

    _declare(words, reduce(combine=True)(summed.function))
    with pytest.raises(JobError, match="combine=True"):
        _declare(words, stringify)


def test_the_first_map_must_take_lines_or_pairs() -> None:
    @map
    def number(line: int) -> Iterator[tuple[int, int]]:
        yield line, 1

    @map
    def chained(pair: tuple[str, int]) -> Iterator[tuple[str, int]]:
        yield pair

    _declare(chained, summed)  # an earlier job's results
    with pytest.raises(JobError, match="`line: int` to `line: str`"):
        _declare(number)


# --- annotations as strings: resolved where the function lives, skipped when they cannot be --


def _from_notebook(source: str, namespace: dict[str, Any]) -> Any:
    """A stage defined as in a notebook cell: its module is ``__main__``, its types are there."""
    namespace.setdefault("__name__", "__main__")
    exec(compile("from __future__ import annotations\n" + source, "<cell>", "exec"), namespace)
    return namespace


def test_string_annotations_resolve_in_the_function_namespace() -> None:
    cell = _from_notebook(
        "from collections.abc import Iterator\n"
        "from discodsl import map, reduce\n"
        "class Point:\n    pass\n"
        "class Point3(Point):\n    pass\n"
        "@map\ndef points(line: str) -> Iterator[tuple[str, Point3]]:\n    yield line, Point3()\n"
        "@reduce\ndef keep(k: str, vs: Iterator[Point]) -> Iterator[tuple[str, int]]:\n"
        "    yield k, 1\n"
        "@reduce\ndef wrong(k: str, vs: Iterator[int]) -> Iterator[tuple[str, int]]:\n"
        "    yield k, 1\n",
        {},
    )
    _declare(cell["points"], cell["keep"])
    with pytest.raises(JobError, match="reduce 'wrong' takes values of type int"):
        _declare(cell["points"], cell["wrong"])


def test_unresolvable_annotations_are_skipped() -> None:
    cell = _from_notebook(
        "from collections.abc import Iterator\n"
        "from discodsl import map, reduce\n"
        "@map\ndef odd(line: NoSuchType) -> Iterator[tuple[str, int]]:\n    yield line, 1\n"
        "@map\ndef opaque(line: str) -> Iterator[tuple[str, NoSuchType]]:\n    yield line, 1\n"
        "@reduce\ndef keyed(k: int, vs: Undefined) -> Iterator[tuple[str, int]]:\n"
        "    yield str(k), 1\n",
        {},
    )
    with pytest.raises(JobError, match="takes keys of type int"):  # the key is still checked
        _declare(cell["odd"], cell["keyed"])
    _declare(cell["opaque"], cell["keyed"])  # what opaque yields is not known: not checked
    assert runtime_type(cell["opaque"].spec) is None
    assert runtime_type(cell["odd"].spec) is not None


# --- the compatibility rules --------------------------------------------------------------

ACCEPTED = [
    (int, int),
    (Animal, Dog),
    (float, int),
    (complex, float),
    (int, bool),
    (object, str),
    (Any, str),
    (str, Any),
    (T, str),
    (Optional[int], None),
    (Optional[int], int),
    (Union[int, str], Union[str, int]),
    (int | str | None, Optional[str]),
    (tuple[str, int], tuple[str, bool]),
    (tuple[str, tuple[int, float]], tuple[str, tuple[int, int]]),
    (tuple[int, ...], tuple[int, int, int]),
    (tuple, tuple[str, int]),
    (Iterable[int], Iterator[int]),
    (Iterable[int], list[int]),
    (Sequence[float], list[int]),
    (Iterator[tuple[str, int]], Generator[tuple[str, int], None, None]),
    (str, Literal["a", "b"]),
    (int, UserId),
    (Iterable[Any], dict[str, int]),
]

REFUSED = [
    (int, str),
    (Dog, Animal),
    (int, float),
    (str, None),
    (str, Optional[str]),
    (int, Union[int, str]),
    (tuple[str, int], tuple[int, str]),
    (tuple[str, tuple[int, int]], tuple[str, tuple[int, str]]),
    (tuple[str, int], tuple[str, int, int]),
    (tuple[int, ...], tuple[int, str]),
    (list[int], Iterator[int]),
    (Literal["a"], str),
    (bytes, str),
]


@pytest.mark.parametrize(("expected", "produced"), ACCEPTED)
def test_accepted(expected: Any, produced: Any) -> None:
    assert accepts(expected, produced)


@pytest.mark.parametrize(("expected", "produced"), REFUSED)
def test_refused(expected: Any, produced: Any) -> None:
    assert not accepts(expected, produced)


# --- run time: the first records a stage yields are checked -------------------------------


@map
def liar(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        yield word, word  # type: ignore[misc]


@job
def lying() -> list[Any]:
    return [liar]


def test_a_wrong_record_fails_an_inline_run_by_default() -> None:
    with pytest.raises(StageError) as info:
        lying.run(["raw://hello world"], mode="inline")
    message = str(info.value)
    assert info.value.stage == "liar"
    assert "stage 'liar' yielded ('hello', 'hello')" in message
    assert "its value 'hello' is a str" in message
    assert "`-> Iterator[tuple[str, int]]`" in message and "values must be int" in message


class Row(TypedDict):
    n: int


@map
def typed_rows(line: str) -> Iterator[tuple[str, Row]]:
    yield line, {"n": len(line)}


@reduce
def first_rows(key: str, rows: Iterable[Row]) -> Iterator[tuple[str, Row]]:
    yield key, next(iter(rows))


@job
def typed_dicts() -> list[Any]:
    return [typed_rows, first_rows]


@map
def listed_rows(line: str) -> Iterator[tuple[str, Row]]:
    yield line, [len(line)]  # type: ignore[misc]


@job
def wrongly_typed_dicts() -> list[Any]:
    return [listed_rows]


def test_a_typed_dict_is_a_dict_to_the_check() -> None:
    assert list(typed_dicts.run(["raw://abc"], mode="inline")) == [("abc", {"n": 3})]
    with pytest.raises(StageError, match=r"its value \[3\] is a list"):
        wrongly_typed_dicts.run(["raw://abc"], mode="inline")


def test_the_check_can_be_turned_off_inline() -> None:
    assert sorted(lying.run(["raw://a b"], mode="inline", check_types=False)) == [
        ("a", "a"),
        ("b", "b"),
    ]


def test_a_wrong_record_fails_a_local_run_when_enabled() -> None:
    with pytest.raises(TaskFailed) as info:
        lying.run(["raw://hello world"], mode="local", check_types=True)
    assert info.value.stage == "liar"
    assert "its value 'hello' is a str" in str(info.value)
    assert sorted(lying.run(["raw://a"], mode="local")) == [("a", "a")]  # off by default


@reduce
def late_liar(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    n = sum(counts)
    yield word, n
    yield word, str(n)  # type: ignore[misc]


def test_a_reduce_and_a_stage_are_checked_too(tmp_path: Path) -> None:
    @stage(grouping="group_all")
    def keys(records: Iterable[tuple[str, int]]) -> Iterator[tuple[str, str]]:
        for key, _ in records:
            yield key, 1  # type: ignore[misc]

    with pytest.raises(StageError, match=r"stage 'late_liar' yielded \('a', '1'\)"):
        _declare(words, late_liar).run(["raw://a"], mode="inline")
    with pytest.raises(StageError, match=r"stage 'keys' yielded \('a', 1\)"):
        _declare(words, summed, keys).run(["raw://a"], mode="inline")


def test_only_the_first_records_of_a_task_are_checked() -> None:
    limit = typecheck.CHECK_RECORDS

    @map
    def late(line: str) -> Iterator[tuple[int, int]]:
        for n in range(limit):
            yield n, n
        yield limit, "late"  # type: ignore[misc]

    assert len(list(_declare(late).run(["raw://x"], mode="inline"))) == limit + 1


def test_a_check_that_is_off_costs_nothing() -> None:
    function = liar.function
    assert typecheck.checked(liar.spec, function) is function
    on = runtime_specs([liar.spec], on=True)[0]
    assert runtime_specs([liar.spec], on=False)[0] is liar.spec
    assert typecheck.checked(on, function) is not function
    assert typecheck.checked(on, function, limit=0) is function


# --- the runtime descriptions: plain data, any class by name --------------------------------


def _matches(tp: Any, value: Any) -> bool:
    shipped = pickle.loads(cloudpickle.dumps(describe(tp)))
    return typecheck.matches(shipped, value)


@given(st.data())
def test_values_of_a_type_match_its_description(data: st.DataObject) -> None:
    tp = data.draw(
        st.sampled_from(
            [
                tuple[str, int],
                tuple[bytes, float],
                tuple[tuple[int, str], Optional[bool]],
                tuple[str, list[int]],
                tuple[frozenset[int], dict[str, float]],
                tuple[int, ...],
                Union[int, str, None],
            ]
        )
    )
    assert _matches(tp, data.draw(st.from_type(tp)))


def test_classes_match_by_name_with_their_subclasses() -> None:
    assert _matches(tuple[str, Animal], ("a", Dog()))
    assert not _matches(tuple[str, Dog], ("a", Animal()))
    assert not _matches(tuple[str, int], ("a", "b"))
    assert not _matches(tuple[str, list[int]], ("a", [1, "x"]))
    assert _matches(tuple[str, float], ("a", 1))
    assert not _matches(tuple[str, int], ("a", 1.5))


def test_a_types_article_is_said_as_english_says_it() -> None:
    from discodsl.worker.errors import a_type

    assert [a_type(1), a_type("x"), a_type(None), a_type(b"")] == [
        "an int",
        "a str",
        "a NoneType",
        "a bytes",
    ]


class Point(NamedTuple):
    x: int
    label: str


def test_a_named_tuple_is_checked_as_the_tuple_of_its_fields() -> None:
    # P(a: int, b: str) went where tuple[str, str] was taken without a word.
    @map
    def points(line: str) -> Iterator[tuple[str, Point]]:
        yield line, Point(1, line)

    @reduce
    def labelled(key: str, values: Iterable[tuple[int, str]]) -> Iterator[tuple[str, int]]:
        yield key, sum(x for x, _ in values)

    @reduce
    def named(key: str, values: Iterable[tuple[str, str]]) -> Iterator[tuple[str, int]]:
        yield key, len(list(values))

    _declare(points, labelled)
    with pytest.raises(JobError, match=r"stage 'points' yields .*but reduce 'named' takes"):
        _declare(points, named)


@pytest.mark.parametrize(
    ("annotation", "said"),
    [
        ("int", "map 'odd' is annotated `-> int`, which holds no records"),
        (
            "Iterator[tuple[str, int, int]]",
            "map 'odd' is annotated to yield tuple[str, int, int], records of 3 items",
        ),
        # An iterator of what is no pair passed, to fail at run time (probe CM F10).
        ("Iterator[int]", "map 'odd' is annotated to yield int, which is no (key, value) pair"),
        ("Iterable[str]", "map 'odd' is annotated to yield str, which is no (key, value) pair"),
        (
            "Generator[float, None, None]",
            "map 'odd' is annotated to yield float, which is no (key, value) pair",
        ),
    ],
)
def test_a_stage_annotated_to_make_no_pairs_is_refused_at_declaration(
    annotation: str, said: str
) -> None:
    namespace: dict[str, Any] = {"Iterator": Iterator, "Iterable": Iterable, "Generator": Generator}
    exec(f"def odd(line: str) -> {annotation}:\n    return 1\n", namespace)
    with pytest.raises(JobError, match=re.escape(said)):
        _declare(map(namespace["odd"]))


def test_a_class_defined_again_since_a_stage_named_it_is_still_that_class() -> None:
    # A notebook's class cell run again, unchanged, between the map's cell and the reduce's:
    # "parse yields (str, Rec) but tot takes values of type Rec: change tot's `vs:
    # Iterable[Rec]` to `vs: Iterable[Rec]`" (probe CP F8). Records take it by its name.
    namespace: dict[str, Any] = {"Iterator": Iterator, "Iterable": Iterable}

    def cell(source: str) -> None:  # as a notebook runs it: annotations evaluated at once
        exec(compile(source, "<cell>", "exec", dont_inherit=True), namespace)

    rec = "from typing import NamedTuple\nclass Rec(NamedTuple):\n    n: int\n"
    cell(rec)
    cell("def parse(line: str) -> Iterator[tuple[str, Rec]]:\n    yield line, Rec(1)\n")
    cell(rec)  # the class cell again
    cell("def tot(k: str, vs: Iterable[Rec]) -> Iterator[tuple[str, int]]:\n    yield k, 1\n")
    _declare(map(namespace["parse"]), reduce(namespace["tot"]))


class Counted(NamedTuple):
    word: str
    n: int


class Triple(NamedTuple):
    a: str
    b: int
    c: int


@dataclass
class Tally:
    word: str
    n: int


def test_a_named_tuple_or_dataclass_yielded_as_the_record_is_checked_as_a_pair() -> None:
    # A NamedTuple of (str, int) fed a reduce of str values, one of three fields and a
    # dataclass as the records all passed, to fail when run (probe CM F14).
    def counted(line: str) -> Iterator[Counted]:
        yield Counted(line, 1)

    def texts(key: str, values: Iterable[str]) -> Iterator[tuple[str, int]]:
        yield key, len(list(values))

    with pytest.raises(JobError, match=r"yields \(str, int\) but reduce 'texts' takes"):
        _declare(map(counted), reduce(texts))
    _declare(map(counted), reduce(total_of_ints))
    for kind, said in [(Triple, "a NamedTuple of 3 fields"), (Tally, "which is no (key, value)")]:
        namespace: dict[str, Any] = {"Iterator": Iterator, "Kind": kind}
        exec("def odd(line: str) -> Iterator[Kind]:\n    yield 1\n", namespace)
        with pytest.raises(JobError, match=re.escape(said)):
            _declare(map(namespace["odd"]))


def test_a_stage_taking_named_tuple_records_is_told_they_come_as_tuples() -> None:
    # The pipeline was accepted, and the map got plain tuples: 'tuple' object has no
    # attribute 'word', on every runner (probe CR F6).
    def counted(line: str) -> Iterator[Counted]:
        yield Counted(line, 1)

    def reads(record: Counted) -> Iterator[tuple[str, int]]:
        yield record.word, record.n

    with pytest.raises(JobError) as info:
        _declare(map(counted), map(reads))
    assert "a record reaches a stage as a plain (key, value) tuple" in str(info.value)
    assert "take `record: tuple[str, int]`" in str(info.value)
    with pytest.raises(JobError, match="a NamedTuple"):
        _declare(map(reads))  # the first stage: lines, or an earlier job's pairs


def test_a_stage_taking_named_tuple_records_is_told_so_whatever_comes_before() -> None:
    # Refused only after an annotated stage; and not as Optional[Counted] (probe CS F13).
    def unannotated(line):  # type: ignore[no-untyped-def]
        yield line, 1

    def optional(record: Optional[Counted]) -> Iterator[tuple[str, int]]:
        yield "x", 1

    def united(record: Counted | None) -> Iterator[tuple[str, int]]:
        yield "x", 1

    def streamed(records: Iterator[Counted]) -> Iterator[tuple[str, int]]:
        yield "x", 1

    def either(record: Union[Counted, tuple[str, int]]) -> Iterator[tuple[str, int]]:
        yield "x", 1

    for after in (map(optional), map(united), stage(streamed)):
        with pytest.raises(JobError, match="a record reaches a stage as a plain"):
            _declare(map(unannotated), after)
    _declare(map(unannotated), map(either))  # a plain pair takes them (probe CW F12)


def total_of_ints(key: str, values: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield key, sum(values)


def test_a_combiner_is_checked_against_the_reduce_that_reads_what_it_yields() -> None:
    # combine=True was checked; combiner= was not, and at run time the combiner's float
    # was blamed on the reduce.
    def averaged(key: str, values: Iterable[int]) -> Iterator[tuple[str, float]]:
        yield key, sum(values) / 2

    def kept(key: str, values: Iterable[int]) -> Iterator[tuple[str, int]]:
        yield key, sum(values)

    def totals(key: str, values: Iterable[int]) -> Iterator[tuple[str, int]]:
        yield key, sum(values)

    _declare(words, reduce(totals, combiner=kept))
    with pytest.raises(JobError) as info:
        _declare(words, reduce(totals, combiner=averaged))
    said = str(info.value)
    assert said.startswith("the combiner of reduce 'totals' runs map-side: the reduce reads")
    assert "'averaged' yields (str, float) but reduce 'totals' takes values of type int" in said
