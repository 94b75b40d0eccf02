"""Disco's record file format: hunks of pickled ``(key, value)`` tuples.

This module holds the writer (:class:`RecordWriter`), the reader
(:func:`read_records`, or :func:`read_hunks` a hunk at a time) and a sniffing
test (:func:`is_record_file_prefix`) for the format of Disco 0.5.4's
``DiscoOutputStream_v1`` (``disco/fileutils.py``) and ``disco_input_stream``
(``worker/task_io.py``). A file is a sequence of hunks, each a 14-byte
little-endian header ``<BBIQ>``

    0x81 (128 + version 1), compressed flag (1 zlib, 0 raw),
    crc32 of the uncompressed hunk, byte length of the hunk as stored

followed by the hunk: concatenated, self-contained pickles of ``(key, value)``
tuples, zlib-compressed when the flag says so. A writer closes the file with
one hunk holding no records. Files written here are read by Disco's own reader
and the other way round.

What it does not do: open URLs (see :mod:`discodsl.worker.inputs`), read
Disco's legacy netstring format, or make pickles safe: unpickling runs code
named by the file, so read only files your own jobs wrote. Files are portable
only between Pythons that can unpickle each other's keys and values.
"""

from __future__ import annotations

import contextlib
import copyreg
import datetime as dt
import errno
import functools
import io
import itertools
import os
import pickle
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, BinaryIO, Final

from discodsl.worker import forks
from discodsl.worker.errors import DamagedInput, DataError, MalformedRecord, brief

HEADER: Final = struct.Struct("<BBIQ")
HEADER_SIZE: Final = HEADER.size
VERSION_BYTE: Final = 0x81
# Disco flushes a hunk once its uncompressed size passes HUNK_SIZE (1 MiB).
HUNK_SIZE: Final = 1 << 20
# Protocol 3 (Disco's own writer uses 1), not 4 or 5: their MEMOIZE opcode
# numbers memo entries implicitly, so a reader must build a fresh Unpickler per
# record, several times slower than reusing one per hunk, which protocol 3's
# explicitly numbered BINPUT allows. Protocol 3 pickles everything 4 does below
# 4 GiB, nested classes included, but a datetime's or time's fold (_FOLDS_KEPT puts
# it back); the reader takes any protocol.
PROTOCOL: Final = 3
# A hunk whose stored or uncompressed size is above this is refused: it guards
# against corrupt lengths and zlib bombs. The writer refuses a record that would
# make a bigger hunk (RecordTooBig), rather than write one no reader here takes.
MAX_HUNK_SIZE: Final = 1 << 30
# Reading a hunk starts with this many bytes and at most doubles what it holds
# per read, so a lying length never allocates much more than the file holds.
_FIRST_READ: Final = 1 << 16
# Ends the fast loader's input (see _load_shared_fast); it unpickles to None,
# which no record is.
_SENTINEL: Final = b"N."


class NotAPair(TypeError):
    """A record that is not a ``(key, value)`` pair; ``item`` is what was given instead."""

    def __init__(self, item: Any):
        super().__init__(f"{brief(item, 80)} ({type(item).__name__}) is not a (key, value) pair")
        self.item = item


def as_pair(item: Any) -> tuple[Any, Any]:
    """``item`` as a ``(key, value)`` tuple: a two-item tuple or list, nothing else.

    A string of two characters unpacks into two values too, but is not a pair:
    it raises :class:`NotAPair`, as does anything that is not a tuple or a list.
    """
    if is_pair(item):
        return (item[0], item[1])
    raise NotAPair(item)


def is_pair(item: Any) -> bool:
    """Whether ``item`` is a ``(key, value)`` pair: a two-item tuple or list."""
    return isinstance(item, (tuple, list)) and len(item) == 2


def refold(moment: dt.datetime | dt.time) -> dt.datetime | dt.time:
    """A datetime or time pickled without its ``fold``, given it back (see _FOLDS_KEPT)."""
    return moment.replace(fold=1)


def _reduce_keeping_fold(moment: dt.datetime | dt.time) -> Any:
    """How a record file pickles a datetime or time: as Python does, unless its ``fold`` is
    1, which protocol 3 leaves out (it moves an aware one to another instant): then as
    ``refold`` of it with fold 0."""
    if not moment.fold:
        return moment.__reduce_ex__(PROTOCOL)
    return refold, (moment.replace(fold=0),)


# Consulted for these exact types only: every other object pickles as it would.
_FOLDS_KEPT: Final = {dt.datetime: _reduce_keeping_fold, dt.time: _reduce_keeping_fold}


def _dispatch_table() -> dict[type, Any]:
    """A pickler's own table, which replaces copyreg's: copyreg's as it is now (re.Pattern,
    the user's registrations), and _FOLDS_KEPT."""
    return {**copyreg.dispatch_table, **_FOLDS_KEPT}


class RecordTooBig(ValueError):
    """A record whose pickle makes a hunk bigger than MAX_HUNK_SIZE, which readers refuse."""


class RecordWriter:
    """Writes ``(key, value)`` records to a record file, atomically.

    The records go to ``path + ".partial"``; a successful :meth:`close` renames
    it to ``path``, :meth:`abort` removes it, and leaving a ``with`` block by an
    exception aborts. ``compress`` zlib-compresses each hunk at ``level``; a
    hunk is flushed once its uncompressed size passes ``hunk_size`` bytes.
    ``durable`` also fsyncs before the rename, for files that must survive a
    machine crash; task outputs do without, as Disco's own do (a killed
    process still leaves either the whole file or none).

    An OSError (no space left, permissions) aborts the file and is raised as a
    DataError naming the path. A key or value that does not pickle raises the
    pickle error unchanged and leaves the writer as it was before that record;
    so does a record too big for a hunk (:class:`RecordTooBig`).
    """

    def __init__(
        self,
        path: str,
        *,
        compress: bool = False,
        level: int = 2,
        hunk_size: int = HUNK_SIZE,
        durable: bool = False,
    ) -> None:
        if not 0 <= level <= 9:
            raise ValueError(f"level={level!r}: pass a zlib level from 0 to 9")
        if hunk_size < 1:
            raise ValueError(f"hunk_size={hunk_size!r}: pass a positive number of bytes")
        self.path = path
        self.partial = path + ".partial"
        self.durable = durable
        self.compress = compress
        self.level = level
        self.hunk_size = hunk_size
        self._buffer = io.BytesIO()
        self._pickler = pickle.Pickler(self._buffer, protocol=PROTOCOL)
        self._pickler.dispatch_table = _dispatch_table()
        self._mark = 0  # where the buffer's last whole record ends
        self._size = 0
        self._state = "open"
        self._file = self._open()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, key: Any, value: Any) -> None:
        """Append one record."""
        if self._state != "open":
            self._check_open()
        try:
            self._pickler.dump((key, value))
        except BaseException:
            self._rollback(self._mark)
            raise
        self._pickler.clear_memo()
        end = self._buffer.tell()
        if end > self.hunk_size:
            self._flush_full(self._mark, end)
        else:
            self._mark = end

    def write_many(self, records: Iterable[tuple[Any, Any]]) -> None:
        """Append every ``(key, value)`` pair of ``records``, in order."""
        self._check_open()
        buffer, limit = self._buffer, self.hunk_size
        # Bound methods in locals: this loop is the writer's hot path.
        dump, clear_memo, tell = self._pickler.dump, self._pickler.clear_memo, buffer.tell
        mark = self._mark
        try:
            for pair in records:
                if pair.__class__ is not tuple or len(pair) != 2:
                    pair = as_pair(pair)
                try:
                    dump(pair)
                except BaseException:
                    self._rollback(mark)
                    raise
                # Forget the objects seen so far so the next pickle stands alone.
                clear_memo()
                end = tell()
                if end > limit:
                    self._flush_full(mark, end)
                    end = 0
                mark = end
        finally:  # also when an item is no pair: what was taken before it stays
            self._mark = mark

    def close(self) -> int:
        """Flush, add the closing empty hunk, rename into place; return the file's size."""
        if self._state == "closed":
            return self._size
        self._check_open()
        with self._guard("finish"):
            if self._buffer.tell():
                self._flush()
            self._write_hunk(b"")
            self._file.flush()
            if self.durable:
                os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.partial, self.path)
        self._state = "closed"
        return self._size

    def abort(self) -> None:
        """Drop the partial file; a writer already closed keeps its file."""
        if self._state not in ("open", "lost"):
            return
        forks.check("write", self.partial)
        self._state = "aborted"
        # The file goes away, so its unflushed bytes do not matter; if removing
        # fails it was already gone.
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            os.remove(self.partial)

    def _open(self) -> BinaryIO:
        """Create the partial file, and its parent directory if it is not there."""
        forks.check("write", self.partial)  # which would empty the task's own
        try:
            try:
                return open(self.partial, "wb")
            except FileNotFoundError:  # a task's first output: no mkdir per file
                os.makedirs(os.path.dirname(self.partial) or ".", exist_ok=True)
            return open(self.partial, "wb")
        except OSError as exc:
            self._state = "aborted"
            raise _write_error("create", self.partial, exc) from exc

    def _check_open(self) -> None:
        if self._state == "lost":
            raise ValueError(
                f"the RecordWriter for {self.path} lost the records it held when memory ran "
                "out: abort it and open a new one"
            )
        if self._state != "open":
            raise ValueError(f"the RecordWriter for {self.path} is {self._state}: open a new one")

    def _flush_full(self, mark: int, end: int) -> None:
        """Write the buffer, past ``hunk_size``, as a hunk; as two (the records before its
        last, from ``mark``, then that one) if one would be bigger than a reader takes; and
        refuse that last record, dropping it, if it alone is."""
        if end <= MAX_HUNK_SIZE:
            self._flush()
            return
        if end - mark > MAX_HUNK_SIZE:
            self._rollback(mark)
            raise RecordTooBig(
                f"a record of {end - mark} bytes (pickled) for {self.path}: a hunk of a record "
                f"file holds at most {MAX_HUNK_SIZE} bytes, and a reader refuses more as "
                "damage: yield smaller values (split this one into several records)"
            )
        payload = memoryview(self._buffer.getvalue())
        self._buffer.seek(0)
        self._buffer.truncate()
        self._mark = 0
        with self._guard("write"):
            if mark:
                self._write_hunk(payload[:mark])
            self._write_hunk(payload[mark:])

    def _rollback(self, mark: int) -> None:
        """Drop a record that failed to pickle, so the hunk stays whole. A buffer that could
        not grow is lost (CPython's BytesIO then reads as closed), and the records it held
        with it: the writer is done, and the failure stays the one that lost it."""
        try:
            self._buffer.seek(mark)
            self._buffer.truncate()
        except ValueError:
            self._state = "lost"
            return
        self._pickler.clear_memo()
        self._mark = mark

    def _flush(self) -> None:
        """Write the buffered records as one hunk and empty the buffer."""
        payload = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        self._mark = 0
        with self._guard("write"):
            self._write_hunk(payload)

    def _write_hunk(self, payload: bytes | memoryview) -> None:
        forks.check("write", self.partial)
        stored = zlib.compress(payload, self.level) if self.compress else payload
        header = HEADER.pack(VERSION_BYTE, int(self.compress), zlib.crc32(payload), len(stored))
        self._file.write(header)
        self._file.write(stored)
        self._size += HEADER_SIZE + len(stored)

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn an OSError while writing into an aborted file and a DataError."""
        try:
            yield
        except OSError as exc:
            self.abort()
            raise _write_error(action, self.partial, exc) from exc


def _write_error(action: str, path: str, exc: OSError) -> DataError:
    reason = exc.strerror or str(exc)
    fix = _WRITE_FIXES.get(exc.errno or 0, "check free space and permissions on the node")
    return DataError(
        f"could not {action} the record file {path}: {reason}; {fix} (no partial file is "
        "left behind)",
        url=path,
    )


# What to do about an OSError writing a record file, by errno (else: space, permissions).
_WRITE_FIXES = {
    errno.EMFILE: "a task keeps a file open for each partition it writes to: raise the limit "
    "on open files (`ulimit -n`), or use fewer partitions",
    errno.ENFILE: "the system ran out of open files: use fewer partitions, or run fewer tasks "
    "at once (max_cores=)",
    errno.EFBIG: "the file reached the size limit on files (`ulimit -f`): raise it, or split "
    "the input into more tasks",
    errno.ENAMETOOLONG: "the node's data directory (DISCO_DATA, or TMPDIR here) is too deep: "
    "use a shorter path",
}


def read_records(
    stream: BinaryIO, url: str, *, max_hunk_size: int = MAX_HUNK_SIZE
) -> Iterator[tuple[Any, Any]]:
    """Yield the records of the record file ``stream`` holds; ``url`` names it in errors.

    Reading stops at end of file before a header or at a hunk of length 0. A
    short header, a truncated hunk, a crc mismatch, bad zlib data or a hunk
    that does not unpickle raise a DataError naming ``url`` and the hunk's byte
    range ``[start, end)``. Records are yielded as unpickled: ``(key, value)``
    tuples for files written by Disco or :class:`RecordWriter`. Each hunk is
    read, checked and unpickled whole before its first record is yielded.
    """
    # A chain over per-hunk lists hands out records without a Python frame per
    # record, which a generator would add.
    return itertools.chain.from_iterable(read_hunks(stream, url, max_hunk_size=max_hunk_size))


def read_hunks(
    stream: BinaryIO, url: str, *, max_hunk_size: int = MAX_HUNK_SIZE
) -> Iterator[list[tuple[Any, Any]]]:
    """The records of the record file ``stream`` holds, a list per hunk, read and checked as
    :func:`read_records` reads them (which chains these lists)."""
    return _loaded(_iter_hunks(stream, url, max_hunk_size), url)


def _loaded(hunks: Iterator[tuple[int, int, bytes]], url: str) -> Iterator[list[Any]]:
    """The records of each hunk; neither its bytes nor its records are held here while the
    next hunk is read (a hunk of one 50 MB record would be held twice more)."""
    for start, end, payload in hunks:
        records = _load_hunk(payload, url, start, end)
        del payload
        yield records
        del records


def check_hunks(stream: BinaryIO, url: str, *, max_hunk_size: int = MAX_HUNK_SIZE) -> None:
    """Read every hunk of the record file ``stream`` holds and check its CRC (and that it
    inflates), unpickling nothing; a DataError as :func:`read_records` raises it."""
    for _ in _iter_hunks(stream, url, max_hunk_size):
        pass


def damaged_header_byte(data: bytes) -> int | None:
    """Which of its first two bytes (0: the version byte, 1: the compressed flag) is
    damaged in ``data``, the start of a file that is a record file's but for that byte:
    with it put back, its first hunk is all there and reads checked, CRC and all (so it
    cannot be text that happens to look so); None if it is no such file."""
    if len(data) < HEADER_SIZE:
        return None
    if data[0] != VERSION_BYTE and data[1] in (0, 1):
        mended, damaged = [bytes([VERSION_BYTE]) + data[1:]], 0
    elif data[0] == VERSION_BYTE and data[1] not in (0, 1):  # text never starts with 0x81
        mended, damaged = [data[:1] + bytes([flag]) + data[2:] for flag in (0, 1)], 1
    else:
        return None  # most text stops here: its second byte is no compressed flag
    for candidate in mended:
        try:  # its first hunk of records; or, an empty file's, its closing hunk and its end
            next(_iter_hunks(io.BytesIO(candidate), "", MAX_HUNK_SIZE), None)
        except DataError:  # a header or a hunk that does not check, or a hunk not all here
            continue
        return damaged
    return None


def is_record_file_prefix(head: bytes) -> bool:
    """Whether ``head``, the first bytes of a file, can start a record file.

    Checks the version byte, the compressed flag and, when all 14 header bytes
    are there, that an empty first hunk has the crc32 of no bytes. Text in
    UTF-8 never passes: 0x81 cannot start a UTF-8 character.
    """
    if not head or head[0] != VERSION_BYTE:
        return False
    if len(head) >= 2 and head[1] not in (0, 1):
        return False
    if len(head) >= HEADER_SIZE:
        _, _, crc, length = HEADER.unpack_from(head)
        return bool(length != 0 or crc == 0)
    return True


def _iter_hunks(stream: BinaryIO, url: str, max_hunk_size: int) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(start, end, uncompressed hunk)`` for each hunk with a checked crc32, up to the
    closing hunk, the one of no records that every writer (Disco's, ours) ends a file with.

    Its CRCs check each hunk, not the file: a file that ends without a closing hunk was
    cut at a hunk's end, and this raises where Disco's reader takes it silently short.
    Files joined byte for byte (Disco's map_shuffle joins a node's map outputs so) are
    read part after part, each to its closing hunk; Disco's reader stops at the first
    closing hunk of length 0 (an uncompressed file's), dropping the parts after it.
    Bytes after a closing hunk that start no record file raise. A file of no bytes at
    all has no records (no writer makes one).
    """
    start, pending = 0, b""  # pending: a part's first byte, read to see that one follows
    while True:
        header = pending + _read_upto(stream, HEADER_SIZE - len(pending), url, start)
        if not header:
            if start:
                raise _hunk_error(url, start, start, "the file ends with no closing hunk", _CUT)
            return
        flag, crc, length = _parse_header(header, url, start)
        if length == 0 and crc != 0:
            raise _hunk_error(
                url,
                start,
                start + HEADER_SIZE,
                f"a hunk of length 0 whose crc32 is {crc:#010x}, not that of no bytes (a "
                "closing hunk's): its length is damaged",
                _CORRUPT,
            )
        end = start + HEADER_SIZE + length
        payload = (
            _read_payload(stream, url, (start, end), flag, crc, max_hunk_size) if length else b""
        )
        if payload:
            yield start, end, payload
            payload = b""  # not held while the next hunk is read
            pending = b""
        else:  # the closing hunk (compressed, the 8 bytes of zlib's b""): of the file, or a part
            pending = _next_part(stream, url, end)
            if not pending:
                return
        start = end


def _next_part(stream: BinaryIO, url: str, end: int) -> bytes:
    """After a closing hunk ending at byte ``end``: the first byte of the record file joined
    after it, or b"" at the end of the file; raise if what follows starts no record file."""
    after = _read_upto(stream, 1, url, end)
    if after and after[0] != VERSION_BYTE:
        raise _hunk_error(
            url,
            end,
            end + 1,
            "bytes follow the closing hunk that start no record file (data appended to one)",
            "read each record file on its own; the file is otherwise corrupt: re-run the "
            "task that wrote it",
        )
    return after


def _read_payload(
    stream: BinaryIO, url: str, span: tuple[int, int], flag: int, crc: int, max_size: int
) -> bytes:
    """Read the hunk at ``span`` after its header; return it uncompressed and checked."""
    start, end = span
    length = end - start - HEADER_SIZE
    if length > max_size:
        raise _hunk_error(
            url,
            start,
            end,
            f"the header claims {length} bytes, more than the limit of {max_size}",
            f"{_CORRUPT}; a real one would hold a record too big for a task to read: write "
            "such data in smaller records",
        )
    stored = _read_upto(stream, length, url, start)
    if len(stored) < length:
        raise _hunk_error(
            url,
            start,
            end,
            f"the file ends {len(stored)} bytes into a hunk of {length}",
            _TRUNCATED,
        )
    payload = _inflate(stored, url, start, end, max_size) if flag else stored
    actual = zlib.crc32(payload)
    if actual != crc:
        raise _hunk_error(
            url, start, end, f"crc32 mismatch (header {crc:#010x}, hunk {actual:#010x})", _CORRUPT
        )
    return payload


def _parse_header(header: bytes, url: str, start: int) -> tuple[int, int, int]:
    """Check a hunk header; return its compressed flag, crc32 and stored length."""
    end = start + len(header)
    if start == 0 and header[0] < 0x80:
        raise _not_records(header, url, end)
    if len(header) < HEADER_SIZE:
        raise _hunk_error(
            url,
            start,
            end,
            f"the file ends {len(header)} bytes into a {HEADER_SIZE}-byte hunk header",
            _TRUNCATED,
        )
    version, flag, crc, length = HEADER.unpack(header)
    if version != VERSION_BYTE or flag not in (0, 1):
        raise _hunk_error(
            url,
            start,
            end,
            f"bad hunk header (version byte {version:#04x}, compressed "
            f"flag {flag}; expected {VERSION_BYTE:#04x} and 0 or 1)",
            _CORRUPT,
        )
    return flag, crc, length


def _read_upto(stream: BinaryIO, size: int, url: str, start: int) -> bytes:
    """Read ``size`` bytes, fewer only at end of file, allocating only as data arrives."""
    chunks: list[bytes] = []
    got = 0
    step = _FIRST_READ
    try:
        while got < size:
            chunk = stream.read(min(size - got, step))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
            step = max(step, got)
    except OSError as exc:
        raise DataError(
            f"{url}: reading the hunk at byte {start} failed: {exc}; check that the file "
            "is readable and its node reachable",
            url=url,
            span=(start, start + got),
        ) from exc
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _inflate(stored: bytes, url: str, start: int, end: int, max_size: int) -> bytes:
    """Decompress one hunk, refusing bad data and output above ``max_size``."""
    inflater = zlib.decompressobj()
    try:
        payload = inflater.decompress(stored, max_size + 1)
    except zlib.error as exc:
        raise _hunk_error(url, start, end, f"bad zlib data ({exc})", _CORRUPT) from exc
    except MemoryError:  # not the stage's: nothing of it ran on this hunk
        raise MalformedRecord(
            f"{url}: the hunk at bytes [{start}, {end}) ({end - start} bytes compressed) "
            "inflates to more memory than this process has: a hunk so compressible is likely "
            "crafted or damaged; a real one holds a record too big for a task: write such "
            "data in smaller records, or give the task more memory",
            url=url,
            span=(start, end),
        ) from None
    if len(payload) > max_size:
        raise _hunk_error(
            url,
            start,
            end,
            f"the hunk decompresses to more than {max_size} bytes",
            f"{_CORRUPT}; a real one would hold a record too big for a task to read: write "
            "such data in smaller records",
        )
    if not inflater.eof or inflater.unused_data:
        raise _hunk_error(
            url, start, end, "the zlib stream is incomplete or followed by stray bytes", _CORRUPT
        )
    return payload


def _load_hunk(payload: bytes, url: str, start: int, end: int) -> list[Any]:
    """Unpickle every record of one hunk, or raise a DataError for the hunk."""
    try:
        records = _load(payload)
    except (ImportError, AttributeError) as exc:  # its checksum held: a class is missing here
        raise _class_missing(exc, url, start, end) from exc
    except TypeError as exc:  # its checksum held: a class builds its instances otherwise here
        if "()" not in str(exc):  # no class's call failed: bytes no pickler wrote
            raise _unloadable(exc, url, start, end) from exc
        raise _class_changed(exc, url, start, end) from exc
    except UnicodeDecodeError as exc:  # its checksum held: 8-bit strings of Python 2
        raise _hunk_error(
            url,
            start,
            end,
            f"its pickles hold 8-bit strings ({exc.reason} at byte {exc.start} of one), as a "
            "Python 2 Disco worker writes a str",
            "Python 3 reads them only as bytes: rewrite the file under Python 2 with unicode "
            "strings, or read it with a reader of your own (pickle.loads(..., "
            "encoding='bytes'))",
        ) from exc
    except Exception as exc:  # its checksum held: the bytes are as written
        raise _unloadable(exc, url, start, end) from exc
    return records


def _unloadable(exc: Exception, url: str, start: int, end: int) -> MalformedRecord:
    """The error for a hunk whose bytes are as written (its checksum holds) and do not
    unpickle, for no class missing or changed here."""
    return MalformedRecord(
        f"{url}: the records of the hunk at bytes [{start}, {end}) do not unpickle, "
        f"though its checksum holds ({type(exc).__name__}: {exc}): a value of theirs "
        "pickles but never unpickles (an Enum member whose value is NaN: check "
        "pickle.loads(pickle.dumps(value))), so yield plain data; or their writer wrote "
        "other bytes than pickles, or pickles of a Python this node lacks: run the task "
        "that wrote them again, with this Python",
        url=url,
        span=(start, end),
    )


def _class_missing(exc: Exception, url: str, start: int, end: int) -> MalformedRecord:
    """The error for a hunk whose records need a class or module this process lacks: a
    MalformedRecord, neither retried nor read from another replica, since every attempt and
    every copy needs the same class (a task retried for it ran 100 times on a master)."""
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    where = (
        f" (run from the directory of {missing.replace('.', '/')}.py, or put that "
        "directory on PYTHONPATH)"
        if missing
        else ""
    )
    said = str(exc).split(" from '", 1)[0]  # not the module's file: "on <module 'x' from ...>"
    error = MalformedRecord(
        f"{url}: the records of the hunk at bytes [{start}, {end}) need a class or module "
        f"this process cannot import ({type(exc).__name__}: {said}): pass the run's results "
        "(not their record_urls()) to the job reading them, which then carries your "
        "script's classes, or name the class in its stages or params, or define it at the "
        f"top level of a module that both import{where}",
        url=url,
        span=(start, end),
    )
    error.needed = f"{type(exc).__name__}: {said}"
    return error


def _class_changed(exc: TypeError, url: str, start: int, end: int) -> MalformedRecord:
    """The error for a hunk whose records a class of theirs cannot build here (a field
    more): a MalformedRecord, as every attempt and every copy would fail alike."""
    return MalformedRecord(
        f"{url}: the records of the hunk at bytes [{start}, {end}) do not load with the "
        f"classes they name as they are defined here (TypeError: {exc}): a class was "
        "defined otherwise where they were written (defined again since, as a notebook cell "
        "run again, or another version of its module): run the job that wrote them again, "
        "or define the class as it was; or its instances pickle but never unpickle (an "
        "exception whose __init__ takes other arguments than it passes to Exception's: "
        "pickle.loads(pickle.dumps(value)) fails): yield plain data, or give the class a "
        "__reduce__",
        url=url,
        span=(start, end),
    )


_CORRUPT: Final = "the file is corrupt: re-run the task that wrote it, or read another replica"
_TRUNCATED: Final = "the file is truncated: re-run the task that wrote it, or read another replica"
_CUT: Final = (
    "the file was cut short at the end of a hunk (a file a writer closed ends with one of no "
    "records): re-run the task that wrote it, or read another replica"
)


def _not_records(header: bytes, url: str, end: int) -> MalformedRecord:
    """The error for a file whose first byte starts no hunk (a hunk starts with byte
    VERSION_BYTE): Disco's legacy netstring format if it is a decimal length, else bytes a
    server sent in the file's place (an HTML page: a login, an error, a proxy's answer)."""
    said = f"{url}: bytes [0, {end}) start with {header[:8]!r}"
    if header[:1].isdigit():
        return MalformedRecord(
            f"{said}, Disco's legacy netstring record format, which is not supported: "
            "rewrite the file with Disco 0.5's DiscoOutputStream or discodsl's RecordWriter, "
            "or read it as text",
            url=url,
            span=(0, end),
        )
    said += f": not a record file (one starts with byte {VERSION_BYTE:#04x})"
    if url.startswith(("file://", "/")) or "://" not in url:
        return MalformedRecord(
            f"{said}: read it as text, or give the record files a job wrote", url=url, span=(0, end)
        )
    sent = "an HTML page" if header.lstrip()[:1] == b"<" else "something else"
    return MalformedRecord(
        f"{said}: the server sent {sent} in the file's place (a login or error page, a "
        "proxy's answer); look at what the URL serves, and read the file from its node, or "
        "through a proxy that passes it on",
        url=url,
        span=(0, end),
    )


def _hunk_error(url: str, start: int, end: int, what: str, todo: str) -> DataError:
    """A DamagedInput for the hunk at bytes ``[start, end)`` of ``url``: its bytes would fail
    the same way again (another replica may be whole)."""
    return DamagedInput(
        f"{url}: bad hunk at bytes [{start}, {end}): {what}; {todo}", url=url, span=(start, end)
    )


class _HunkSource:
    """The file object :func:`_load_shared_fast` gives its Unpickler."""

    def __init__(self, payload: bytes, consumed: list[int]) -> None:
        chunks = itertools.chain((payload, _SENTINEL), itertools.repeat(b""))
        self.peek = functools.partial(next, chunks)
        self.read = consumed.append
        self.readline = bytes


def _load_each(payload: bytes) -> list[Any]:
    """Unpickle the concatenated pickles of ``payload``, each with a fresh Unpickler.

    This is what Disco's reader does, and what pickles of protocol 4 and up
    need: their MEMOIZE opcode numbers memo entries implicitly, counting from
    0 in each pickle, so an Unpickler reused for the next pickle would file its
    objects under the wrong numbers. It is several times slower than sharing.
    """
    buffer = io.BytesIO(payload)
    tell, size = buffer.tell, len(payload)
    records: list[Any] = []
    while tell() < size:
        records.append(pickle.load(buffer))
    return records


def _load_shared_fast(payload: bytes) -> list[Any]:
    """Unpickle the concatenated pickles (protocol 3 or lower) of ``payload`` from memory.

    CPython's C Unpickler, given a file with ``peek()``, parses from what
    ``peek`` returned and at the end of each ``load()`` calls ``read(n)`` to
    skip the ``n`` bytes it used. Here ``peek`` hands over the whole hunk and
    then the sentinel pickle, and ``read`` only notes ``n``: ``load()`` runs
    from memory, with no stream call per record, and the notes tell where each
    record ended. One Unpickler serves every record: pickles of protocol 3 and
    lower name their memo entries, so each overwrites what it uses.
    """
    if not payload:
        return []  # peek() must never hand over an empty chunk: it means end of file
    consumed: list[int] = []
    load = pickle.Unpickler(_HunkSource(payload, consumed)).load  # type: ignore[arg-type]
    # iter() calls load() from C until it returns the sentinel's None.
    records: list[Any] = list(iter(load, None))
    # One note per load, the sentinel's last, all of the hunk used: else a load
    # ran past the end of the hunk (its last pickle is cut short), or a record was a
    # pickled None (Disco's format holds any object): read again, a pickle at a time.
    if (
        len(consumed) != len(records) + 1
        or consumed[-1] != len(_SENTINEL)
        or sum(consumed) != len(payload) + len(_SENTINEL)
    ):
        return _load_shared_portable(payload)
    return records


def _load_shared_portable(payload: bytes) -> list[Any]:
    """Unpickle the concatenated pickles (protocol 3 or lower) of ``payload`` via a BytesIO."""
    buffer = io.BytesIO(payload)
    load, tell, size = pickle.Unpickler(buffer).load, buffer.tell, len(payload)
    records: list[Any] = []
    while tell() < size:
        records.append(load())
    return records


def _fast_loader_works() -> bool:
    """Whether this Python's Unpickler behaves as :func:`_load_shared_fast` expects."""
    shared: list[Any] = [2.5, None]
    records = [("k", 1), (b"v", [shared, shared])]
    payload = b"".join(
        pickle.dumps(record, protocol) for record, protocol in zip(records, (1, 3), strict=True)
    )
    try:
        return _load_shared_fast(payload) == records and _fails(_load_shared_fast, payload[:-1])
    except Exception:
        return False


def _fails(load: Callable[[bytes], object], payload: bytes) -> bool:
    try:
        load(payload)
    except Exception:
        return True
    return False


_load_shared = _load_shared_fast if _fast_loader_works() else _load_shared_portable


def _load(payload: bytes) -> list[Any]:
    """Unpickle a hunk with one Unpickler, unless its pickles need one each.

    A writer uses one protocol for a whole file, so the first pickle's PROTO
    opcode (absent before protocol 2) tells which way the hunk must be read. A
    hunk whose pickles mix protocols 3 and 4 (no writer known does so) would
    need each record's start looked at: a scan of every hunk that cost reading
    12 to 25% more.
    """
    if payload[:1] == b"\x80" and payload[1:2] >= b"\x04":
        return _load_each(payload)
    return _load_shared(payload)
