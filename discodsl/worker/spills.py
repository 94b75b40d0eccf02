"""The spill files of a reduce's grouping (:mod:`.groupby`): batches of records written
when they outgrow the memory budget, and read back once.

Spill files are private to one grouping in one process: batches of records,
each framed as its length (8 bytes) and a pickle of the list (of
``_PICKLED`` records at most, with the pickler's memo), so an object held
twice in a batch comes back as one object held twice. Each file is deleted
once read, and all are deleted when the grouping ends (:class:`Scratch`).

Not here: which records to spill, and when (:mod:`.groupby`, :mod:`.record_sizes`).
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any

from discodsl.worker import forks, owners
from discodsl.worker.errors import DataError

Record = tuple[Any, Any]

_PROTOCOL = pickle.HIGHEST_PROTOCOL
_FRAME = struct.Struct("<Q")  # each batch in a spill file: its pickle's length, then the pickle
_BATCH_BYTES = 1 << 20  # the most a spilled batch of several records pickles to
_PICKLED = 8192  # records in one pickle of a spill, at most: its memo stays small


class Scratch:
    """The spill files of one grouping, in ``tmpdir``: each removed once read, all at the end.

    Each is named after its process (:func:`~.owners.owner_mark`): a worker killed while it
    spilled (the out-of-memory killer) cleans nothing up, and the next grouping to spill in
    the same directory (the job's, a task after it) removes what such a process left.
    """

    def __init__(self, tmpdir: str) -> None:
        self.tmpdir = tmpdir
        self._paths: set[str] = set()

    def create(self) -> tuple[str, SpillFile]:
        """A new empty file for writing, and its path."""
        import tempfile  # here, not at the top: only a spilling reduce needs it (5 ms a start)

        if not self._paths:
            _remove_ended(self.tmpdir)
        prefix = f"{_SPILL_PREFIX}{owners.owner_mark()}"
        try:
            fd, path = tempfile.mkstemp(prefix=prefix, suffix=_SPILL_SUFFIX, dir=self.tmpdir)
        except OSError as exc:
            raise SpillFailed.of("create", os.path.join(self.tmpdir, prefix), exc) from exc
        self._paths.add(path)
        return path, SpillFile(path, os.fdopen(fd, "wb"))

    def discard(self, path: str) -> None:
        """Delete one file, as soon as it has been read."""
        self._paths.discard(path)
        with suppress(FileNotFoundError):
            os.unlink(path)

    def close(self) -> None:
        """Delete every file still here: the grouping ended, early or not."""
        for path in list(self._paths):
            self.discard(path)


_SPILL_PREFIX, _SPILL_SUFFIX = "groupby-", ".spill"


class SpillFailed(DataError):
    """A reduce's spill file could not be written (a full disk): retried, as Disco retries
    a task whose node failed it, with what to do."""

    @classmethod
    def of(cls, action: str, path: str, exc: OSError) -> SpillFailed:
        return cls(
            f"the reduce could not {action} its spill file {path}: {exc.strerror or exc}; a "
            "reduce whose groups outgrow the job's memory_budget writes them to files in its "
            "job's directory (locally under TMPDIR): free space there, or give the job a "
            "bigger memory_budget or more partitions",
            url=path,
        )


class SpillFile:
    """A spill file open for writing, whose OSErrors are SpillFailed; closing it after one
    (the rest of a full buffer, on a full disk again) raises nothing more."""

    def __init__(self, path: str, file: IO[bytes]) -> None:
        self.path, self._file, self._failed = path, file, False

    def write(self, data: bytes | memoryview) -> int:
        try:
            return self._file.write(data)
        except OSError as exc:
            self._failed = True
            raise SpillFailed.of("write", self.path, exc) from exc

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:
            if not self._failed:
                raise SpillFailed.of("write", self.path, exc) from exc

    def __enter__(self) -> SpillFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _remove_ended(directory: str) -> None:
    """Remove the spill files in ``directory`` of processes that have ended."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    spills = (name for name in names if name.startswith(_SPILL_PREFIX))
    for name in spills:
        if name.endswith(_SPILL_SUFFIX) and owners.ended(name.removeprefix(_SPILL_PREFIX)):
            with suppress(OSError):
                os.unlink(os.path.join(directory, name))


def write_batches(file: SpillFile, records: list[Record], size: int, *, flush: bool) -> None:
    """Write ``records`` as pickled batches of ``size`` and remove them from the list.

    Without ``flush`` a last partial batch stays in ``records`` for later.
    Each batch is framed as its pickle's length then the pickle.
    """
    end = len(records) if flush else len(records) - len(records) % size
    for start in range(0, end, size):
        _write_batch(file, records[start : start + size])
    del records[:end]


def _write_batch(file: SpillFile, batch: list[Record]) -> None:
    """One batch, framed: as frames of _PICKLED records at most (the memo of a pickle of
    more slows each record), each split until its pickle is about _BATCH_BYTES at most (or
    a record: see _write_frame), so that reading a frame back holds no more (a batch is
    sized in records, on a size sampled from a few, which can miss the rare big one)."""
    for start in range(0, len(batch), _PICKLED):
        _write_frame(file, batch[start : start + _PICKLED])


def _write_frame(file: SpillFile, records: list[Record], data: memoryview | None = None) -> None:
    """``records`` (pickled as ``data``, if given) as one frame, or, over _BATCH_BYTES, as
    frames of as many records as fit on their average: each record pickled twice at most
    (halving pickled a batch of big records once per halving), but for a part that
    records of uneven sizes took to twice _BATCH_BYTES, split again."""
    data = dumps(records) if data is None else data
    if len(data) <= _BATCH_BYTES or len(records) == 1:
        file.write(_FRAME.pack(len(data)))
        file.write(data)
        return
    per = max(1, len(records) * _BATCH_BYTES // len(data))
    del data
    for start in range(0, len(records), per):
        part = records[start : start + per]
        pickled = dumps(part)
        if len(pickled) > 2 * _BATCH_BYTES and len(part) > 1:
            _write_frame(file, part, pickled)
        else:
            file.write(_FRAME.pack(len(pickled)))
            file.write(pickled)


def dumps(batch: list[Record]) -> memoryview:
    """Pickle a batch the usual way, with the memo: what an object held twice in a record
    is, it stays when the batch is read back (the memo-less "fast" pickler wrote copies,
    and a load made them: a value holding one list twice came back as two lists past the
    budget, and ``[chunk] * 100`` as 100 chunks), and cycles pickle. As deep as the map
    wrote its records: the pickler's depth counts the calls under it, and a reduce spills
    from further down the stack than a map writes (a value nested short of the limit there
    failed only past the budget)."""
    try:
        return memoryview(pickle.dumps(batch, _PROTOCOL))
    except RecursionError:
        with _deeper():
            return memoryview(pickle.dumps(batch, _PROTOCOL))


@contextmanager
def _deeper() -> Iterator[None]:
    """The recursion limit raised by _SPILL_DEPTH in the block, and back after the last
    of the blocks going at once (inline runs' groupings, in threads) has ended."""
    with _DEEPER_LOCK:
        if not _DEEPER["blocks"]:
            _DEEPER["limit"] = sys.getrecursionlimit()
            sys.setrecursionlimit(_DEEPER["limit"] + _SPILL_DEPTH)
        _DEEPER["blocks"] += 1
    try:
        yield
    finally:
        with _DEEPER_LOCK:
            _DEEPER["blocks"] -= 1
            if not _DEEPER["blocks"]:
                sys.setrecursionlimit(_DEEPER["limit"])


_SPILL_DEPTH = 200  # frames a spill may be under a map's writing, at most
_DEEPER_LOCK = threading.RLock()  # reentrant: a signal handler may run a job meanwhile
_DEEPER = {"blocks": 0, "limit": 0}  # blocks going, and the limit before the first


def read_batches(path: str, scratch: Scratch, *, remove: bool = True) -> Iterator[list[Record]]:
    """The batches of a spill file, one at a time; the file is deleted once read if ``remove``."""
    try:
        with open(path, "rb") as file:
            while True:
                forks.check("read", path)  # its offset is the task's, not a forked child's
                header = file.read(_FRAME.size)
                if not header:
                    return
                (length,) = _FRAME.unpack(header)
                yield pickle.loads(file.read(length))
    finally:
        if remove:
            scratch.discard(path)
