"""Why a reduce's records could not be grouped (:mod:`.groupby`): keys that do not
compare (sorting) or do not hash, and records that are no pairs, each as a StageError
naming the stage, the keys and what to do.

Not here: the grouping itself.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Iterable, Sequence
from numbers import Number
from typing import Any

from discodsl.worker.errors import StageError, a_type, brief
from discodsl.worker.partition import canonical_or_none
from discodsl.worker.records import is_pair

# What comparing two keys that do not compare raises: TypeError; for a Decimal signaling
# NaN, decimal.InvalidOperation (an ArithmeticError); for numpy arrays (or tuples holding
# them), ValueError ("the truth value of an array ... is ambiguous").
UNCOMPARABLE = (TypeError, ArithmeticError, ValueError)


def where(stage: str) -> str:
    """How a message names the stage."""
    return f"stage {stage!r}" if stage else "the reduce"


class _Unordered(Exception):
    """Raised by :class:`_Probe` to carry out the first two keys that do not compare."""

    def __init__(self, left: Any, right: Any, reason: Exception) -> None:
        super().__init__(left, right)
        self.left = left
        self.right = right
        self.reason = reason  # what comparing these two raised


class _Probe:
    """A key that reports which comparison failed; used only after a sort has failed."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __lt__(self, other: _Probe) -> bool:
        try:
            return unequal_and_less(self.key, other.key)
        except UNCOMPARABLE as exc:
            raise _Unordered(self.key, other.key, exc) from None


def unequal_and_less(mine: Any, theirs: Any) -> bool:
    """Whether ``mine`` sorts before ``theirs``, asked only of keys that differ: the
    grouping sorts distinct keys, so a key of a type with no order (None, an enum member)
    compares with none of its equals. Asked as numbers where need be (see _asked)."""
    return _asked(_unequal_and_less, mine, theirs)


def equal_keys(mine: Any, theirs: Any) -> bool:
    """Whether ``mine`` equals ``theirs``, asked as :func:`unequal_and_less` asks it."""
    return _asked(_equal, mine, theirs)


def _unequal_and_less(mine: Any, theirs: Any) -> bool:
    return not _equal(mine, theirs) and bool(mine < theirs)


def _equal(mine: Any, theirs: Any) -> bool:
    return mine is theirs or bool(mine == theirs)


def _asked(question: Callable[[Any, Any], bool], mine: Any, theirs: Any) -> bool:
    """``question(mine, theirs)``; if that raises TypeError, asked again of the keys with
    their numpy numbers as the Python numbers they hold: a Decimal does not compare with a
    numpy integer, which compares with it."""
    try:
        return question(mine, theirs)
    except TypeError:
        plain, other = _python_numbers(mine), _python_numbers(theirs)
        if plain is mine and other is theirs:  # no numpy number in them: no other answer
            raise
    return question(plain, other)


def _python_numbers(key: Any) -> Any:
    """``key`` with each numpy number in it (in tuples too) as the Python number it holds;
    ``key`` itself if it holds none."""
    if isinstance(key, Number) and type(key).__module__ == "numpy":
        return key.item()  # type: ignore[attr-defined]  # numpy's, as the line above says
    if isinstance(key, (tuple, list)):  # a namedtuple's items too, compared as a tuple's
        items = list(map(_python_numbers, key))
        if all(map(operator.is_, items, key)):
            return key
        return items if isinstance(key, list) else tuple(items)
    return key


def _not_a_pair(stage: str, records: Sequence[Any]) -> StageError | None:
    """The error for the first record that is not a ``(key, value)`` pair, if any."""
    for record in records:
        if not is_pair(record):
            return StageError(
                f"{where(stage)}: got {brief(record, 60)} ({type(record).__name__}) as a record; "
                "a reduce's input must be (key, value) pairs: make the previous stage yield them",
                stage=stage,
            )
    return None


def sort_error(stage: str, records: Sequence[Any], err: Exception) -> StageError:
    """Explain a failed sort: a record that is not a pair, or two keys that do not compare."""
    not_pair = _not_a_pair(stage, records)
    if not_pair is not None:
        return not_pair
    try:
        sorted(_Probe(record[0]) for record in records)
    except _Unordered as found:
        err = found.reason  # of the pair named (the sort's may be of another)
        kind = type(found.left).__name__
        if isinstance(err, ArithmeticError):  # decimal's, comparing a signaling NaN
            return StageError(
                f"{where(stage)}: cannot sort its keys: {brief(found.left, 60)} and "
                f"{brief(found.right, 60)} cannot be compared ({type(err).__name__}: a "
                "signaling NaN compares with nothing, nor hashes); keep signaling NaNs out "
                "of keys: map them, e.g. to str(key)",
                stage=stage,
            )
        if _naive_and_aware(found.left, found.right):
            return StageError(
                f"{where(stage)}: cannot sort its keys: {brief(found.left, 60)} and "
                f"{brief(found.right, 60)} cannot be compared ({err}): make every {kind} key "
                "aware (e.g. .replace(tzinfo=timezone.utc) for naive UTC values) or every one "
                "naive, or group with sort=False",
                stage=stage,
            )
        if type(found.left) is type(found.right) and not isinstance(found.left, (tuple, list)):
            # None, or a class without an order (tuples order: their items did not)
            return StageError(
                f"{where(stage)}: cannot sort its keys: {brief(found.left, 60)} and "
                f"{brief(found.right, 60)} ({kind}) cannot be compared ({err}): {kind} keys have "
                "no order; map them to keys that have one (e.g. str), or group with "
                f"sort=False{_partitioned(found.left)}",
                stage=stage,
            )
        right = type(found.right).__name__
        pair = f"{brief(found.left, 60)} ({kind}) and {brief(found.right, 60)} ({right})"
        if type(found.left) is type(found.right):  # tuples (or lists) whose items do not
            return _items_unordered(stage, pair, err, found)
    else:
        pair = "two keys"  # the failing pair did not meet again; err names their types
    return StageError(
        f"{where(stage)}: cannot sort its keys: {pair} cannot be compared ({err}); "
        "make keys of one type (or map them, e.g. to str), or group with sort=False",
        stage=stage,
    )


def _partitioned(key: Any) -> str:
    """What sort=False needs besides, to group keys like ``key``: a partitioner, if it has
    no canonical form (one that compares by identity, or by its own ``__eq__``)."""
    if canonical_or_none(key) is not None:
        return ""
    return (
        " and a partitioner=fn (fn(key, n) -> int), as it has no canonical form to group by, "
        "with the job's partitions= a number (partitions=None calls none)"
    )


def _items_unordered(stage: str, pair: str, err: Exception, found: _Unordered) -> StageError:
    """The error for two tuples (or lists) of keys whose items do not compare: items of two
    types in one place, or of one type with no order (an enum)."""
    kind = type(found.left).__name__
    said = f"{where(stage)}: cannot sort its keys: {pair} cannot be compared ({err}): {kind} keys"
    left, right = _items_apart(found.left, found.right)
    if type(left) is type(right):
        items = f"their items {brief(left, 40)} and {brief(right, 40)}"
        return StageError(
            f"{said} compare item by item, and {items} are {type(left).__name__}s, which have "
            "no order; map them to values that have one (e.g. member.value, str), or group "
            "with sort=False",
            stage=stage,
        )
    return StageError(
        f"{said} compare item by item, so the items in each place must be of one type; map "
        "the keys (e.g. to str), or group with sort=False",
        stage=stage,
    )


def _items_apart(left: Any, right: Any) -> tuple[Any, Any]:
    """The first items at which two tuples (or lists) differ, looked for inside nested ones;
    the two themselves if none differ or they are of other types."""
    while type(left) is type(right) and isinstance(left, (tuple, list)):
        pairs = zip(left, right, strict=False)
        try:
            apart = next(((a, b) for a, b in pairs if not (a is b or a == b)), None)
        except UNCOMPARABLE:  # items that do not say whether they are equal (numpy arrays)
            break
        if apart is None:
            break
        left, right = apart
    return left, right


def _naive_and_aware(left: Any, right: Any) -> bool:
    """Whether ``left`` and ``right`` are datetimes (or times), one naive and one aware."""
    kinds = (dt.datetime, dt.time)
    if not (isinstance(left, kinds) and isinstance(right, kinds)):
        return False
    return (left.utcoffset() is None) != (right.utcoffset() is None)


def _hashable_instead(key: Any, name: str = "key") -> str:
    """What to make of an unhashable key (``name``) instead: a type that compares as it
    does, and so of the first unhashable item of a list or tuple."""
    if isinstance(key, (set, frozenset)):
        return (
            f"frozenset({name}), which compares as the set does (a tuple or str of a set "
            "follows its order, which differs between processes)"
        )
    if isinstance(key, (bytearray, memoryview)):
        return f"bytes({name})"
    if isinstance(key, dict):
        return f"a tuple of its sorted items, tuple(sorted({name}.items()))"
    items = key if isinstance(key, (list, tuple)) else ()
    item = next((item for item in items if not hashable(item)), None)
    if item is None:
        return f"tuple({name}) for a list, or a str"
    inner = f"its item {brief(item, 40)} ({a_type(item)}) as {_hashable_instead(item, 'item')}"
    return f"tuple({name}), {inner}" if isinstance(key, list) else inner


def hashable(value: Any) -> bool:
    """Whether ``value`` hashes."""
    try:
        hash(value)
    except TypeError:
        return False
    return True


def hash_error(
    stage: str, records: Sequence[Any], err: Exception, known: Iterable[Any] = ()
) -> StageError:
    """Explain a failed grouping by hash of ``records``, after the keys ``known``: a key
    that is unhashable, a record not a pair, or two keys of one hash that cannot say
    whether they are equal."""
    not_pair = _not_a_pair(stage, records)
    if not_pair is not None:
        return not_pair
    for record in records:
        try:
            hash(record[0])
        except TypeError:
            return StageError(
                f"{where(stage)}: the key {brief(record[0], 60)} ({type(record[0]).__name__}) "
                f"is not hashable; map keys to a hashable type: {_hashable_instead(record[0])}",
                stage=stage,
            )
    unmet = unmeetable(stage, records[0][0], known) if records else None
    return unmet or StageError(f"{where(stage)}: cannot group its records: {err}", stage=stage)


def unmeetable(stage: str, key: Any, known: Iterable[Any]) -> StageError | None:
    """The error for ``key`` and one of ``known`` of the same hash that raise when asked
    whether they are equal (a Decimal and a numpy integer of one value); None if none
    (``key`` among them: one that does not hash)."""
    try:
        hashed = hash(key)
    except TypeError:
        return None
    for other in known:
        if hash(other) != hashed:
            continue
        try:
            other == key  # noqa: B015 - whether asking raises
        except UNCOMPARABLE as exc:
            pair = f"{brief(other, 60)} ({type(other).__name__}) and {brief(key, 60)}"
            return StageError(
                f"{where(stage)}: cannot group its records: the keys {pair} "
                f"({type(key).__name__}) hash alike but cannot say whether they are equal "
                f"({type(exc).__name__}: {exc}): map keys of one value to one type (e.g. "
                "int(key) or float(key) for numpy's numbers and Decimals)",
                stage=stage,
            )
    return None


def unstable_hash(stage: str, key: Any) -> StageError:
    """The error for a grouped ``key`` that its group no longer finds: its hash changed."""
    return StageError(
        f"{where(stage)}: the key {brief(key, 60)} ({type(key).__name__}) hashes to another "
        "number each time it is asked, so its records cannot meet: make its class's "
        "__hash__ depend only on what its __eq__ compares, and on nothing that changes",
        stage=stage,
    )
