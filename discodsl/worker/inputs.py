"""Reading a task's inputs: Disco's URL schemes, index files and replica failover.

:func:`open_url` opens one URL as a byte stream, :func:`read_index` parses a
``dir://`` index, and :func:`iter_input` yields the records of one task input
given as replica URLs (through the stage's reader, when it has one), failing
over from replica to replica. :class:`Node` holds what the master's TASK
reply says about the node running the task, and :class:`Cursor` where
reading is, for error messages about user code.

The schemes are those of Disco 0.5.4 (``disco.schemes``, ``util.urlsplit``):
``raw://``, plain paths and ``file://``, ``http(s)://``, ``disco://``,
``dir://``; ``tag://`` is resolved to its blobs before a job runs.
What this module does not do: take URLs apart (see
:mod:`discodsl.worker.urls`), decode record files (see
:mod:`discodsl.worker.records`), retry a GET that was answered or timed out
(a connection dropped before the answer is tried again, twice), or use HTTP
proxies (node-to-node GETs go direct, as Disco's own do).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import stat
import sys
import time
import zlib
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import chain, islice
from operator import itemgetter, length_hint
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Protocol, cast

if TYPE_CHECKING:
    import urllib.request

    from discodsl.worker.readers import Reader

from discodsl.worker import urls
from discodsl.worker.errors import (
    BadURL,
    DamagedInput,
    DataError,
    MalformedRecord,
    StageError,
    brief,
    defined_at,
)
from discodsl.worker.jobfile import TIMEOUT_ENV, timeout_seconds
from discodsl.worker.records import (
    VERSION_BYTE,
    damaged_header_byte,
    is_record_file_prefix,
    read_hunks,
)

# Lines of a dir:// index are about 100 bytes; a longer one is not an index.
MAX_INDEX_LINE: Final = 1 << 16
# An index read for one label is searched for its lines when it is no bigger than this
# (a map task's with 100,000 partitions is about 8 MB); a bigger one is parsed line by line.
SEARCHED_INDEX_MAX: Final = 1 << 24
# A text input line longer than this is refused rather than read into memory.
MAX_TEXT_LINE: Final = 1 << 26
_READ_BUFFER: Final = 1 << 16
_DIGITS: Final = re.compile(r"[0-9]+")
# How many first bytes of a file tell compressed data (see compression_of).
MAGIC_SIZE: Final = 10
_GZIP_MAGIC: Final = b"\x1f\x8b"
_BZIP2_MAGICS: Final = (b"1AY&SY", b"\x17rE8P\x90")  # a first block's, an empty stream's end
# Compressed data no worker reads, by its first bytes: said so, not read as text.
_UNREAD_MAGICS: Final = {b"\xfd7zXZ\x00": "xz", b"(\xb5/\xfd": "zstd"}
_COMPRESSED_SUFFIXES: Final = {".gz": "gzip", ".bz2": "bzip2"}
# A GET whose connection is dropped before the answer (a busy server, a reset) is sent again,
# after these pauses; one that is answered with an error, or times out, is not.
HTTP_PAUSES: Final = (0.1, 0.3)
# A Disco node that answers busy (503 "Maximum number of downloaders reached", or 403
# "Disco node is busy" when its file server's gate does not answer in time, as under load)
# is asked again after these pauses, as Disco's own client asks again after a 503.
BUSY_PAUSES: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
_BUSY = b"Disco node is busy"


# The HTTP modules cost a worker ~50 ms to import: loaded on the first HTTP input only.
@cache
def _opener() -> urllib.request.OpenerDirector:
    import urllib.request

    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _read_errors() -> tuple[type[BaseException], ...]:
    """What reading any source can raise: files and sockets (OSError, timeouts included),
    HTTP framing (IncompleteRead), gzip and bz2 (EOFError when cut short, zlib.error or
    OSError when corrupt)."""
    http_client = sys.modules.get("http.client")
    framing = (http_client.HTTPException,) if http_client is not None else ()
    return (OSError, EOFError, ValueError, zlib.error, *framing)


# Seconds an HTTP connect or read of an input may stall, unless TIMEOUT_ENV says otherwise.
HTTP_TIMEOUT = 60.0


def http_timeout() -> float:
    """The seconds an input's HTTP connect or read may stall: TIMEOUT_ENV's, if it is a
    number > 0 and at most HTTP_TIMEOUT_MAX (a job's env= is checked so when declared),
    else HTTP_TIMEOUT."""
    seconds = timeout_seconds(os.environ.get(TIMEOUT_ENV, ""))
    return HTTP_TIMEOUT if seconds is None else seconds


@dataclass(frozen=True)
class Node:
    """What a TASK reply says about the node running the task.

    ``host`` is the node's name in ``disco://`` URLs (an empty host matches
    none), ``disco_data`` and ``ddfs_data`` the local directories behind
    ``disco/...`` and ``ddfs/...`` paths, ``timeout`` the seconds an HTTP
    connect or read may stall. ``proxy`` is ``DISCO_PROXY``, for a client reading a
    cluster's files from outside it (:func:`~discodsl.worker.urls.proxy_url`); a
    worker on a node reads them directly.
    """

    host: str = ""
    disco_port: int = 8989
    disco_data: str = ""
    ddfs_data: str = ""
    timeout: float = field(default_factory=http_timeout)
    proxy: str = ""


class Cursor:
    """Where reading is: the URL being read and the 0-based record last yielded from it.

    The readers here keep it current, so an error in user code can say which
    input and record it was on; ``record`` is -1 before the first. Records are
    counted by a C counter the readers advance, or (for inputs read in blocks)
    told by how much of the block being read is left; either is read only when
    asked: no Python code runs per record to keep the cursor.
    """

    def __init__(self, url: str = "", record: int = -1) -> None:
        self.url = url
        self._record = record
        self._counter: itertools.count[int] | None = None
        self._block: tuple[Iterator[Any], int] | None = None  # its records, records after it
        # The lines of the file before a chunk of it read (``#range=``), counted when asked.
        self.lines_before: Callable[[], int] = _WHOLE.lines_before

    @property
    def record(self) -> int:
        """The 0-based number of the record last yielded from ``url``."""
        if self._block is not None:
            records, end = self._block
            return self.lines_before() + end - length_hint(records) - 1
        if self._counter is None:
            return self._record
        return _counted_so_far(self._counter) - 1

    @record.setter
    def record(self, value: int) -> None:
        self._record, self._counter, self._block = value, None, None

    def follow(self, url: str, counter: itertools.count[int] | None = None) -> None:
        """From now on, the record number is what ``counter`` has counted, less one (or -1
        until :meth:`follow_block`)."""
        self.url, self._record, self._counter, self._block = url, -1, counter, None
        self.lines_before = _WHOLE.lines_before

    def follow_block(self, records: Iterator[Any], end: int) -> None:
        """From now on, records of ``url`` are taken from ``records``, an iterator over a list
        (whose ``length_hint`` is what is left of it) that ends with record ``end - 1``."""
        self._block = (records, end)

    def __repr__(self) -> str:
        return f"Cursor(url={self.url!r}, record={self.record})"


class _Chunk:
    """Where one chunk of a split text file (``#range=``) starts in it: at byte ``start``,
    after :meth:`lines_before` lines, counted the first time an error asks."""

    def __init__(self, path: str, start: int) -> None:
        self.path, self.start = path, start
        self._lines: int | None = None if start else 0

    def lines_before(self) -> int:
        if self._lines is None:
            lines = 0
            with contextlib.suppress(OSError), open(self.path, "rb") as file:
                left = self.start
                while left > 0 and (block := file.read(min(left, _READ_BUFFER * 16))):
                    lines += block.count(b"\n")
                    left -= len(block)
            self._lines = lines
        return self._lines


_WHOLE = _Chunk("", 0)  # a file read whole


class _ChunkReader(io.BufferedReader):
    """The buffered stream of a chunk of a file, and where the chunk starts in it."""

    chunk: _Chunk


class _ReadInto(Protocol):
    """What every source we wrap has: files, HTTP responses, gzip and bz2 readers."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readinto(self, buffer: Any, /) -> int | None: ...

    def close(self) -> None: ...


def open_url(url: str, node: Node) -> BinaryIO:
    """Open ``url`` for reading, as a stream of its bytes.

    gzip and bzip2 data is decompressed on the fly, known by its first bytes
    (:func:`compression_of`), not by its name; HTTP bodies are streamed. Every
    failure, when opening or later when reading, is a DataError naming the URL
    and what to check.
    """
    return _open(url, node)


def read_index(url: str, node: Node, label: int | str = "all") -> list[tuple[int, str, int]]:
    """The ``(label, url, size)`` entries of the ``dir://HOST/PATH`` index at ``url``: all
    of them, or those of ``label``.

    A reduce task reads the index of every map task for its own label, and an index has
    a line per partition: parsed whole, a job's cost grew with the square of its
    partitions. So one label's lines are searched for and checked; the other lines are
    only counted (two spaces each), and an index that does not look so is parsed whole.
    """
    scheme, rest = urls.split(url)
    if scheme != "dir":
        raise DataError(f"{url} is not a dir:// index URL: pass dir://HOST/PATH", url=url)
    if label != "all":
        with _open_located(rest, url, node) as stream:
            data = stream.read(SEARCHED_INDEX_MAX + 1)
        if len(data) <= SEARCHED_INDEX_MAX:
            found = _searched_index(data, int(label))
            if found is None:
                whole = _parse_index(io.BufferedReader(io.BytesIO(data)), url)
                found = [entry for entry in whole if entry[0] == label]
            return found
    with _open_located(rest, url, node) as stream:
        entries = _parse_index(stream, url)
    return entries if label == "all" else [entry for entry in entries if entry[0] == label]


def _searched_index(data: bytes, label: int) -> list[tuple[int, str, int]] | None:
    """The entries of ``label`` in the index ``data``, its other lines not parsed; None
    when it does not look like a plain index, or a line of the label's is malformed (a
    whole parse then says where)."""
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    if not data[:1].isdigit() or data.count(b" ") != 2 * lines:
        return None
    prefix = b"%d " % label
    entries = []
    at = 0 if data.startswith(prefix) else _line_after(data, prefix, 0)
    while at >= 0:
        end = data.find(b"\n", at)
        line = data[at : len(data) if end < 0 else end]
        entry = _entry_or_none(line) if len(line) <= MAX_INDEX_LINE else None
        if entry is None:
            return None
        entries.append(entry)
        at = -1 if end < 0 else _line_after(data, prefix, end)
    return entries


def _line_after(data: bytes, prefix: bytes, start: int) -> int:
    """Where the first line after byte ``start`` that begins with ``prefix`` begins; -1
    if none does."""
    found = data.find(b"\n" + prefix, start)
    return -1 if found < 0 else found + 1


def iter_input(
    replicas: Sequence[str],
    label: int | str,
    node: Node,
    cursor: Cursor,
    reader: Reader | None = None,
) -> Iterator[Any]:
    """Yield the records of one task input, given as the URLs of its replicas.

    The first replica is read; if opening or reading it fails, the next one
    is, skipping the records already yielded. A ``dir://`` replica yields the
    records of its index entries with label ``label`` (all of them for
    ``"all"``); any other URL yields ``(key, value)`` tuples if it holds a
    record file, else its lines as ``str`` without the line end. When every
    replica fails, the DataError names each URL tried and its error (a single
    replica's own error is raised as it is). ``cursor`` follows the record last
    yielded.

    With a ``reader`` (see :mod:`discodsl.worker.readers`), each file is read
    by ``reader(stream, url)`` instead, record file or not; a ``dir://`` index
    stands for the files it lists. A :class:`MalformedRecord` it raises is
    not failed over: every replica holds the same bytes.
    """
    if not (isinstance(label, int) or label == "all"):
        raise ValueError(f"label={label!r}: pass an int label or 'all'")
    if not replicas:
        raise DataError("a task input has no replica URLs: check the job's inputs")
    if len(replicas) == 1:  # nothing to fail over to: no layer of ours per record
        return _replica_records(replicas[0], label, node, cursor, reader)
    return _failover(replicas, label, node, cursor, reader)


def _failover(
    replicas: Sequence[str],
    label: int | str,
    node: Node,
    cursor: Cursor,
    reader: Reader | None,
) -> Iterator[Any]:
    """The records of the first replica that reads to the end, skipping those yielded."""
    failures: list[tuple[str, DataError]] = []
    done = 0
    for url in replicas:
        parts = _replica_parts(url, label, node, cursor, reader)
        records = chain.from_iterable(parts)
        counter = itertools.count()
        try:
            _skip(records, done, url)
            yield from map(
                _first, zip(records, counter, strict=False)
            )  # counted in C, not per record here
            return
        except MalformedRecord:
            raise  # the other replicas hold the same bytes
        except DataError as exc:
            done += _counted_so_far(counter)
            failures.append((url, exc))
        finally:
            parts.close()
    if len(failures) == 1:
        raise failures[0][1]
    raise _all_failed(failures) from failures[-1][1]


def _counted_so_far(counter: itertools.count[int]) -> int:
    """How many items ``counter`` has counted (read without advancing it)."""
    return int(repr(counter)[len("count(") : -1])


def _skip(records: Iterator[Any], count: int, url: str) -> None:
    """Consume the ``count`` records another replica already yielded."""
    skipped = sum(1 for _ in islice(records, count))
    if skipped < count:
        raise DataError(
            f"{url} has {skipped} records, fewer than the {count} already read from another "
            "replica: the replicas differ; re-create them from one source",
            url=url,
        )


def _all_failed(failures: list[tuple[str, DataError]]) -> DataError:
    """One error naming each replica once, on a line of its own with why it failed (a
    failure's summary keeps the start of each line); a BadURL if no retry could read any."""
    tried = "".join(f"\n  {url}: {str(exc).removeprefix(f'{url}: ')}" for url, exc in failures)
    kind = DataError  # worth another try, unless no try could read any
    if all(isinstance(exc, (BadURL, DamagedInput)) for _, exc in failures):
        damaged = any(isinstance(exc, DamagedInput) for _, exc in failures)
        kind = DamagedInput if damaged else BadURL
    return kind(
        f"could not read any of the {len(failures)} replicas of a task input:{tried}\n"
        "check that the nodes holding them are up and the files exist",
        url=failures[0][0],
    )


def _replica_records(
    url: str, label: int | str, node: Node, cursor: Cursor, reader: Reader | None = None
) -> Iterator[Any]:
    """The records of one replica: index entries, what the reader reads, a record file or
    text lines. They come file by file (text a block of lines at a time) through C
    iterators: no Python frame of ours runs per record."""
    return chain.from_iterable(_replica_parts(url, label, node, cursor, reader))


def _replica_parts(
    url: str, label: int | str, node: Node, cursor: Cursor, reader: Reader | None
) -> Generator[Iterator[Any], None, None]:
    """The records of one replica as iterators (one per block of a file read in blocks,
    else per file), each file open (and ``cursor`` following it) from when its records
    are first asked for until they run out."""
    if urls.is_index(url):
        yield from _index_parts(url, label, node, cursor, reader)
        return
    with _open(url, node) as stream:
        if reader is not None:
            yield _read_by(reader, stream, url, cursor)
        elif is_record_file_prefix(stream.peek(2)[:2]):  # a damaged header is said so there
            yield from _followed(read_hunks(stream, url), url, cursor)
        else:
            _refuse_damaged_record_file(stream.peek(_READ_BUFFER), url)
            chunk = stream.chunk if isinstance(stream, _ChunkReader) else _WHOLE
            yield from _followed(_line_blocks(stream, url, chunk), url, cursor, chunk)


def _refuse_damaged_record_file(head: bytes, url: str) -> None:
    """A DamagedInput if ``head``, the first bytes of ``url``, are a record file's but for its
    version byte or compressed flag (whose first hunk is all in them): read as text, it
    would fail as bad UTF-8, with advice that does not fit."""
    damaged = damaged_header_byte(head)
    if damaged is None:
        return
    if damaged == 0:
        byte = f"first byte is damaged ({head[0]:#04x}, not {VERSION_BYTE:#04x})"
    else:
        byte = f"compressed flag, its second byte, is damaged ({head[1]:#04x}, not 0 or 1)"
    raise DamagedInput(
        f"{url}: starts as a record file whose {byte}: the file is corrupt: re-run the task "
        "that wrote it, or read another replica",
        url=url,
        span=(damaged, damaged + 1),
    )


def _index_parts(
    url: str, label: int | str, node: Node, cursor: Cursor, reader: Reader | None
) -> Iterator[Iterator[Any]]:
    """The records of each file a ``dir://`` index lists under ``label``: record files, or
    whatever ``reader`` reads. A file listed twice, or a file here whose size is not the
    index's, is a DataError: either would give other records than the task wrote."""
    listed: set[str] = set()
    for _, entry_url, size in read_index(url, node, label):
        if entry_url in listed:
            raise DataError(
                f"{url}: lists {entry_url} twice under label {label}: the index is corrupt; "
                "re-run the task that wrote it",
                url=url,
            )
        listed.add(entry_url)
        with _open(entry_url, node) as stream:
            _check_size(stream, entry_url, size, url)
            if reader is None:
                yield from _followed(read_hunks(stream, entry_url), entry_url, cursor)
            else:
                yield _read_by(reader, stream, entry_url, cursor)


def _check_size(stream: BinaryIO, url: str, size: int, index: str) -> None:
    """A DataError if ``stream`` is a file on this node whose size is not the ``size`` the
    index gives (a stream over HTTP is checked against its own Content-Length)."""
    try:
        found = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return
    if stat.S_ISREG(found.st_mode) and found.st_size != size:
        raise DataError(
            f"{url} is {found.st_size} bytes, where the index {index} says {size}: the file "
            "changed, or was cut short, since its task wrote it; re-run that task",
            url=url,
        )


def _read_by(reader: Reader, stream: BinaryIO, url: str, cursor: Cursor) -> Iterator[Any]:
    """The records ``reader`` returns (or yields) for ``url``, with ``cursor`` on ``url`` from
    the call on (an error the reader raises names the input); a StageError naming the
    reader if what it returned is no iterable (one that forgot its ``return``)."""
    counter = itertools.count()
    cursor.follow(url, counter)
    records = reader(stream, url)
    try:
        # zip takes a record first, so the counter only advances once one is taken.
        return map(_first, zip(iter(records), counter, strict=False))
    except TypeError:
        name = getattr(reader, "__qualname__", repr(reader))
        raise StageError(
            f"the reader {name!r}{defined_at(reader)} returned {brief(records, 60)} for input "
            f"{url!r}, not "
            "its records: a reader must return an iterable of them, or yield them (did "
            "it forget its `return`?)",
            url=url,
        ) from None


def _followed(
    blocks: Iterator[list[Any]], url: str, cursor: Cursor, chunk: _Chunk | None = None
) -> Iterator[Iterator[Any]]:
    """An iterator over each of ``blocks`` (lists: a record file's hunks, a text's lines a
    read at a time), with ``cursor`` on the record last taken: kept per block, not per
    record (and counted from the file's start in a ``chunk`` of one)."""
    cursor.follow(url)
    if chunk is not None:  # lines of a text file: of a chunk of it, counted from its start
        cursor.lines_before = chunk.lines_before
    end = 0  # records in the blocks so far
    for block in blocks:
        if block:
            records = iter(block)
            end += len(block)
            cursor.follow_block(records, end)
            yield records


_first = itemgetter(0)


def _line_blocks(
    stream: io.BufferedReader, url: str, chunk: _Chunk = _WHOLE
) -> Iterator[list[str]]:
    """The lines of a UTF-8 text stream without their line end (``\\n``, ``\\r\\n``), a
    list per block read.

    A block is cut after its last newline, so the bytes decoded hold whole
    lines (and whole characters: 0x0A is never inside one); decoding and
    splitting run in C, with no Python code per line. A line running past
    MAX_TEXT_LINE bytes is refused; bytes that are not UTF-8 raise a DataError
    naming the line, once the lines before it are given.
    """
    read, given = chunk.start, 0  # bytes read (from the file's start), lines given
    tail: list[bytes] = []  # a line's bytes read so far, before its newline
    # read1: one read of the source, so lines come as soon as their bytes do (HTTP streams).
    while block := stream.read1(_READ_BUFFER):
        read += len(block)
        cut = block.rfind(b"\n") + 1
        if cut:
            data = b"".join((*tail, block[:cut])) if tail else block[:cut]
            tail = [block[cut:]]
            at = read - len(block) + cut - len(data)
            for lines in _decoded(data, url, at, given, chunk):
                yield lines
                given += len(lines)
        else:
            tail.append(block)
        if sum(map(len, tail)) > MAX_TEXT_LINE:
            raise _long_line(url, read - sum(map(len, tail)), read)
    if last := b"".join(tail):  # a last line with no newline
        yield from _decoded(last, url, read - len(last), given, chunk)


def _decoded(
    data: bytes, url: str, at: int, given: int, chunk: _Chunk = _WHOLE
) -> Iterator[list[str]]:
    """The lines of ``data`` (whole lines, from byte ``at`` of ``url``, after ``given``
    lines) as one list; if a byte is not UTF-8, the lines before its line, then the
    DataError naming it."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        whole = data.rfind(b"\n", 0, exc.start) + 1
        if whole:
            yield _split(data[:whole].decode("utf-8"))
        raise _decode_error(url, exc, at, chunk.lines_before() + given) from exc
    yield _split(text)


def _split(text: str) -> list[str]:
    """The lines of ``text`` without their ``\\n`` or ``\\r\\n`` (the last one may have no
    line end: then it keeps a ``\\r`` it ends with, as a lone ``\\r`` stays in a line)."""
    lines = text.split("\n")
    last = lines.pop()  # after the last newline: "", or a last line with no line end
    if "\r" in text:
        lines = [line.removesuffix("\r") for line in lines]
    if last:
        lines.append(last)
    return lines


def _long_line(url: str, start: int, end: int) -> MalformedRecord:
    return MalformedRecord(
        f"{url}: a line (from byte {start}) is longer than {MAX_TEXT_LINE} "
        "bytes: is this a binary file? Pass a record file or text with shorter lines",
        url=url,
        span=(start, end),
    )


def _decode_error(url: str, exc: UnicodeDecodeError, at: int, given: int) -> MalformedRecord:
    """Name the line and the bytes: ``exc`` came decoding bytes from byte ``at`` of ``url``,
    which start a line after ``given`` lines. A MalformedRecord: the same bytes would fail
    again, on any replica."""
    data = exc.object if isinstance(exc.object, bytes) else b""
    number = given + 1 + data[: exc.start].count(b"\n")
    start, end = at + exc.start, at + exc.end
    return MalformedRecord(
        f"{url}: record {number - 1} (line {number}, bytes {start}-{end}) is not valid UTF-8 "
        f"({exc.reason}): pass "
        "bytes-safe input such as a record file, or fix the file's encoding "
        "(e.g. iconv -f latin1 -t utf-8)",
        url=url,
        span=(start, end),
        record=number - 1,
    )


def _parse_index(stream: io.BufferedReader, url: str) -> list[tuple[int, str, int]]:
    """Parse ``LABEL SP URL SP SIZE`` lines, refusing any malformed or overlong one."""
    entries = []
    number = 0
    while raw := stream.readline(MAX_INDEX_LINE + 1):
        number += 1
        if len(raw) > MAX_INDEX_LINE:
            raise DataError(
                f"{url}: index line {number} is longer than {MAX_INDEX_LINE} bytes: "
                "this is not a Disco index file; check the dir:// URL",
                url=url,
            )
        if raw.strip():
            entries.append(_index_entry(raw, number, url))
    return entries


def _entry_or_none(raw: bytes) -> tuple[int, str, int] | None:
    """The ``(label, url, size)`` of an index line; None if it is malformed."""
    fields = raw.split()
    if (
        len(fields) == 3
        and _DIGITS.fullmatch(fields[0].decode("latin-1"))
        and _DIGITS.fullmatch(fields[2].decode("latin-1"))
    ):
        try:
            return int(fields[0]), fields[1].decode("utf-8"), int(fields[2])
        except UnicodeDecodeError:
            return None
    return None


def _index_entry(raw: bytes, number: int, url: str) -> tuple[int, str, int]:
    entry = _entry_or_none(raw)
    if entry is not None:
        return entry
    raise DataError(
        f"{url}: index line {number} is malformed: {raw[:200]!r}; expected "
        "'LABEL URL SIZE' with an integer label and size: check the dir:// URL "
        "points at a Disco index",
        url=url,
    )


def _open(url: str, node: Node) -> io.BufferedReader:
    """Open any URL but ``dir://`` and ``tag://`` as a buffered byte stream."""
    scheme, rest = urls.split(url)
    if scheme == "raw":
        data = io.BytesIO(rest.encode("utf-8"))
        return _buffered(data, url, data)
    if scheme == "disco":
        return _open_located(rest, url, node)
    if scheme == "":
        return _open_file(rest, url)
    if scheme == "file":
        return _open_file_url(rest, url)
    if scheme in ("http", "https"):
        return _open_http(url, node)
    if scheme == "tag":
        raise BadURL(
            f"{url} is a DDFS tag, which a worker does not read: discodsl resolves tags to "
            "their blobs before a job runs, with mode='cluster', or mode='local' with a Disco "
            "master configured (DISCO_MASTER); run the job so, or pass the tag's blob URLs "
            "as its inputs",
            url=url,
        )
    if scheme == "dir":
        raise DataError(
            f"{url} is an index, not a file: read it with read_index or iter_input", url=url
        )
    raise BadURL(
        f"{url}: unsupported URL scheme {scheme!r}: use raw://, file://, http(s)://, "
        "disco://, dir:// or a plain path",
        url=url,
    )


def _open_located(rest: str, url: str, node: Node) -> io.BufferedReader:
    """Open ``HOST/PATH`` of a disco:// or dir:// URL: the local file, or an HTTP GET."""
    host, path = urls.split_host(rest)
    if not host or not path:
        raise BadURL(f"{url}: expected SCHEME://HOST/PATH; check the URL", url=url)
    if node.host and host == node.host:
        return _open_file(_local_path(path, url, node), url)
    return _open_http(urls.http_url(host, node.disco_port, path), node, url)


def _local_path(path: str, url: str, node: Node) -> str:
    """The file behind a URL path ``disco/REST`` or ``ddfs/REST`` on this node."""
    try:
        return urls.node_path(path, {"disco": node.disco_data, "ddfs": node.ddfs_data})
    except ValueError as exc:
        raise DataError(
            f"{url}: {exc}: check the URL (the node's directories come in the TASK reply)",
            url=url,
        ) from None


def _open_file(path: str, url: str) -> io.BufferedReader:
    if not path:
        raise DataError(f"{url!r} names no file: pass a path or a URL", url=url)
    try:
        raw = open(path, "rb", buffering=0)  # noqa: SIM115 - closed with the stream
    except OSError as exc:
        raise DataError(
            f"{url}: cannot open {path}: {exc.strerror or exc}; check that the file exists "
            "on this node and is readable",
            url=url,
        ) from exc
    return _decompressed(raw, path, url)


def _open_file_url(rest: str, url: str) -> io.BufferedReader:
    """``file://PATH``, percent-decoded, optionally ``#range=START-END`` (see _ranged)."""
    try:
        path, byte_range = urls.file_target(rest)
    except ValueError as exc:
        raise DataError(f"{url}: {exc}", url=url) from None
    if byte_range is None:
        return _open_file(path, url)
    return _ranged(path, *byte_range, url)


def _ranged(path: str, start: int, end: int, url: str) -> io.BufferedReader:
    """The lines of a text file that start in ``[start, end)``: one chunk of a split file.

    Chunks cut at any byte offsets cover every line exactly once: a chunk skips
    the line running into its start and finishes the line running past its end.
    """
    try:
        raw = open(path, "rb", buffering=0)  # noqa: SIM115 - closed with the stream
        first, stop = _line_start(raw, start), _line_start(raw, end)
        raw.seek(first)
    except OSError as exc:
        raise DataError(f"{url}: cannot read {path}: {exc.strerror or exc}", url=url) from exc
    limited = _Limited(raw, max(0, stop - first))
    stream = _ChunkReader(_Source(limited, url, limited), buffer_size=_READ_BUFFER)
    stream.chunk = _Chunk(path, first)
    return stream


def _line_start(raw: io.FileIO, offset: int) -> int:
    """Where the first line starting at or after ``offset`` begins (or the file's end)."""
    if offset <= 0:
        return 0
    raw.seek(offset - 1)
    position = offset - 1
    while chunk := raw.read(_READ_BUFFER):
        newline = chunk.find(b"\n")
        if newline >= 0:
            return position + newline + 1
        position += len(chunk)
    return position


class _Limited(io.RawIOBase):
    """At most ``length`` bytes of ``raw`` from where it stands."""

    def __init__(self, raw: io.FileIO, length: int) -> None:
        super().__init__()
        self._raw, self._left = raw, length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[: self._left]
        got = self._raw.readinto(view) or 0
        self._left -= got
        return got

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open_http(location: str, node: Node, url: str = "") -> io.BufferedReader:
    """GET ``location`` (``url`` names the input, when it is not the same)."""
    url = url or location
    local = urls.served_path(location, node.host, node.disco_port)
    if local is not None:
        return _open_file(_local_path(local, url, node), url)
    import urllib.parse

    response = _get(urls.proxy_url(location, node.proxy), node, url)
    path = urllib.parse.urlsplit(location).path
    return _decompressed(response, path, url)


def _get(location: str, node: Node, url: str) -> Any:
    """The answer to GET ``location``, sent again after each of HTTP_PAUSES while its
    connection is dropped before the answer, and after each of BUSY_PAUSES while the node
    answers busy; a DataError naming ``url`` if none comes."""
    import http.client

    dropped = busy = 0
    while True:
        try:
            return _opener().open(location, timeout=node.timeout)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if _busy(exc) and busy < len(BUSY_PAUSES):
                time.sleep(BUSY_PAUSES[busy])
                busy += 1
            elif _dropped(exc) and dropped < len(HTTP_PAUSES):
                time.sleep(HTTP_PAUSES[dropped])
                dropped += 1
            else:
                raise _get_failed(exc, location, node, url, dropped + busy + 1) from exc


def _busy(exc: BaseException) -> bool:
    """Whether ``exc`` is a Disco node's answer that it is busy (worth asking again)."""
    code = getattr(exc, "code", None)
    return code == 503 or (code == 403 and _answer(exc).startswith(_BUSY))


def _answer(exc: BaseException) -> bytes:
    """The start of the body of an HTTP error answer (read once, kept on ``exc``)."""
    body: bytes | None = getattr(exc, "answer_head", None)
    if body is None:
        try:
            body = exc.read(200) if hasattr(exc, "read") else b""
        except (OSError, ValueError):
            body = b""
        exc.answer_head = body  # type: ignore[attr-defined]
    return body


def _get_failed(exc: Exception, location: str, node: Node, url: str, tries: int) -> DataError:
    import http.client
    import urllib.error

    get = "GET" if location == url else f"GET {location}"
    tried = f"; tried {tries} times" if tries > 1 else ""
    if isinstance(exc, urllib.error.HTTPError):
        said = _answer(exc).decode("utf-8", "replace").strip()
        exc.close()
        return DataError(
            f"{url}: {get} answered HTTP {exc.code} {exc.reason}"
            f"{f' ({said[:120]!r})' if said else ''}{tried}; check that the file exists "
            "and the node serving it is healthy",
            url=url,
        )
    if isinstance(exc, (http.client.InvalidURL, UnicodeError)):  # never sent: no retry helps
        return BadURL(
            f"{url}: {get} cannot be sent: {_reason(exc)}; escape what a URL cannot carry as "
            "it is (a space is %20: urllib.parse.quote does it)",
            url=url,
        )
    return DataError(
        f"{url}: {get} failed: {_reason(exc)}{tried}; check that the host is up and "
        f"reachable on its port (timeout {node.timeout:g} s: {TIMEOUT_ENV} in the job's env= "
        "sets it)",
        url=url,
    )


def _dropped(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection was dropped before an answer came (worth another
    try: refused connections and timeouts are not)."""
    cause = getattr(exc, "reason", None)
    if isinstance(cause, BaseException):  # a URLError around the socket's error
        exc = cause
    return isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError))


def _reason(exc: BaseException) -> str:
    urllib_error = sys.modules.get("urllib.error")
    url_error = urllib_error.URLError if urllib_error is not None else ()
    if isinstance(exc, url_error) and not isinstance(exc.reason, str):
        return _reason(exc.reason)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def compression_of(head: bytes) -> str | None:
    """``"gzip"`` or ``"bzip2"`` if ``head``, the first MAGIC_SIZE bytes of a file (fewer
    if it is shorter), starts data compressed so, else None.

    gzip data starts 1f 8b, which no UTF-8 text does (0x8b continues a
    character) nor a record file (0x81). bzip2 starts ``BZh``, the block size
    (a digit 1-9), then the magic of its first block (31 41 59 26 53 59, that
    is ``1AY&SY``) or, in an empty stream, of its end: text would have to
    start with those ten bytes exactly to be taken for bzip2.
    """
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    level, magic = head[3:4], head[4:MAGIC_SIZE]
    if head.startswith(b"BZh") and b"1" <= level <= b"9" and magic in _BZIP2_MAGICS:
        return "bzip2"
    return None


def _decompressed(raw: _ReadInto, name: str, url: str) -> io.BufferedReader:
    """Wrap ``raw`` so that gzip and bzip2 data reads decompressed.

    The data is known by its first bytes (see :func:`compression_of`), so a
    DDFS blob (a pushed ``a.txt.gz`` is stored as ``a_txt_gz$<stamp>``) or a
    URL whose name lost its ending is decompressed too. A ``.gz`` or ``.bz2``
    name over other data is a DataError, as a wrong name is likely a wrong file.
    """
    stream = _buffered(raw, url, raw)
    try:
        head = stream.peek(MAGIC_SIZE)[:MAGIC_SIZE]  # one read of the source: _Source fills it
        found = compression_of(head)
        suffix = name[name.rfind(".") :]
        if suffix in _COMPRESSED_SUFFIXES and head and found != _COMPRESSED_SUFFIXES[suffix]:
            raise _misnamed(url, suffix, found, head)
        for magic, kind in _UNREAD_MAGICS.items():
            if head.startswith(magic):
                raise MalformedRecord(
                    f"{url}: its bytes are {kind}-compressed data, which no Disco worker "
                    "reads: decompress it, or compress it with gzip or bzip2 instead",
                    url=url,
                    span=(0, len(magic)),
                )
    except BaseException:
        stream.close()
        raise
    # Imported when first needed: every forked worker copies what its zygote imported.
    if found == "gzip":
        import gzip

        return _buffered(gzip.GzipFile(fileobj=cast(BinaryIO, stream), mode="rb"), url, stream)
    if found == "bzip2":
        import bz2

        return _buffered(bz2.BZ2File(cast(BinaryIO, stream), "rb"), url, stream)
    return stream


def _misnamed(url: str, suffix: str, found: str | None, head: bytes) -> DataError:
    named = _COMPRESSED_SUFFIXES[suffix]
    what = f"{found} data, not {named}" if found else f"not {named} data (they start {head!r})"
    return DamagedInput(
        f"{url}: its name ends in {suffix} but its bytes are {what}: check that this is the "
        f"file meant, then rename it to say what it holds, or compress it with {named}",
        url=url,
        span=(0, len(head)),
    )


def _buffered(inner: _ReadInto, url: str, origin: _ReadInto) -> io.BufferedReader:
    return io.BufferedReader(_Source(inner, url, origin), buffer_size=_READ_BUFFER)


class _Source(io.RawIOBase):
    """A raw stream over one source that fills each read and raises only DataError.

    ``inner`` is read; ``origin`` is the file or HTTP response under it (the
    same object unless decompressing), closed with it. Filling each read
    (short only at end of file) lets :func:`iter_input` sniff a file's first
    bytes with one ``peek``. An HTTP body that ends before its Content-Length
    is an error here, as ``http.client`` only reports it from ``read()``.
    """

    def __init__(self, inner: _ReadInto, url: str, origin: _ReadInto) -> None:
        super().__init__()
        self._inner = inner
        self._url = url
        self._origin = origin
        self._offset = 0

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        """The descriptor of the file or connection under the stream (its origin's)."""
        return int(self._origin.fileno())  # type: ignore[attr-defined]

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        try:
            while filled < len(view):
                got = self._inner.readinto(view[filled:])
                if not got:
                    self._check_complete()
                    break
                filled += got
        except _read_errors() as exc:
            at = self._offset + filled
            # A source's own errors come as DataErrors: this is its bytes failing to decompress.
            raise (DamagedInput if self._decompressing else DataError)(
                f"{self._url}: reading failed at {self._where(at)}: {_reason(exc)}; "
                + (
                    "the compressed data is cut short: copy the file again, whole"
                    if isinstance(exc, EOFError)
                    else "check that the file is whole and its node reachable"
                ),
                url=self._url,
                span=(at, at),
            ) from exc
        self._offset += filled
        return filled

    @property
    def _decompressing(self) -> bool:
        return self._inner is not self._origin

    def _where(self, at: int) -> str:
        """Where byte ``at`` of what is read lies, in words: a read that failed part way
        (an HTTP body that stalled, a decompressor) may have taken bytes it cannot count."""
        if self._decompressing:
            return f"or after byte {at} of its decompressed data"
        http_client = sys.modules.get("http.client")
        if http_client is not None and isinstance(self._origin, http_client.HTTPResponse):
            return f"or after byte {at}"
        return f"byte {at}"

    def _check_complete(self) -> None:
        """At end of data, refuse an HTTP body cut short of its Content-Length."""
        http_client = sys.modules.get("http.client")
        if http_client is None:
            return
        if isinstance(self._origin, http_client.HTTPResponse) and self._origin.length:
            raise http_client.IncompleteRead(b"", self._origin.length)

    def close(self) -> None:
        if not self.closed:
            for source in {id(self._inner): self._inner, id(self._origin): self._origin}.values():
                # Closing a source that already failed must not mask its error.
                with contextlib.suppress(Exception):
                    source.close()
        super().close()
