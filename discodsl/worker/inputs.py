"""Reading a task's inputs: records and lines from replica URLs, and index files.

:func:`iter_input` yields the records of one task input given as replica
URLs (through the stage's reader, when it has one), failing over from
replica to replica; :func:`read_index` parses a ``dir://`` index; and
:class:`Cursor` says where reading is, for error messages about user code.

Not here: opening a URL (:mod:`.opening`, whose :class:`Node` and
:func:`open_url` are named here too), taking URLs apart (:mod:`.urls`), or
decoding record files (:mod:`.records`).
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from itertools import chain, islice
from operator import itemgetter, length_hint
from typing import TYPE_CHECKING, Any, BinaryIO, Final

if TYPE_CHECKING:
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
    named,
)
from discodsl.worker.opening import (
    WHOLE,
    Chunk,
    ChunkReader,
    Node,
    open_located,
    open_stream,
    opened_size,
)
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

# Files of earlier jobs' results a job reads (by the URL its tasks get), each with the size
# that the index listing it gave, and what gave it ("the index dir://...").
Listed = Mapping[str, tuple[int, str]]
NONE_LISTED: Final[Listed] = {}
_DIGITS: Final = re.compile(r"[0-9]+")


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
        self.lines_before: Callable[[], int] = WHOLE.lines_before

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
        self.lines_before = WHOLE.lines_before

    def follow_block(self, records: Iterator[Any], end: int) -> None:
        """From now on, records of ``url`` are taken from ``records``, an iterator over a list
        (whose ``length_hint`` is what is left of it) that ends with record ``end - 1``."""
        self._block = (records, end)

    def __repr__(self) -> str:
        return f"Cursor(url={self.url!r}, record={self.record})"


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
        with open_located(rest, url, node) as stream:
            data = stream.read(SEARCHED_INDEX_MAX + 1)
        if len(data) <= SEARCHED_INDEX_MAX:
            found = _searched_index(data, int(label))
            if found is None:
                whole = _parse_index(io.BufferedReader(io.BytesIO(data)), url)
                found = [entry for entry in whole if entry[0] == label]
            return found
    with open_located(rest, url, node) as stream:
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
    listed: Listed = NONE_LISTED,
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
    not failed over: every replica holds the same bytes. A replica in ``listed`` (an
    earlier job's result file, given by the index that listed it) of another size than the
    index's is a DataError, as its entry read through the index is.
    """
    if not (isinstance(label, int) or label == "all"):
        raise ValueError(f"label={label!r}: pass an int label or 'all'")
    if not replicas:
        raise DataError("a task input has no replica URLs: check the job's inputs")
    if len(replicas) == 1:  # nothing to fail over to: no layer of ours per record
        return _replica_records(replicas[0], label, node, cursor, reader, listed)
    return _failover(replicas, label, node, cursor, reader, listed)


def _failover(
    replicas: Sequence[str],
    label: int | str,
    node: Node,
    cursor: Cursor,
    reader: Reader | None,
    listed: Listed,
) -> Iterator[Any]:
    """The records of the first replica that reads to the end, skipping those yielded."""
    failures: list[tuple[str, DataError]] = []
    done = 0
    for url in replicas:
        parts = _replica_parts(url, label, node, cursor, reader, listed)
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
    url: str,
    label: int | str,
    node: Node,
    cursor: Cursor,
    reader: Reader | None = None,
    listed: Listed = NONE_LISTED,
) -> Iterator[Any]:
    """The records of one replica: index entries, what the reader reads, a record file or
    text lines. They come file by file (text a block of lines at a time) through C
    iterators: no Python frame of ours runs per record."""
    return chain.from_iterable(_replica_parts(url, label, node, cursor, reader, listed))


def _replica_parts(
    url: str,
    label: int | str,
    node: Node,
    cursor: Cursor,
    reader: Reader | None,
    listed: Listed = NONE_LISTED,
) -> Generator[Iterator[Any], None, None]:
    """The records of one replica as iterators (one per block of a file read in blocks,
    else per file), each file open (and ``cursor`` following it) from when its records
    are first asked for until they run out."""
    if urls.is_index(url):
        yield from _index_parts(url, label, node, cursor, reader)
        return
    with open_stream(url, node) as stream:
        if url in listed:
            _check_size(stream, url, *listed[url])
        if reader is not None:
            yield _read_by(reader, stream, url, cursor)
        elif is_record_file_prefix(stream.peek(2)[:2]):  # a damaged header is said so there
            yield from _followed(read_hunks(stream, url), url, cursor)
        else:
            _refuse_damaged_record_file(stream.peek(_READ_BUFFER), url)
            chunk = stream.chunk if isinstance(stream, ChunkReader) else WHOLE
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
            raise listed_twice(url, entry_url, label)
        listed.add(entry_url)
        with open_stream(entry_url, node) as stream:
            _check_size(stream, entry_url, size, f"the index {url}")
            if reader is None:
                yield from _followed(read_hunks(stream, entry_url), entry_url, cursor)
            else:
                yield _read_by(reader, stream, entry_url, cursor)


def listed_twice(index: str, entry: str, label: int | str) -> DataError:
    """The error of the ``dir://`` index ``index`` listing ``entry`` twice (under ``label``):
    read twice, its records would be counted twice."""
    return DataError(
        f"{index}: lists {entry} twice under label {label}: the index is corrupt; re-run the "
        "task that wrote it",
        url=index,
    )


def _check_size(stream: BinaryIO, url: str, size: int, said_by: str) -> None:
    """A DamagedInput if ``stream`` (a file on this node, or an HTTP body of a known length)
    is not of the ``size`` that ``said_by`` (an index, a run) gives: another replica may be
    whole, a retry reads the same."""
    found = opened_size(stream)
    if found is not None and found != size:
        raise DamagedInput(
            f"{url} is {found} bytes, where {said_by} says {size}: the file "
            "changed, or was cut short, since its task wrote it: run the job that wrote it "
            "again",
            url=url,
        )


def _read_by(reader: Reader, stream: BinaryIO, url: str, cursor: Cursor) -> Iterator[Any]:
    """The records ``reader`` returns (or yields) for ``url``, with ``cursor`` on ``url`` from
    the call on (an error the reader raises names the input); a StageError naming the
    reader if what it returned is no iterable (one that forgot its ``return``)."""
    counter = itertools.count()
    cursor.follow(url, counter)
    records = reader(stream, url)
    if isinstance(records, (str, bytes, bytearray, memoryview)):  # each item would be one
        raise StageError(
            f"the reader {named(reader)!r}{defined_at(reader)} returned a "
            f"{type(records).__name__} for input {url!r} ({brief(records, 40)}), whose every "
            "character or byte would be a record: return a list of its records ([text], "
            "text.splitlines()), or yield them",
            url=url,
        )
    try:
        # zip takes a record first, so the counter only advances once one is taken.
        return map(_first, zip(iter(records), counter, strict=False))
    except TypeError:
        raise StageError(
            f"the reader {named(reader)!r}{defined_at(reader)} returned {brief(records, 60)} for "
            f"input {url!r}, not "
            "its records: a reader must return an iterable of them, or yield them (did "
            "it forget its `return`?)",
            url=url,
        ) from None


def _followed(
    blocks: Iterator[list[Any]], url: str, cursor: Cursor, chunk: Chunk | None = None
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


def _line_blocks(stream: io.BufferedReader, url: str, chunk: Chunk = WHOLE) -> Iterator[list[str]]:
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
            if len(data) > MAX_TEXT_LINE:  # only its first line, begun before, may be as long
                _check_length(data, data.find(b"\n"), url, at)
            for lines in _decoded(data, url, at, given, chunk):
                yield lines
                given += len(lines)
        else:
            tail.append(block)
        if sum(map(len, tail)) > MAX_TEXT_LINE:
            raise _long_line(url, read - sum(map(len, tail)), read)
    if last := b"".join(tail):  # a last line with no newline
        _check_length(last, len(last), url, read - len(last))
        yield from _decoded(last, url, read - len(last), given, chunk)


def _check_length(data: bytes, end: int, url: str, at: int) -> None:
    """Refuse the line that ``data`` (from byte ``at``) starts with, ending at ``end`` (its
    newline, or the data's end), if it is longer than MAX_TEXT_LINE without its line end."""
    length = end - 1 if end and data[end - 1 : end] == b"\r" and end < len(data) else end
    if length > MAX_TEXT_LINE:
        raise _long_line(url, at, at + end)


def _decoded(
    data: bytes, url: str, at: int, given: int, chunk: Chunk = WHOLE
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
        f"({exc.reason}): fix the file's encoding (e.g. iconv -f latin1 -t utf-8), or read "
        "it in its encoding with a reader, e.g. reader=lambda stream, url: "
        "(line.decode('latin-1').rstrip('\\r\\n') for line in stream)",
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
    if not entries:  # Disco writes an index at its task's first output
        raise DataError(
            f"{url}: the index is empty, where a Disco index lists at least one file: it was "
            "emptied, or cut short, since its task wrote it: run the job that wrote it "
            "again",
            url=url,
        )
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
