"""Estimated bytes of the records a reduce's grouping holds (:mod:`.groupby`), and so how
many to read before it spills.

Records held in memory are counted with an estimate, not measured:
every chunk of input is sampled and each sampled record counts
``sys.getsizeof`` of the tuple, key and value, plus its slots in the buffer
and its sorted copy and the sort's per-record scratch (``_SLOT_BYTES``).
Every value of a chunk is also measured by its own ``sys.getsizeof`` (all in
C, about 0.1 µs a record), a floor under the sampled estimate that a rare big
value among small ones (a numpy array) would escape; chunks grow at most
twofold, so that one sized on small records meets big ones a few at a time.
Keys or values that are containers count ``_NESTED_FACTOR`` times their
pickled length on top of their own ``getsizeof``, as their items are not
seen otherwise. Flat records are overestimated a little (small ints and
shared strings are counted as if owned). Grouped records count a list slot
and their value's size (none for ``None``, booleans and small ints, which
every record shares), and each key its own size and its list and dict entry
(``_KEY_BYTES``). Spilling keeps the process at about ``budget`` plus a
constant: a merge reads one batch of about ``budget / FAN_IN`` bytes per
run, a record at least, so records too big for that are merged fewer runs at
a time (two at the least: a few records on top of the budget).

Not here: what is done when the budget is used (:mod:`.groupby`), the files
records are spilled to (:mod:`.spills`), a combined map's own memory
(:mod:`.memory`, which measures the process rather than estimating).
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable, Sequence
from contextlib import suppress
from operator import itemgetter
from typing import Any

FAN_IN = 64  # runs merged at once; more need intermediate passes
MAX_CHUNK = 8192  # records read between two budget checks
SAMPLES = 4  # records sized per chunk read
_FIRST_CHUNK = 1  # records read before any size estimate exists
_SLOT_BYTES = 8 + 8 + 16  # slots in the buffer and its sorted copy, sort's keys and scratch
_LIST_SLOT = 9  # a grouped value's slot in its key's list, with the list's spare room
_KEY_BYTES = 56 + 80  # a key's empty list, and its dict entry with the table's spare room
_NESTED_FACTOR = 4  # in-memory bytes per pickled byte of a container's items
_FLAT_TYPES = frozenset({str, bytes, int, float, bool, type(None), complex})
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_VALUE: Callable[[tuple[Any, Any]], Any] = itemgetter(1)
Record = tuple[Any, Any]


def _next_chunk(last: int, fits: int) -> int:
    """Records to read next: as many as ``fits``, and at most twice the ``last`` chunk, so
    that a chunk sized on small records meets big ones a few at a time."""
    return max(1, min(MAX_CHUNK, 2 * last, fits))


class Meter:
    """Estimated bytes of the records held, and how many more to read before the budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.per_record = 0  # bytes of one record, as last sampled
        self.last = _FIRST_CHUNK  # records read last

    def room(self) -> int:
        """How many records to read next; 0 once the budget is used."""
        if not self.per_record:
            return _FIRST_CHUNK
        room = self.budget - self.used
        if self.used and room < self.per_record:
            return 0
        # at least one record even when one alone is over the budget, or nothing moves
        return _next_chunk(self.last, room // self.per_record)

    def count(self, records: Sequence[Record], start: int) -> None:
        """Add ``records[start:]``, just read, to the bytes held."""
        read = len(records) - start
        if read <= 0:
            return
        step = max(1, read // SAMPLES)
        sizes = [_record_size(records[index]) for index in range(start, len(records), step)]
        values = _shallow_values(records[start:]) // read + _SLOT_BYTES
        self.per_record = max(sum(sizes) // len(sizes), values)
        self.used += read * self.per_record
        self.last = read

    def reset(self) -> None:
        """Forget the records held (they were spilled); keep the size estimate."""
        self.used = 0

    def fan_in(self) -> int:
        """Runs to merge at once: ``FAN_IN``, fewer when records are so big that a batch of
        each (a record at least) would not fit half the budget; two at the least."""
        return max(2, min(FAN_IN, self.budget // 2 // max(1, self.per_record)))

    def batch_size(self, readers: int = 0) -> int:
        """Records per spilled batch so that ``readers`` batches (default ``FAN_IN``) fit."""
        share = self.budget // (readers or FAN_IN)
        return max(1, share // max(1, self.per_record))


class GroupMeter:
    """Estimated bytes of grouped records: per record a list slot and its value (nothing
    for the objects CPython keeps one of: None, booleans, small ints), per key the key,
    its list and its dict entry; sampled in every chunk, as Meter samples records."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.per_read = 0  # bytes a record read added, on average over the last chunk
        self.last = _FIRST_CHUNK  # records read last

    def room(self) -> int:
        """How many records to read next: at least one (an empty read means the input
        ended; full() says when to stop)."""
        if not self.per_read:
            return _FIRST_CHUNK
        return _next_chunk(self.last, (self.budget - self.used) // self.per_read)

    def count(self, chunk: Sequence[Record], new_keys: int) -> None:
        """Add ``chunk``, just grouped, which made ``new_keys`` groups, to the bytes held."""
        sample = chunk[:: max(1, len(chunk) // SAMPLES)]
        values = sum(_value_size(value) for _, value in sample) // len(sample)
        keys = sum(_object_size(key) for key, _ in sample) // len(sample)
        values = max(values, _shallow_values(chunk) // len(chunk))
        added = len(chunk) * (_LIST_SLOT + values) + new_keys * (_KEY_BYTES + keys)
        self.used += added
        self.per_read = max(1, added // len(chunk))
        self.last = len(chunk)

    def full(self) -> bool:
        return self.used > self.budget


def _shallow_values(records: Sequence[Record]) -> int:
    """The values' own sizes (``sys.getsizeof``), every one of them: a floor under the
    sampled estimate, which can miss the rare big value (a numpy array, a long bytes) among
    small ones. About 0.1 µs a record, all in C."""
    try:
        return sum(map(sys.getsizeof, map(_VALUE, records)))
    except (TypeError, IndexError, KeyError):  # a record that is no pair: refused later
        return 0


def _value_size(value: Any) -> int:
    """Estimated bytes a grouped value adds: none for an object every record shares."""
    if value is None or value.__class__ is bool:
        return 0
    if value.__class__ is int and -5 <= value <= 256:
        return 0
    return _object_size(value)


def _record_size(record: Any) -> int:
    """Estimated bytes one buffered record takes: see the module docstring."""
    size = sys.getsizeof(record) + _SLOT_BYTES
    if type(record) is tuple:
        for item in record:
            size += _object_size(item)
    return size


def _object_size(item: Any) -> int:
    """Estimated bytes of a key or value; containers count their pickled items too."""
    size = sys.getsizeof(item)
    if type(item) not in _FLAT_TYPES:
        with suppress(Exception):  # unpicklable values are fine in memory; count them shallow
            size += _NESTED_FACTOR * len(pickle.dumps(item, _PROTOCOL))
    return size
