"""The default partitioner: a content hash, the same in every process and on every machine.

Built-in ``hash()`` is salted per process (``PYTHONHASHSEED``) and a pickle
depends on object identity (its memo) and on set order, so neither can tell
two map tasks where a key goes. The partition is a CRC-32 of
:func:`canonical_bytes`, an encoding that is the same for keys that compare
equal, as a dict sees them, and different for keys that do not:

- numbers are their exact value: ``1``, ``1.0``, ``True``, ``Fraction(1)``,
  ``Decimal("1.00")`` and ``1+0j`` are one key, ``0.5 == Fraction(1, 2)``
  another; every NaN (``nan != nan``, so it is never one key with anything)
  has one encoding, so all NaN keys go to one partition; a ``Decimal`` with
  an exponent beyond ±100000 is refused (its exact value is too big);
- ``str`` (UTF-8, lone surrogates kept) and ``bytes``/``bytearray`` are their
  contents; ``None`` is itself;
- ``tuple`` and ``list`` are their items in order and stay apart (``(1,) != [1]``);
  ``set`` and ``frozenset`` are their items in a canonical order
  (``frozenset({1}) == {1}``);
- ``datetime.date``, naive ``datetime``/``time`` are their fields, aware ones
  the instant they name (an ambiguous local time counts as its first
  reading, as their ``hash()`` does: around a DST change Python's own
  equality of aware datetimes is not transitive); ``timedelta`` its length;
- a subclass of any of these (``namedtuple``, ``IntEnum``, a ``str``
  subclass) encodes as the value it compares equal to;
- a member of another enum is its class and name; an instance of a dataclass
  that compares by its fields (``eq=True``, the default) its class and those
  fields.

Any other key type (a dict, an object) is refused with a :class:`StageError`
naming the stage and the type: make such a key a str or a tuple, or give the
reduce its own ``partitioner=``. :func:`canonical_or_none` is the same
encoding for callers that fall back on something else (the spilling group-by).

:func:`spread` sorts a stream of records into their partitions, a batch at
a time (a map task's output). Not here: calling and checking a reduce's own
``partitioner=`` (:mod:`discodsl.worker.outputs`), grouping within a
partition (:mod:`discodsl.worker.groupby`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import numbers
import sys
from collections.abc import Callable, Iterable
from struct import Struct
from typing import TYPE_CHECKING, Any
from zlib import crc32

from discodsl.worker.errors import StageError, brief
from discodsl.worker.memory import Growth, runs
from discodsl.worker.records import as_pair

if TYPE_CHECKING:
    from decimal import Decimal
    from fractions import Fraction

_LENGTH = Struct(">Q").pack  # before the encoding of an item nested in a container
_END = b"\xff"  # after each item of a container
_DECIMAL_EXPONENT = 100_000  # beyond it a Decimal's exact value is too big to write out
_MICROSECOND = dt.timedelta(microseconds=1)
_STR = crc32(b"s")
# Pairs of one partition that spread() holds before writing them: a batch per write_many.
BATCH = 8192
# Bytes the process may grow by while spread() holds batches, unless told otherwise.
LIMIT = 64 * 1024 * 1024
# Pairs spread() takes between two looks at the process's size, at most: a look costs about
# 10 µs, and pairs far bigger than the last run's come in a run of this many at most.
RUN = 1024
_TUPLE = crc32(b"t")
_INF = float("inf")


def canonical_bytes(key: Any, stage: str = "") -> bytes:
    """A byte encoding of ``key``, equal for equal keys and independent of the process.

    A key with no canonical form raises :class:`StageError` naming ``stage``.
    """
    try:
        return _encoded(key)
    except _Unencodable as err:
        raise _refusal(key, err.what, stage) from None
    except RecursionError:
        raise _refusal(key, "a container nested too deeply (or in itself)", stage) from None


def check_grouped(key: Any, stage: str) -> None:
    """A StageError naming reduce ``stage`` if ``key``, one it got, has no canonical form:
    the key the default partitioner refuses, refused with one partition too (a key that
    compares by identity would be a group of its own per record)."""
    try:
        _encoded(key)
    except (_Unencodable, RecursionError) as err:
        what = err.what if isinstance(err, _Unencodable) else "a container nested too deeply"
        raise StageError(
            f"stage {stage!r} got the key {brief(key, 60)} ({_type_name(key)}), which "
            f"it cannot group: there is no canonical form for {what}, so equal keys would not "
            f"meet; {_key_fix(key)} where it is yielded, or give this reduce a partitioner, "
            "@reduce(partitioner=fn), fn(key, n) -> int, and the job a number of partitions "
            "(partitions=None calls none: partitions=1 keeps one output)",
            stage=stage,
        ) from None


def canonical_or_none(key: Any) -> bytes | None:
    """:func:`canonical_bytes` of ``key``, or None if it has no canonical form."""
    try:
        return _encoded(key)
    except (_Unencodable, RecursionError):
        return None


def _encoded(key: Any) -> bytes:
    """``_encode(key)``; a key nested too deeply for what is left of this thread's stack is
    encoded again on a fresh one: whether it can be must not hang on how deep the caller is
    (inline, a program's own stack; in a worker, the runner's), or a local run and a
    cluster's, or a map's partitioner and its reduce, would disagree on one key."""
    try:
        return _encode(key)
    except RecursionError:
        return _on_a_fresh_stack(_encode, key)


def _on_a_fresh_stack(function: Callable[[Any], bytes], key: Any) -> bytes:
    """``function(key)`` in a new thread, whose stack starts empty; what it raises, raised."""
    import threading  # here: only a key nested hundreds deep comes this way

    done: list[bytes] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            done.append(function(key))
        except BaseException as exc:  # raised again in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="deep-key")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return done[0]


def default_partition(key: Any, partitions: int, stage: str = "") -> int:
    """The partition, 0 to ``partitions - 1``, that ``key`` belongs to."""
    if partitions <= 1:
        return 0
    return crc32(canonical_bytes(key, stage)) % partitions


def partitioner(partitions: int, stage: str = "") -> Callable[[Any], int]:
    """``default_partition`` with ``partitions`` fixed, fastest for ``str`` keys (the common
    case: the CRC of ``b"s" + utf8`` computed as a CRC continued from ``b"s"``), then tuples.

    ``stage`` is the stage whose keys are labelled, for the error a refused key raises.
    """
    if partitions <= 1:
        return lambda key: 0

    def label(key: Any) -> int:
        if type(key) is str:
            return crc32(key.encode("utf-8", "surrogatepass"), _STR) % partitions
        if type(key) is tuple:
            try:
                return crc32(_items(key), _TUPLE) % partitions
            except (_Unencodable, RecursionError):
                pass  # canonical_bytes raises the error naming the stage
        return crc32(canonical_bytes(key, stage)) % partitions

    return label


def spread(
    pairs: Iterable[Any],
    partitions: int,
    write: Callable[[int, list[tuple[Any, Any]]], None],
    stage: str = "",
    label: Callable[[Any], int] | None = None,
    batch: int = BATCH,
    limit: int = LIMIT,
) -> None:
    """Hand ``pairs``, each checked to be a ``(key, value)`` pair, to ``write(partition,
    batch)``, in one list per partition and in order, ``batch`` pairs at a time (what is left
    at the end): by ``label(key)`` (which must give 0 to ``partitions - 1``), or by the
    default partitioner with its ``str`` case inline (no Python call per such key). Once
    the process has grown by ``limit`` bytes since the start, every batch goes at the end
    of each run of pairs (big records: see :mod:`.memory`).

    ``write`` may keep the list it is given. A record that is not a pair raises
    :class:`~discodsl.worker.records.NotAPair`, after the batches before it were written.
    """
    buckets: list[list[tuple[Any, Any]]] = [[] for _ in range(max(1, partitions))]
    inline = label is None and partitions > 1
    other = label or partitioner(partitions, stage)
    growth = Growth(limit, most=min(batch, RUN))
    for run in runs(iter(pairs), growth):
        for pair in run:
            if pair.__class__ is not tuple or len(pair) != 2:
                pair = as_pair(pair)
            key = pair[0]
            if inline and key.__class__ is str:
                index = crc32(key.encode("utf-8", "surrogatepass"), _STR) % partitions
            else:
                index = other(key)
            bucket = buckets[index]
            bucket.append(pair)
            if len(bucket) >= batch:
                write(index, bucket)
                buckets[index] = []
        if growth.look():  # the base stays: what the written batches freed may stay resident
            _write_all(buckets, write)
    _write_all(buckets, write)


def _write_all(
    buckets: list[list[tuple[Any, Any]]], write: Callable[[int, list[tuple[Any, Any]]], None]
) -> None:
    """Write every partition's batch that holds records, and empty it."""
    for index, bucket in enumerate(buckets):
        if bucket:
            write(index, bucket)
            buckets[index] = []


# -- the encoding -------------------------------------------------------------------------------


class _Unencodable(Exception):
    """A key, or an item inside it, has no canonical form; ``what`` says which."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _encode(key: Any) -> bytes:
    """A type tag, then the body it heads: exact types by table, subclasses by their base."""
    kind = type(key)
    if kind is str:
        text: str = key
        return b"s" + text.encode("utf-8", "surrogatepass")
    if kind is tuple:
        return b"t" + _items(key)
    encoder = _ENCODERS.get(kind) or _encoder_for(kind)
    try:
        return encoder(key)
    except (TypeError, ValueError, OverflowError):  # a subclass its base's encoder cannot take
        raise _Unencodable(f"the type {_class_path(kind)}") from None


# Items of a container each end with 0xFF, a byte UTF-8 never uses: a str item is its UTF-8,
# any other item 0xFE (also never in UTF-8), its encoding's length and its encoding.


def _part(item: Any) -> bytes:
    """``item`` as an item of a container, without the 0xFF that ends it."""
    if type(item) is str:
        return item.encode("utf-8", "surrogatepass")
    if isinstance(item, str):
        return str.encode(item, "utf-8", "surrogatepass")
    encoded = _encode(item)
    return b"\xfe" + _LENGTH(len(encoded)) + encoded


def _items(items: Iterable[Any]) -> bytes:
    """The body of a tuple or list: its items in order (``str`` items inline, for speed)."""
    parts = [
        item.encode("utf-8", "surrogatepass") if type(item) is str else _part(item)
        for item in items
    ]
    parts.append(b"")
    return _END.join(parts)


def _tuple(key: tuple[Any, ...]) -> bytes:
    return b"t" + _items(key)


def _list(key: list[Any]) -> bytes:
    return b"l" + _items(key)


def _set(key: frozenset[Any]) -> bytes:
    """Sets in the order of their items' encodings: the same for every insertion order."""
    parts = sorted(map(_part, key))
    parts.append(b"")
    return b"z" + _END.join(parts)


def _str(key: str) -> bytes:
    return b"s" + str.encode(key, "utf-8", "surrogatepass")


def _bytes(key: bytes | bytearray) -> bytes:
    return b"b" + key


def _none(key: None) -> bytes:
    return b"n"


# Numbers: an integral value is "i" and its two's complement, whatever its type; any other
# finite value "q" and its lowest terms; infinities and NaN "f"; non-real complex "c".


def _int_bytes(number: int) -> bytes:
    return int.to_bytes(number, (int.bit_length(number) + 8) // 8, "big", signed=True)


def _int(key: int) -> bytes:
    return b"i" + _int_bytes(key)


def _ratio(numerator: int, denominator: int) -> bytes:
    if denominator == 1:
        return b"i" + _int_bytes(numerator)
    top = _int_bytes(numerator)
    return b"q" + _LENGTH(len(top)) + top + _int_bytes(denominator)


def _float(key: float) -> bytes:
    if key != key:
        return b"fnan"
    if key in (_INF, -_INF):
        return b"f+inf" if key > 0 else b"f-inf"
    return _ratio(*float.as_integer_ratio(key))


def _fraction(key: Fraction) -> bytes:
    return _ratio(key.numerator, key.denominator)


def _decimal(key: Decimal) -> bytes:
    if key.is_nan():
        return b"fnan"
    if key.is_infinite():
        return b"f-inf" if key.is_signed() else b"f+inf"
    exponent = key.as_tuple().exponent
    if isinstance(exponent, int) and abs(exponent) > _DECIMAL_EXPONENT:
        raise _Unencodable(f"a Decimal with an exponent beyond ±{_DECIMAL_EXPONENT} ({key:.6})")
    return _ratio(*key.as_integer_ratio())


def _complex(key: complex) -> bytes:
    if key.imag == 0:
        return _float(key.real)
    return b"c" + _part(key.real) + _part(key.imag)


# Dates and times: microseconds counted from day 1 of year 1 (or from midnight), minus the
# UTC offset of the first reading for aware values, as their hash() does.


def _date(key: dt.date) -> bytes:
    return b"D" + _int_bytes(key.toordinal())


def _datetime(key: dt.datetime) -> bytes:
    seconds = key.toordinal() * 86400 + key.hour * 3600 + key.minute * 60 + key.second
    micro = seconds * 1_000_000 + key.microsecond
    offset = key.replace(fold=0).utcoffset()
    if offset is None:
        return b"T" + _int_bytes(micro)
    return b"U" + _int_bytes(micro - offset // _MICROSECOND)


def _time(key: dt.time) -> bytes:
    seconds = key.hour * 3600 + key.minute * 60 + key.second
    micro = seconds * 1_000_000 + key.microsecond
    offset = key.utcoffset()
    if offset is None:
        return b"h" + _int_bytes(micro)
    return b"H" + _int_bytes(micro - offset // _MICROSECOND)


def _timedelta(key: dt.timedelta) -> bytes:
    return b"d" + _int_bytes(key // _MICROSECOND)


# A subclass finer than a microsecond (pandas' Timestamp and Timedelta) keeps its
# nanoseconds, which tell apart keys that are not equal, after what its base encodes; with
# none it encodes as the value of its base it equals.


def _finer_datetime(key: dt.datetime) -> bytes:
    if key != key:  # pandas' NaT, a missing date: no instant, equal to nothing, itself either
        return b"Tnat"
    return _with_nanoseconds(_datetime(key), getattr(key, "nanosecond", 0))


def _finer_time(key: dt.time) -> bytes:
    return _with_nanoseconds(_time(key), getattr(key, "nanosecond", 0))


def _finer_timedelta(key: dt.timedelta) -> bytes:
    return _with_nanoseconds(_timedelta(key), getattr(key, "nanoseconds", 0))


def _with_nanoseconds(encoded: bytes, nanoseconds: Any) -> bytes:
    if not nanoseconds:
        return encoded
    if not isinstance(nanoseconds, int):
        raise _Unencodable(f"a date or time whose nanoseconds are {nanoseconds!r}")
    return encoded + b"n" + _int_bytes(nanoseconds)


_FINER: dict[Callable[[Any], bytes], Callable[[Any], bytes]] = {
    _datetime: _finer_datetime,
    _time: _finer_time,
    _timedelta: _finer_timedelta,
}


# Most specific first: a datetime is a date, a bool an int.
_BASES: list[tuple[type, Callable[[Any], bytes]]] = [
    (str, _str),
    (tuple, _tuple),
    (int, _int),
    (float, _float),
    (bytes, _bytes),
    (bytearray, _bytes),
    (type(None), _none),
    (list, _list),
    (frozenset, _set),
    (set, _set),
    (complex, _complex),
    (dt.datetime, _datetime),
    (dt.date, _date),
    (dt.time, _time),
    (dt.timedelta, _timedelta),
]
_ENCODERS: dict[type, Callable[[Any], bytes]] = dict(_BASES)


# Supported types of modules the worker does not import itself (each forked worker copies
# what its zygote imported): a key can be one only once its module is loaded.
_LOADED_BASES = (("fractions", "Fraction", _fraction), ("decimal", "Decimal", _decimal))


def _encoder_for(kind: type) -> Callable[[Any], bytes]:
    """The encoder of a subclass of a supported type, an enum or a dataclass compared by its
    fields (remembered), or refuse the type."""
    base, found = next(
        ((base, enc) for base, enc in _BASES + _loaded_bases() if issubclass(kind, base)),
        (None, None),
    )
    # (a date or time finer than a microsecond compares its own way: its encoder says how)
    if base is not None and found not in _FINER and _compares_its_own_way(kind, base):
        raise _Unencodable(
            f"the type {_class_path(kind)}, a {base.__name__} that compares or hashes its own "
            "way (its __eq__ or __hash__), which its value does not tell"
        )
    if found in _FINER:
        found = _FINER[found]
    if found is None and issubclass(kind, numbers.Integral):  # numpy's int64, say
        found = _as_item if _of_numpy(kind) else _as_int  # numpy's timedelta64 is one
    elif found is None and issubclass(kind, numbers.Real) and _real_as_float(kind):
        found = _as_float
    if found is None and _of_numpy(kind):  # its bool_, datetime64, timedelta64
        found = _as_item
    if found is None and issubclass(kind, enum.Enum):
        found = _enum_member
    if found is None and _compared_by_fields(kind):
        found = _dataclass
    if found is None:
        raise _Unencodable(f"the type {_class_path(kind)}")
    _ENCODERS[kind] = found
    return found


def _compares_its_own_way(kind: type, base: type) -> bool:
    """Whether ``kind``, a subclass of ``base``, has an ``__eq__`` or ``__hash__`` of its
    own (case-insensitive text): keys its way equal hold other values. numpy's and pandas'
    (``str_``, ``float64``, ``Timestamp``) equal the value they hold, and hash as it."""
    if kind.__eq__ is base.__eq__ and kind.__hash__ is base.__hash__:
        return False
    own = [
        next(cls for cls in kind.__mro__ if method in vars(cls))
        for method in ("__eq__", "__hash__")
    ]
    return any(cls.__module__.split(".")[0] not in ("numpy", "pandas") for cls in own)


def _as_int(key: numbers.Integral) -> bytes:
    """An integer of another library's type, as the int it equals (and hashes as)."""
    return _int(int(key))


def _as_float(key: numbers.Real) -> bytes:
    """A real of another library's type (numpy's float32), as the float it equals."""
    return _float(float(key))


def _of_numpy(kind: type) -> bool:
    """Whether ``kind`` is one of numpy's scalar types (which give their Python value by
    ``item()``)."""
    return kind.__module__.split(".")[0] == "numpy" and hasattr(kind, "item")


def _as_item(key: Any) -> bytes:
    """A numpy scalar, as the Python value it holds, if it equals it (and hashes as it): a
    bool_ as the bool, a datetime64 of microseconds as the datetime; TypeError for one that
    holds another (a datetime64 of nanoseconds holds an int)."""
    item = key.item()
    if type(item) is type(key) or item != key or hash(item) != hash(key):
        raise TypeError(f"{key!r} is not the {type(item).__name__} it holds")
    return _encode(item)


def _real_as_float(kind: type) -> bool:
    """Whether instances of ``kind``, a numbers.Real, equal the float they convert to (a
    fixed-size binary float does; a decimal or a rational of its own need not)."""
    try:
        sample = kind(0.1)
        return bool(sample == float(sample) and hash(sample) == hash(float(sample)))
    except Exception:
        return False


def _compared_by_fields(kind: type) -> bool:
    """Whether ``kind`` is a dataclass whose instances compare by their fields: ``eq=True``
    (the default), and the ``__eq__`` the decorator made, which it makes from text, so
    from no file (it keeps an ``__eq__`` the class defines, whose file is the module's)."""
    params = getattr(kind, "__dataclass_params__", None)
    code = getattr(getattr(kind, "__eq__", None), "__code__", None)
    return bool(params and params.eq and code and code.co_filename == "<string>")


def _class_path(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _enum_member(key: enum.Enum) -> bytes:
    """A member of an enum that is no int or str (those encode as their value): its class
    and its name, as a member equals only itself."""
    return b"e" + _items((_class_path(type(key)), key.name))


def _dataclass(key: Any) -> bytes:
    """A dataclass compared by its fields (``eq=True``, the default): its class, as equal
    instances are of one class, then the fields it compares, in order."""
    fields = (getattr(key, field.name) for field in dataclasses.fields(key) if field.compare)
    return b"o" + _items((_class_path(type(key)), *fields))


def _loaded_bases() -> list[tuple[type, Callable[[Any], bytes]]]:
    """The _LOADED_BASES whose module is loaded, as (type, encoder)."""
    loaded = ((sys.modules.get(module), name, encoder) for module, name, encoder in _LOADED_BASES)
    return [(getattr(module, name), encoder) for module, name, encoder in loaded if module]


def _refusal(key: Any, what: str, stage: str) -> StageError:
    """The error for a key with no canonical form, saying what to write instead."""
    where = f"stage {stage!r} yielded the key" if stage else "the key"
    return StageError(
        f"{where} {brief(key, 60)} ({_type_name(key)}), but the default partitioner has no "
        f"canonical form for {what}, so equal keys could land in different partitions; "
        f"{_key_fix(key)}, or give the reduce after it a partitioner: "
        "@reduce(partitioner=fn), fn(key, n) -> int",
        stage=stage,
    )


def _type_name(key: Any) -> str:
    """The key's type, with its module unless it is a builtin (numpy's bool is no bool)."""
    kind = type(key)
    return kind.__qualname__ if kind.__module__ == "builtins" else _class_path(kind)


def _key_fix(key: Any) -> str:
    """What to make of a key that has no canonical form."""
    if type(key).__module__.split(".")[0] == "numpy" and hasattr(key, "item"):
        if getattr(key, "size", 1) != 1:  # an array of several values
            return "make it a tuple of the Python values it holds (tuple(key.tolist()))"
        return "make it the Python value it holds (key.item())"
    return (
        "make the key a str, a number or a tuple of them (e.g. str(key) or a tuple of its fields)"
    )
