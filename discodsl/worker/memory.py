"""How big this process is, and a watch that tells a loop holding records when to let go.

A task's buffers are counted in records (a batch per partition, a run of map
output between two combiner folds), and a count bounds nothing when the
records are big: 8,192 values of 20 MB are 160 GB. So the loops that hold
records look at the process's resident size (Linux's ``/proc/self/statm``)
between runs of records, and size the next run on what the last one added:
runs of thousands while records are small (a look costs about 10 µs), of one
while each adds megabytes. A run sized on small records that meets far bigger
ones holds that run of them before the next look (the loops cap their runs for
that). Where ``/proc`` is missing the size reads 0: nothing is ever over the
limit, and runs stay at their longest.

Not here: what the loops let go of, and how (:mod:`.partition`'s spread writes
its batches, :mod:`.combiner` folds); the reduce's grouping, which
estimates the records it holds instead (:mod:`.groupby`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import chain, islice
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# A run may add at most this share of the limit, as the last run's records were sized.
_RUN_SHARE = 8


def resident_bytes() -> int:
    """This process's resident memory; 0 where /proc is not there."""
    try:
        fd = os.open("/proc/self/statm", os.O_RDONLY)  # no file object: read often
        try:
            return int(os.read(fd, 256).split()[1]) * _PAGE
        finally:
            os.close(fd)
    except (OSError, ValueError, IndexError):
        return 0


class Growth:
    """Says when the process has grown by more than ``limit`` bytes since the records held
    were let go, and how many records to take before looking again: ``every``, from 1 to
    ``most``, so that a run adds about ``limit / 8`` at most."""

    def __init__(self, limit: int, most: int) -> None:
        self.limit, self.most = limit, most
        self.every = 1
        self.per_record = 0.0  # bytes a record added, in the last run that grew the process
        self.base = self.last = self.start = self.let_go = resident_bytes()
        self.within_last = self.last  # the size at the last look within a record
        self.per_pair = 0.0  # bytes a pair (or new key) added, at the last look that grew

    def look(self) -> bool:
        """After a run of ``every`` records: whether the process is over the limit (then
        let go of what is held, and :meth:`released`); the next run is sized here, at most
        twice as long as the last (a run that did not grow the process, or that shrank it
        as what was let go was freed, says nothing of the records' size)."""
        now = resident_bytes()
        added, self.last = now - self.last, now
        if added > 0:
            self.per_record = added / self.every
        self.every = self._paced(self.every, self.per_record, self.most)
        return self._over(now)

    def over(self) -> bool:
        """Whether the process is over the limit now (a look within a record that yields
        many: it sizes no run)."""
        return self._over(resident_bytes())

    def _over(self, now: int) -> bool:
        """Over the limit, and grown by a quarter of it since what was held was last let go:
        memory a flush does not give back (the writers' buffers of many partitions) made
        every look find it over, and flush again, after each record. Growth counts from the
        least size since (what a flush freed may leave the process after the look)."""
        self.let_go = min(self.let_go, now)
        return now - self.base > self.limit and now - self.let_go > self.limit // 4

    def paced(self, taken: int, most: int) -> int:
        """Within a record that yields many (pairs, or new keys): after ``taken`` of them
        since the last look, how many to take before the next, sized as runs are (about
        ``limit / 8`` added between two looks), at most ``most``: a record whose pairs are
        megabytes each is looked at every pair, one of small pairs every ``most``."""
        now = resident_bytes()
        added, self.within_last = now - self.within_last, now
        if added > 0:  # else what was let go was freed meanwhile: the last size stands
            self.per_pair = added / taken
        return self._paced(taken, self.per_pair, most)

    def _paced(self, taken: int, each: float, most: int) -> int:
        """How many to take next, after ``taken`` that added ``each`` bytes apiece (0: not
        known): twice as many at most, so that they add ``limit / 8`` at most, 1 to ``most``."""
        longest = self.limit / _RUN_SHARE / each if each else most
        return max(1, min(most, 2 * taken, int(longest)))

    def released(self) -> None:
        """What was held was let go, but its memory may stay resident (the allocator keeps
        what was freed, to reuse): the growth counts as if the limit's worth was freed,
        from no more than half the limit above the size at the start, so that memory kept
        this way moves the base by that much at most (counting from the size now moved it
        by all of it, and a combiner let go later each time)."""
        self.last = self.within_last = self.let_go = resident_bytes()
        self.base = max(self.start, min(self.last - self.limit, self.start + self.limit // 2))


def runs(items: Iterator[Any], growth: Growth) -> Iterator[Iterator[Any]]:
    """``items`` in runs of ``growth.every`` (as it is when each run starts), each taken
    lazily: the caller stays on the item it is at, and a run left unfinished keeps its
    rest for the next."""
    for first in items:
        yield chain((first,), islice(items, growth.every - 1))
