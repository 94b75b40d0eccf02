"""Group a reduce task's ``(key, value)`` records by key within a memory budget.

Two groupings, one per value of a reduce stage's ``sort`` option:

- :func:`group_sorted` yields groups in ascending key order. Records are
  grouped in a dict as they are read, while the groups fit half the budget
  (a record then keeps only its value and a slot in its key's list, not its
  tuple and its own copy of the key), and only the distinct keys are sorted.
  Past that, or at a key that does not hash, the groups are given back as
  records and the records are held as read, in what the groups leave of the
  budget: sorted whole if they fit (the distinct keys when they hash), else
  each full buffer sorted and spilled to a *run* file, and the runs merged
  (several passes when there are more than ``FAN_IN``, or than fit the budget
  when records are big) into one stream in which equal keys are adjacent.
- :func:`group_hashed` yields groups in first-seen order and needs keys that
  are only hashable. Records are grouped in a dict as they are read, while the
  groups fit half the budget. Past that it partitions the records (the groups
  given back as records first) into files by a CRC of the key's canonical
  encoding (:mod:`discodsl.worker.partition`: equal keys encode alike, ``1``,
  ``1.0`` and ``True`` included) and groups each file on its own.

Both yield ``(key, values)`` where ``values`` is an iterator to consume
before asking for the next group (like :func:`itertools.groupby`; whatever is
left is skipped). Spill files live in ``tmpdir``, are deleted once read, and
all are deleted when the grouping ends, is closed early, or fails: wrap the
groups in :func:`contextlib.closing` when a consumer may stop early.

Memory: what the records held take is estimated, not measured
(:mod:`.record_sizes`); spill files are batches of pickled records, each file
read once (:mod:`.spills`).

Not here: reading task inputs, partitioning map output between reduce tasks,
calling the user's reduce function.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import pickle
import sys
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Generator, Iterable, Iterator
from itertools import chain, compress, groupby, islice, repeat
from operator import itemgetter, length_hint
from typing import Any, TypeVar

from discodsl.worker.errors import StageError, brief
from discodsl.worker.group_errors import (
    UNCOMPARABLE,
    equal_keys,
    hash_error,
    sort_error,
    unequal_and_less,
    unmeetable,
    unstable_hash,
    where,
)
from discodsl.worker.partition import canonical_or_none, partitioner
from discodsl.worker.record_sizes import MAX_CHUNK, SAMPLES, GroupMeter, Meter
from discodsl.worker.records import is_pair
from discodsl.worker.spills import Scratch, SpillFile, read_batches, write_batches

K = TypeVar("K")
V = TypeVar("V")
Record = tuple[Any, Any]
Groups = Generator[tuple[K, Iterator[V]], None, None]

_PARTS = 64  # files group_hashed partitions into once past the budget
_PLAIN = frozenset({str, bytes, int, bool, type(None)})  # equal to any copy of themselves
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_KEY: Callable[[Record], Any] = itemgetter(0)
_VALUE: Callable[[Record], Any] = itemgetter(1)


def group_sorted(
    records: Iterable[tuple[K, V]], *, budget: int, tmpdir: str, stage: str = ""
) -> Groups[K, V]:
    """Group ``records`` by key, in ascending key order, holding about ``budget`` bytes.

    Values keep their input order within a group (the sort is stable). Keys
    of one orderable type work (ints, floats, str, bytes, tuples...); keys
    that cannot be compared raise :class:`StageError` naming ``stage`` and
    the two types. ``tmpdir`` receives the run files when spilling.
    """
    _check_budget(budget)
    return _group_sorted(iter(records), budget, tmpdir, stage)


def group_hashed(
    records: Iterable[tuple[K, V]], *, budget: int, tmpdir: str, stage: str = ""
) -> Groups[K, V]:
    """Group ``records`` by key without sorting, holding about ``budget`` bytes.

    Keys need only be hashable. While the groups fit half the budget (as
    estimated: see the module's notes on memory), they come in first-seen
    order. Past that, records are partitioned by a CRC of the
    key's canonical encoding, so keys that compare equal (``1``, ``1.0`` and
    ``True``; equal tuples however built; sets in any order) meet, and the
    groups come partition by partition, in first-seen order within each. A
    key type with no canonical encoding (a user class) is partitioned by its
    ``hash()`` instead: grouped right, in an order that may change from run to
    run. A partition that does not fit either (say, one key with millions of
    values) is grouped by sorting on the keys' encodings, so its values stream
    too; there a user class's keys are told apart by their pickles, and every
    NaN is one key. Values keep their input order within a group.
    """
    _check_budget(budget)
    return _group_hashed(iter(records), budget, tmpdir, stage)


def _check_budget(budget: int) -> None:
    """Refuse a budget that cannot hold anything."""
    if not isinstance(budget, int) or budget <= 0:
        raise ValueError(f"memory budget must be a positive number of bytes, not {budget!r}")


# -- group_sorted -------------------------------------------------------------------------------


def _group_sorted(
    records: Iterator[Record], budget: int, tmpdir: str, stage: str
) -> Groups[Any, Any]:
    """The generator behind :func:`group_sorted`."""
    half = budget // 2
    groups, rest, used = _grouped_while_they_fit(records, half, stage)
    if rest is None:  # they all fit as groups: sort only the distinct keys
        for key in _sorted_keys(groups, [], stage):
            try:
                values = groups[key]
            except KeyError:  # the key's hash changed since it was grouped
                raise unstable_hash(stage, key) from None
            yield key, iter(values)
        return
    # What the groups held is given back as the records fill the rest of the budget.
    yield from _group_buffered(rest, budget - min(used, half), tmpdir, stage)


def _group_buffered(
    records: Iterator[Record], budget: int, tmpdir: str, stage: str
) -> Groups[Any, Any]:
    """Group ``records`` as :func:`group_sorted` does, holding them as they were read (as
    records, within ``budget``) before grouping them: what is left to do when they do not
    fit as groups, or when a key does not hash or a record is not a pair."""
    buffer: list[Record] = []
    meter = Meter(budget)
    if _fill(records, buffer, meter):
        # Fast path, every reduce's: group by hash, sort only the distinct keys.
        groups = _by_key(buffer)
        if groups is not None:
            buffer.clear()
            for key in _sorted_keys(groups, buffer, stage):
                yield key, iter(groups[key])
            return
        unordered = [] if _ordered(buffer) else _without_order(buffer)  # sets: unhashable
        ordered = _sorted(buffer, stage)  # lists, keys that fail, records not pairs
        yield from _adjacent(ordered)  # held, as every group within the budget
        ordered.clear()  # see _sorted: then ``buffer`` frees the records in creation order
        yield from _by_encodings(iter(unordered), budget, tmpdir, stage)
        return
    scratch = Scratch(tmpdir)
    chunks: Iterator[list[Record]] = iter(())
    try:
        runs, apart = _spill_runs(records, buffer, meter, scratch, stage)
        if buffer:
            # A key of no order that may equal one that has (1+0j and 1): all the records
            # are grouped by their encodings instead, in the encodings' order.
            spilled = _read_records(runs + apart, scratch)
            yield from _by_encodings(chain(spilled, buffer, records), budget, tmpdir, stage)
            return
        fan_in = meter.fan_in()
        while len(runs) > fan_in:
            runs = _merge_pass(runs, fan_in, meter.batch_size(fan_in), scratch, stage)
        chunks = _merge(runs, scratch, stage)
        yield from _streamed(groupby(chain.from_iterable(chunks), _KEY), stage)
        # Then the keys of no order (sets, NaN), as within the budget: in their encodings'.
        yield from _by_encodings(_read_records(apart, scratch), budget, tmpdir, stage)
    finally:
        _close(chunks)
        scratch.close()


def _adjacent(ordered: list[Record]) -> Groups[Any, Any]:
    """Each run of equal keys of ``ordered`` (sorted) and its values: keys asked whether
    they are equal as the sort asked them which is less (a list holding a Decimal and one
    holding a numpy integer, which itertools.groupby's ``==`` raised on)."""
    start, size = 0, len(ordered)
    while start < size:
        key, end = ordered[start][0], start + 1
        while end < size and equal_keys(ordered[end][0], key):
            end += 1
        yield key, iter(list(map(_VALUE, ordered[start:end])))
        start = end


def _streamed(groups: Iterator[tuple[Any, Iterator[Record]]], stage: str) -> Groups[Any, Any]:
    """Each group's values as they stream by (itertools.groupby's): once the next group is
    given, or the groups end, what is left of them is gone, and a reduce that kept them to
    read later is told so, rather than given none (within the budget, where groups are
    held, it got them)."""
    given = [0]
    try:
        for key, group in groups:
            given[0] += 1
            yield key, _values(group, given, given[0], stage)
    except TypeError as err:  # from groupby's ``==`` on two keys next to each other
        raise _unequal_neighbours(stage, err) from err
    finally:
        given[0] += 1  # the last group's values are gone too


def _values(group: Iterator[Record], given: list[int], mine: int, stage: str) -> Iterator[Any]:
    try:
        yield from map(_VALUE, group)
    except TypeError as err:
        raise _unequal_neighbours(stage, err) from err
    if given[0] != mine:  # cut short by the next group, or the end: read after the call
        raise StageError(
            f"stage {stage!r}: a key's values were read after the reduce's call on that key "
            "had ended: past its memory budget a reduce's values stream from disk, once, key "
            "after key; read them during the call (list(values) keeps them)",
            stage=stage,
        )


def _unequal_neighbours(stage: str, err: TypeError) -> StageError:
    """Past the budget, sorted records are grouped by asking each key whether it equals
    the one before: two keys that sort but raise when asked so (a Decimal and a numpy
    integer) cannot be grouped there."""
    return StageError(
        f"{where(stage)}: past its memory budget, two keys next to each other in sorted "
        f"order cannot say whether they are equal (TypeError: {err}), as a Decimal and a "
        "numpy integer cannot: map keys to one type (e.g. int(key) or float(key) for "
        "numpy's numbers and Decimals)",
        stage=stage,
    )


def _read_records(paths: list[str], scratch: Scratch) -> Iterator[Record]:
    """The records of the spilled files at ``paths``, file after file."""
    batches = chain.from_iterable(read_batches(path, scratch) for path in paths)
    return chain.from_iterable(batches)


def _grouped_while_they_fit(
    records: Iterator[Record], budget: int, stage: str
) -> tuple[dict[Any, list[Any]], Iterator[Record] | None, int]:
    """Each key's values in input order, grouped as the records are read, while the groups
    take at most ``budget`` bytes (estimated: see GroupMeter) and each record is a pair
    whose key hashes. Far less than the records themselves take when keys repeat: a
    record's tuple and its copy of the key go as soon as it is grouped.

    Gives the groups, None and the bytes used when every record was grouped; else no
    groups, every record (those of the groups given back first, each key's values in input
    order under the first of its equal keys, which a stable sort by key takes as the
    input's order, then those not grouped) and the bytes the groups held. Two keys of one
    hash that cannot say whether they are equal meet in no grouping: a StageError.
    """
    groups: dict[Any, list[Any]] = {}
    meter = GroupMeter(budget)
    while chunk := list(islice(records, meter.room())):
        known = len(groups)
        done, err = _group_into(groups, chunk)
        if done < len(chunk):  # a key that does not hash, a record not a pair
            if err is not None and is_pair(chunk[done]):
                unmet = unmeetable(stage, chunk[done][0], groups)
                if unmet is not None:
                    raise unmet from err
            return {}, chain(_given_back(groups), chunk[done:], records), meter.used
        meter.count(chunk, len(groups) - known)
        if meter.full():
            return {}, chain(_given_back(groups), records), meter.used
    return groups, None, meter.used


def _given_back(groups: dict[Any, list[Any]]) -> Iterator[Record]:
    """The records of ``groups``, key by key in the order the keys came (keys that are
    equal to none, such as NaNs, keep their order), then empties it. The groups and the
    records they fill the buffer with stay within the budget together (see _group_sorted)."""
    for key, values in groups.items():
        for value in values:
            yield key, value
    groups.clear()


def _by_key(buffer: list[Record]) -> dict[Any, list[Any]] | None:
    """Each key's values in input order, the first key object of equal ones as the key (what
    a stable sort and ``groupby`` give); None if a key is not hashable or a record not a pair.

    Sorting the records costs a comparison of keys per record and pass; this
    costs a dict update per record and a sort of the distinct keys only.
    """
    groups: dict[Any, list[Any]] = {}
    done, _ = _group_into(groups, buffer)
    return groups if done == len(buffer) else None


def _group_into(
    groups: dict[Any, list[Any]], records: list[Record]
) -> tuple[int, Exception | None]:
    """Append each record's value to its key's list in ``groups``, in order (the first of
    equal keys stays the key). How many records went in: all of them, or those before the
    first that is not a pair or whose key does not hash, then what that one raised."""
    iterator = iter(records)
    try:
        for key, value in iterator:
            try:
                groups[key].append(value)
            except KeyError:
                groups[key] = [value]
    except (TypeError, ValueError) as err:
        # Counted from what is left, not by enumerate: that costs the loop a fifth.
        return len(records) - length_hint(iterator) - 1, err
    return len(records), None


def _ordered(buffer: list[Record]) -> bool:
    """Whether the keys of ``buffer`` sort in a total order (records that are not pairs are
    left to the sort, whose error names them)."""
    try:
        return all(map(_totally_ordered, map(_KEY, buffer)))
    except (TypeError, IndexError, KeyError):
        return True


def _without_order(buffer: list[Record]) -> list[Record]:
    """Take the records whose keys have no order out of ``buffer`` (which keeps the others,
    in order), and give them; all of them if a record is not a pair (the grouping by
    encodings names it)."""
    try:
        keep = list(map(_totally_ordered, map(_KEY, buffer)))
    except (TypeError, IndexError, KeyError):
        taken = buffer[:]
        buffer.clear()
        return taken
    taken = list(compress(buffer, (not k for k in keep)))
    buffer[:] = compress(buffer, keep)
    return taken


def _totally_ordered(key: Any) -> bool:
    """Whether ``key`` sorts among its kind in a total order: not a set (ordered by subset),
    not a complex number or NaN (unordered), nor a tuple or list holding one."""
    kind = type(key)
    if kind is str or kind is int or kind is bytes:
        return True
    if kind is float:
        return not math.isnan(key)
    if kind is tuple or kind is list or isinstance(key, (tuple, list)) or _fielded(key):
        try:  # a NamedTuple, an order=True dataclass: as their items compare
            return all(map(_totally_ordered, _items_of(key)))
        except RecursionError:  # nested too deeply to say: grouped by encoding, which names it
            return False
    if isinstance(key, (set, frozenset, complex)):
        return False
    return _self_equal(key)  # a NaN of another type, a key that says it is not itself


def _fielded(key: Any) -> bool:
    """Whether ``key`` is a dataclass instance that compares by its fields."""
    kind = type(key)
    return dataclasses.is_dataclass(kind) and kind.__eq__ is not object.__eq__


def _items_of(key: Any) -> Iterable[Any]:
    """What ``key`` (a tuple or list, or a dataclass) compares by: its items, or the fields
    its class compares."""
    if isinstance(key, (tuple, list)):
        return key
    return [getattr(key, field.name) for field in dataclasses.fields(key) if field.compare]


def _sorted_keys(groups: dict[Any, list[Any]], buffer: list[Record], stage: str) -> list[Any]:
    """The keys of ``groups`` in ascending order, then those with no order (NaN, sets,
    complex numbers, which equal none of the others) in their encodings' order; keys that
    do not compare: a StageError naming two of them (never one with no order)."""
    keys: list[Any] = list(groups)
    unordered: list[Any] = []
    if not all(map(_totally_ordered, keys)):
        unordered = [key for key in keys if not _totally_ordered(key)]
        keys = [key for key in keys if _totally_ordered(key)]
        serial = itertools.count()
        unordered.sort(key=lambda key: _sort_key(key, stage, serial))
    try:
        return sorted(keys) + unordered
    except UNCOMPARABLE:
        pass  # perhaps a Decimal and a numpy integer: see unequal_and_less
    try:
        return sorted(keys, key=_EqualFirst) + unordered
    except UNCOMPARABLE as err:
        ordered = [r for r in buffer if not is_pair(r) or _totally_ordered(r[0])]
        ordered += ((key, groups[key][0]) for key in keys)
        raise sort_error(stage, ordered, err) from err


def _fill(records: Iterator[Record], buffer: list[Record], meter: Meter) -> bool:
    """Read records into ``buffer`` until the budget is used; True if the input ran out."""
    while want := meter.room():
        start = len(buffer)
        buffer.extend(islice(records, want))
        meter.count(buffer, start)
        if len(buffer) - start < want:
            return True
    return False


def _sorted(buffer: list[Record], stage: str) -> list[Record]:
    """The records sorted by key only, stably; unorderable keys become a StageError.

    A sorted copy rather than an in-place sort: freeing records in sorted
    order visits memory at random and costs about a fifth of a spill, while
    dropping the copy first and then ``buffer`` frees them in the order they
    were made, several times faster.
    """
    try:
        return sorted(buffer, key=_KEY)
    except UNCOMPARABLE:
        pass  # perhaps only equal keys of no order (None, an enum member): see _EqualFirst
    try:
        return sorted(buffer, key=_equal_first)
    except UNCOMPARABLE as err:
        raise sort_error(stage, buffer, err) from err


class _EqualFirst:
    """A key that asks which is less only of a key it does not equal, as the grouping
    within the budget asks (it sorts the distinct keys): a key of a type with no order
    (None for a grand total, an enum member, a dataclass) compares with no other there,
    but past the budget the records themselves are sorted and merged, and compared it with
    its equals. Used only once plain keys failed to compare: each comparison is a call."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __lt__(self, other: _EqualFirst) -> bool:
        return unequal_and_less(self.key, other.key)


def _equal_first(record: Record) -> _EqualFirst:
    return _EqualFirst(record[0])


def _spill_runs(
    records: Iterator[Record], buffer: list[Record], meter: Meter, scratch: Scratch, stage: str
) -> tuple[list[str], list[str]]:
    """Spill the full ``buffer`` and then the rest of ``records`` as sorted run files, those
    whose keys have no order (sets, NaN) apart, unsorted; the paths of both. Stop, leaving
    ``buffer`` full, at a key of no order that may equal one that has (see _apart)."""
    runs: list[str] = []
    apart: list[str] = []
    done = False
    while buffer:
        if not _ordered(buffer):
            if not _all_apart(buffer):  # left whole, in order, for the grouping by encodings
                break
            apart.append(_spilled(_without_order(buffer), meter, scratch))
        if buffer:
            runs.append(_spilled(_sorted(buffer, stage), meter, scratch))
        buffer.clear()  # after the sorted copy is emptied: see _sorted
        meter.reset()
        if not done:
            done = _fill(records, buffer, meter)
    return runs, apart


def _spilled(records: list[Record], meter: Meter, scratch: Scratch) -> str:
    """Write ``records`` (emptying the list) to a new scratch file; its path."""
    path, file = scratch.create()
    with file:
        write_batches(file, records, meter.batch_size(), flush=True)
    return path


def _all_apart(records: list[Record]) -> bool:
    """Whether every one of ``records`` is a pair, and each key of no order among them is
    apart (see _apart)."""
    try:
        keys = map(_KEY, records)
        return all(_apart(key) for key in keys if not _totally_ordered(key))
    except (TypeError, IndexError, KeyError):  # not a pair: the grouping by encodings names it
        return False


def _apart(key: Any) -> bool:
    """Whether ``key``, one of no order, equals no key that has one: a set, a NaN, a complex
    number off the real line, or a tuple holding one (1+0j equals 1)."""
    if isinstance(key, (set, frozenset)):
        return True
    if isinstance(key, complex):
        return key.imag != 0 or key.real != key.real
    if isinstance(key, (tuple, list)) or _fielded(key):
        return any(map(_apart, _items_of(key)))
    return not _self_equal(key)


def _merge_pass(
    runs: list[str], fan_in: int, batch_size: int, scratch: Scratch, stage: str
) -> list[str]:
    """Merge consecutive groups of ``fan_in`` runs into one run each, keeping their order."""
    merged: list[str] = []
    for start in range(0, len(runs), fan_in):
        group = runs[start : start + fan_in]
        merged.append(
            group[0] if len(group) == 1 else _merge_to_run(group, batch_size, scratch, stage)
        )
    return merged


def _merge_to_run(runs: list[str], batch_size: int, scratch: Scratch, stage: str) -> str:
    """Merge ``runs`` into a new run file and return its path."""
    path, file = scratch.create()
    chunks = _merge(runs, scratch, stage)
    try:
        with file:
            pending: list[Record] = []
            for chunk in chunks:
                pending += chunk
                write_batches(file, pending, batch_size, flush=False)
            write_batches(file, pending, batch_size, flush=True)
    finally:
        _close(chunks)
    return path


class _Head:
    """A run being merged: its current batch, how far that is consumed, and the rest."""

    __slots__ = ("batch", "pos", "reader")

    def __init__(self, reader: Iterator[list[Record]]) -> None:
        self.reader = reader
        self.batch: list[Record] = []
        self.pos = 0

    def advance(self) -> bool:
        """Load the next batch; False once the run is exhausted."""
        self.batch = next(self.reader, [])
        self.pos = 0
        return bool(self.batch)

    def pending(self) -> list[Record]:
        """The records of the current batch not yet merged."""
        return self.batch[self.pos :] if self.pos else self.batch


def _merge(runs: list[str], scratch: Scratch, stage: str) -> Iterator[list[Record]]:
    """Merge sorted runs into a stream of sorted chunks, stably (earlier runs first).

    Rather than one heap operation per record, each step takes the smallest
    of the runs' last buffered keys (the frontier): every buffered record
    below it can go out now, merged by one ``list.sort`` (Timsort merges the
    already sorted pieces in C). The frontier key's records then go out run
    by run, reading further batches as needed, so one key with any number of
    values streams. Each step uses up at least one batch.
    """
    heads = [_Head(read_batches(path, scratch)) for path in runs]
    try:
        heads = [head for head in heads if head.advance()]
        while len(heads) > 1:
            frontier, below = _take_below(heads, stage)
            if below:
                yield below
                del below  # the consumer is done with it; let it go before reading on
            for head in heads:
                yield from _take_equal(head, frontier, stage)
            heads = [head for head in heads if head.pos < len(head.batch)]
        for head in heads:
            yield head.pending()
            yield from head.reader
    finally:
        for head in heads:
            _close(head.reader)


def _take_below(heads: list[_Head], stage: str) -> tuple[Any, list[Record]]:
    """The frontier key and, merged, every buffered record whose key is below it."""
    try:
        frontier, cuts, below = _below(heads, _KEY, _same)
    except UNCOMPARABLE:  # perhaps only equal keys of no order: see _EqualFirst
        try:
            wrapped, cuts, below = _below(heads, _equal_first, _EqualFirst)
            frontier = wrapped.key
        except UNCOMPARABLE as err:
            buffered = [record for head in heads for record in head.batch]
            raise sort_error(stage, buffered, err) from err
    for head, cut in zip(heads, cuts, strict=True):
        head.pos = cut
    return frontier, below


def _below(
    heads: list[_Head], key: Callable[[Record], Any], wrap: Callable[[Any], Any]
) -> tuple[Any, list[int], list[Record]]:
    """The frontier (the least of the heads' last buffered keys, as ``wrap`` makes them),
    where each head's records below it end, and those records merged by ``key``."""
    frontier = min([wrap(head.batch[-1][0]) for head in heads])
    cuts = [bisect_left(head.batch, frontier, head.pos, key=key) for head in heads]
    below: list[Record] = []
    for head, cut in zip(heads, cuts, strict=True):
        below += head.batch[head.pos : cut]
    below.sort(key=key)
    return frontier, cuts, below


def _same(key: Any) -> Any:
    return key


def _take_equal(head: _Head, key: Any, stage: str) -> Iterator[list[Record]]:
    """This run's records with ``key``, in pieces, reading on while the batch ends with it."""
    while True:
        end = _end_of(head, key, stage)
        if end > head.pos:
            piece = head.batch[head.pos : end]
            head.pos = end
            yield piece
        if end < len(head.batch) or not head.advance():
            return


def _end_of(head: _Head, key: Any, stage: str) -> int:
    """Where the records of ``key`` in the head's batch end."""
    try:
        return bisect_right(head.batch, key, head.pos, key=_KEY)
    except UNCOMPARABLE:  # perhaps only equal keys of no order: see _EqualFirst
        try:
            return bisect_right(head.batch, _EqualFirst(key), head.pos, key=_equal_first)
        except UNCOMPARABLE as err:
            raise sort_error(stage, [(key, None), *head.pending()], err) from err


# -- group_hashed -------------------------------------------------------------------------------


def _group_hashed(
    records: Iterator[Record], budget: int, tmpdir: str, stage: str
) -> Groups[Any, Any]:
    """The generator behind :func:`group_hashed`: grouped as the records come while the
    groups fit half the budget; past that, the groups (given back as records) and the rest
    partitioned into files, whose batches waiting to be written take the other half."""
    groups: dict[Any, list[Any]] = {}
    if _collect(records, groups, budget // 2, stage):
        for key, values in groups.items():
            yield key, iter(values)
        return
    scratch = Scratch(tmpdir)
    inner: Iterator[Any] = iter(())
    try:
        batch_size = _spill_batch(groups, budget // 2)
        parts = _partition(chain(_ungroup(groups), records), batch_size, budget, scratch, stage)
        for path in parts:
            loaded = _load_part(path, budget, scratch)
            if loaded is not None:
                scratch.discard(path)
                for key, values in loaded.items():
                    yield key, iter(values)
                del loaded
            else:
                inner = _group_by_encoding(path, budget, scratch, stage)
                yield from inner
    finally:
        _close(inner)
        scratch.close()


def _collect(
    records: Iterator[Record], groups: dict[Any, list[Any]], budget: int, stage: str
) -> bool:
    """Add records to ``groups`` while they take at most ``budget`` bytes (estimated: see
    GroupMeter); True if the input ran out first."""
    meter = GroupMeter(budget)
    while chunk := list(islice(records, meter.room())):
        known = len(groups)
        done, err = _group_into(groups, chunk)
        if err is not None:
            raise hash_error(stage, chunk[done:], err, groups) from err
        meter.count(chunk, len(groups) - known)
        if meter.full():
            return False
    return True


def _spill_batch(groups: dict[Any, list[Any]], budget: int) -> int:
    """Records per batch of a partition file, so that a batch waiting for each of the
    ``_PARTS`` files fits ``budget``: sized on records like the first few groups' first."""
    meter = Meter(budget)
    meter.count([(key, values[0]) for key, values in islice(groups.items(), SAMPLES)], 0)
    return meter.batch_size(_PARTS)


def _ungroup(groups: dict[Any, list[Any]]) -> Iterator[Record]:
    """The records of ``groups`` again, first-seen key first, freeing values as they go."""
    for key, values in groups.items():
        yield from zip(repeat(key), values, strict=False)
        values.clear()  # popping keys instead would rescan the dict's deleted slots each time
    groups.clear()


def _partition(
    records: Iterator[Record], batch_size: int, budget: int, scratch: Scratch, stage: str
) -> list[str]:
    """Write ``records`` into up to ``_PARTS`` files by a CRC of the key's canonical encoding.

    ``hash()`` would do within one process, but it is salted per process and
    the order of the groups would then change from run to run. Batches wait for
    their files in memory; all are written once their values take half the
    ``budget`` (batches are sized in records, on a size sampled from a few, which
    can miss the rare big one). Returns the paths of the files written, in
    partition order.
    """
    files: dict[int, tuple[str, SpillFile]] = {}
    pending: list[list[Record]] = [[] for _ in range(_PARTS)]
    # The part of recent keys: skips most encoding under repeated keys. At most a batch of
    # them, which the budget holds (8,192 long keys, uncounted, took 20 times the budget).
    known: dict[Any, int] = {}
    remembered = min(MAX_CHUNK, batch_size)
    crc = partitioner(_PARTS)  # _part_of's CRC, a str's without building its encoding
    waiting, getsizeof = 0, sys.getsizeof  # bytes of the values in ``pending`` (own sizes)
    try:
        for record in records:
            try:  # the rest of the input, not grouped yet, is checked here
                key, value = record
                part = known.get(key)
            except (TypeError, ValueError) as err:  # not a pair, a key that does not hash
                raise hash_error(stage, [record], err) from err
            if part is None:
                if len(known) >= remembered:
                    known.clear()
                part = known[key] = crc(key) if key.__class__ is str else _part_of(key, stage)
            pending[part].append(record)
            if len(pending[part]) >= batch_size:
                write_batches(
                    _part_file(files, part, scratch), pending[part], batch_size, flush=False
                )
            waiting += getsizeof(value)
            if waiting > budget // 2:
                for index, held in enumerate(pending):
                    if held:
                        write_batches(
                            _part_file(files, index, scratch), held, batch_size, flush=True
                        )
                waiting = 0
        for part, left in enumerate(pending):
            if left:
                write_batches(_part_file(files, part, scratch), left, batch_size, flush=True)
    finally:
        for _, file in files.values():
            file.close()
    return [files[part][0] for part in sorted(files)]


def _part_file(files: dict[int, tuple[str, SpillFile]], part: int, scratch: Scratch) -> SpillFile:
    """The open file of partition ``part``, created on its first write."""
    if part not in files:
        files[part] = scratch.create()
    return files[part][1]


def _part_of(key: Any, stage: str) -> int:
    """The partition of ``key``: a CRC of its canonical encoding, the same for equal keys in
    every process; a key without one (a user class) by its ``hash()``, equal for equal keys."""
    data = canonical_or_none(key)
    if data is not None:
        return zlib.crc32(data) % _PARTS
    _pickled(key, stage)  # it will be spilled: say now if it cannot be
    return hash(key) % _PARTS


def _pickled(key: Any, stage: str) -> bytes:
    """``key`` pickled, or a StageError naming the stage if it cannot be."""
    try:
        return pickle.dumps(key, protocol=4)
    except Exception as err:
        raise StageError(
            f"{where(stage)}: cannot pickle the key {brief(key, 60)} ({type(key).__name__}) to "
            f"spill it to disk: {err}; make keys picklable, e.g. str or tuples",
            stage=stage,
        ) from err


def _load_part(path: str, budget: int, scratch: Scratch) -> dict[Any, list[Any]] | None:
    """The groups of one partition file, or None if they do not fit ``budget``."""
    meter = GroupMeter(budget)
    groups: dict[Any, list[Any]] = {}
    for batch in read_batches(path, scratch, remove=False):
        known = len(groups)
        _group_into(groups, batch)  # every record was checked on its way to the file
        meter.count(batch, len(groups) - known)
        if meter.full():
            return None
    return groups


def _group_by_encoding(path: str, budget: int, scratch: Scratch, stage: str) -> Groups[Any, Any]:
    """Group a partition too big for memory by sorting on the keys' encodings, which streams."""
    batches = read_batches(path, scratch)
    try:
        yield from _by_encodings(chain.from_iterable(batches), budget, scratch.tmpdir, stage)
    finally:
        _close(batches)


def _by_encodings(
    records: Iterator[Record], budget: int, tmpdir: str, stage: str
) -> Groups[Any, Any]:
    """Group ``records`` by sorting on their keys' encodings (see :func:`_sort_key`), within
    ``budget``: for keys that need not be orderable (sets) nor hashable.

    The encodings order totally, and equal keys encode alike. A key without an encoding
    sorts by ``0x00`` and its pickle (no encoding starts with 0x00); a key not equal to
    itself (NaN) is a group of its own, as it is in a dict.
    """
    serial = itertools.count()
    keyed = ((_sort_key(record[0], stage, serial), record) for record in records)
    groups = _group_sorted(keyed, budget, tmpdir, stage)
    try:
        for _, grouped in groups:
            first = next(grouped)
            yield first[0], chain((first[1],), map(_VALUE, grouped))
    finally:
        _close(groups)


def _sort_key(key: Any, stage: str, serial: Iterator[int]) -> bytes:
    """The bytes a key sorts and groups by in :func:`_by_encodings`: its canonical
    encoding, and a serial number after it when the key equals no copy of itself."""
    data = canonical_or_none(key)
    if data is None:
        return b"\x00" + _pickled(key, stage)
    return data if _equal_to_a_copy(key) else data + b"\xff" + str(next(serial)).encode()


def _equal_to_a_copy(key: Any) -> bool:
    """Whether ``key`` equals a copy of itself, as equal keys of two records do (each is
    unpickled on its own): not a NaN, nor a tuple or dataclass holding one at any depth,
    which equal only themselves (a tuple compares an item with itself as equal). A key
    whose copy is the key itself (pandas' NaT, a singleton) is one key, as in a dict."""
    if key.__class__ in _PLAIN:
        return True
    try:
        copy = pickle.loads(pickle.dumps(key, _PROTOCOL))
        return copy is key or bool(key == copy)
    except Exception:
        return _self_equal(key)


def _self_equal(key: Any) -> bool:
    try:
        return bool(key == key)
    except Exception:
        return True


def _close(iterator: Iterator[Any]) -> None:
    """Close a generator now, so its files close and go, rather than when it is collected."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()
