"""Readers: how a first stage's input bytes become records, for inputs that are not text lines.

``@map(reader=readers.json_lines())`` reads every input of the job through
that reader instead of as text lines. A reader is a function
``reader(stream, url)`` returning (or yielding) the input's records, where
``stream`` is the input's bytes as a binary file object (``read``,
``readline``, ``peek``; gzip and bzip2 data already decompressed) and
``url`` the URL being read, for messages. The built-in ones are factories,
called to make a reader:

- :func:`json_lines`: each non-blank line is one parsed JSON value.
- :func:`csv_rows`: each row a ``dict`` keyed by the header (the first row).
- :func:`fixed`: each record ``size`` bytes.
- :func:`whole_file`: one record per input, ``(url, bytes)`` or ``(url, str)``.

A reader runs on the worker: it is pickled into the jobpack, so it must
live in an importable module the nodes have (as these do) or be shipped by
value (user code in ``__main__`` or a notebook is). Bad data in an input
raises :class:`MalformedRecord` naming the URL, the record (0-based) and
the byte offset; the job then fails at once, as the same bytes would fail
again. What this module does not do: open URLs or fail over between
replicas (see :mod:`discodsl.worker.inputs`), or read record files (the
default, with no reader).
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any, BinaryIO

from discodsl.worker.errors import MalformedRecord
from discodsl.worker.records import HEADER_SIZE, is_record_file_prefix

Reader = Callable[[BinaryIO, str], Iterable[Any]]

# A line longer than this is refused rather than read into memory (as inputs.MAX_TEXT_LINE).
MAX_LINE = 1 << 26
_SHOWN = 80  # how much of a bad line a message quotes
_READ_SIZE = 1 << 16  # bytes of a CSV input decoded at a time
_LINE_END = re.compile(r"(\r\n|\r|\n)")  # where open(newline="") ends lines, no more
_BOMS = frozenset(
    (
        codecs.BOM_UTF8,
        codecs.BOM_UTF16_LE,
        codecs.BOM_UTF16_BE,
        codecs.BOM_UTF32_LE,
        codecs.BOM_UTF32_BE,
    )
)


def json_lines() -> Reader:
    """A reader of JSON lines: each non-blank line of UTF-8 is one JSON value, parsed.

    Blank lines are skipped (and not counted as records); ``\\r\\n`` line ends are fine.
    """
    return _named(partial(_json_records), "readers.json_lines()")


def csv_rows(*, delimiter: str = ",", quotechar: str = '"', encoding: str = "utf-8") -> Reader:
    """A reader of CSV: the first row is the header, each later row a ``dict`` of ``str``.

    Quoted fields may hold delimiters and line ends; blank lines are skipped.
    A row with more or fewer fields than the header is malformed.
    """
    "a".encode(encoding)  # an unknown or non-text encoding fails here, not on the nodes
    csv.reader([], delimiter=delimiter, quotechar=quotechar)  # so does a bad delimiter
    dialect: dict[str, Any] = {"delimiter": delimiter, "quotechar": quotechar}
    made = partial(_csv_records, dialect=dialect, encoding=encoding)
    return _named(made, f"readers.csv_rows(delimiter={delimiter!r}, encoding={encoding!r})")


def fixed(size: int) -> Reader:
    """A reader of fixed-size binary records: ``bytes`` of ``size`` each.

    An input whose length is not a multiple of ``size`` ends in a short
    record, which is malformed.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"fixed(size) takes a positive int number of bytes; got {size!r}")
    return _named(partial(_fixed_records, size=size), f"readers.fixed({size})")


def whole_file(*, encoding: str | None = None) -> Reader:
    """A reader giving each input as one record, ``(url, content)``.

    ``content`` is the input's ``bytes``, or its text when ``encoding`` is
    given. The whole input is held in memory.
    """
    if encoding is not None:
        b"\n".decode(encoding, "replace")  # an unknown or non-text one fails here, not on nodes
    return _named(partial(_whole_records, encoding=encoding), f"readers.whole_file({encoding=})")


def _named(reader: partial[Any], call: str) -> Reader:
    """``reader``, named in errors about it as the call that made it."""
    reader.__qualname__ = reader.__name__ = call  # type: ignore[attr-defined]
    return reader


# -- the readers ---------------------------------------------------------------------------


def _json_records(stream: BinaryIO, url: str) -> Iterator[Any]:
    _refuse_record_file(stream, url, "JSON lines")
    record = offset = number = 0
    while line := _next_line(stream, url, offset):
        number += 1
        start, offset = offset, offset + len(line)
        if start == 0 and line.startswith(codecs.BOM_UTF8):  # a Windows editor's: not data
            start, line = len(codecs.BOM_UTF8), line[len(codecs.BOM_UTF8) :]
        if line.isspace() or not line:
            continue
        try:
            value = json.loads(line.decode("utf-8"))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise _bad_json(url, record, number, (start, offset), line, exc) from None
        yield value
        record += 1


def _bad_json(
    url: str, record: int, number: int, span: tuple[int, int], line: bytes, exc: ValueError
) -> MalformedRecord:
    text = line.rstrip(b"\r\n")
    reason = exc.reason if isinstance(exc, UnicodeDecodeError) else str(exc)
    return MalformedRecord(
        f"{url}: record {record} (line {number}, bytes {span[0]}-{span[0] + len(text)}) is "
        f"not valid JSON ({reason}): {text[:_SHOWN]!r}; fix the input, or read it with a "
        "reader of your own that skips such lines (see discodsl.readers)",
        url=url,
        span=(span[0], span[0] + len(text)),
        record=record,
    )


def _csv_records(
    stream: BinaryIO, url: str, *, dialect: dict[str, Any], encoding: str
) -> Iterator[dict[str, str]]:
    _refuse_record_file(stream, url, "CSV")
    lines = _Lines(stream, url, encoding)
    # A field may be as long as a line may: csv's own limit (128 KiB, for the process) is
    # raised to that while the input is read, never lowered; then it is the program's again
    # (an inline run's reader runs in the program's process).
    before = csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE))
    try:
        yield from _csv_rows(csv.reader(lines, strict=True, **dialect), lines, url)
    finally:
        if csv.field_size_limit() == max(before, MAX_LINE):  # as set here: put back
            csv.field_size_limit(before)


def _csv_rows(rows: Iterator[list[str]], lines: _Lines, url: str) -> Iterator[dict[str, str]]:
    """Each row of ``rows`` after the header as a dict of the header's names."""
    header = _next_row(rows, lines, -1)
    while header == []:  # blank lines before the header are skipped as later ones are
        header = _next_row(rows, lines, -1)
    record = 0
    while header is not None:
        start = lines.offset
        row = _next_row(rows, lines, record)
        if row is None:
            return
        if row:  # a blank line is no row
            if len(row) != len(header):
                raise _wrong_width(url, record, (start, lines.offset), len(row), header)
            yield dict(zip(header, row, strict=True))
            record += 1


class _Undecodable(Exception):
    """Bytes of a CSV input that are not valid in its encoding, at ``span`` of the input."""

    def __init__(self, reason: str, span: tuple[int, int]) -> None:
        super().__init__(reason)
        self.reason, self.span = reason, span


class _Lines:
    """The lines of a byte stream in any encoding, for csv.reader, as ``open(newline="")``
    gives them: decoded incrementally, split at ``\\r``, ``\\n`` or ``\\r\\n``, each with its
    line end; ``offset`` is the byte where the next line starts.

    The bytes of a line are counted by encoding its text again, which gives the
    file's own bytes for every encoding in which a text has one spelling
    (UTF-8, -16 and -32, single-byte ones, Shift JIS, GBK...); a BOM the
    decoder drops is counted once. Bytes that are not valid raise _Undecodable
    once the whole lines before them are given.
    """

    def __init__(self, stream: BinaryIO, url: str, encoding: str) -> None:
        self.stream, self.url, self.encoding = stream, url, encoding
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self._encoder = codecs.getincrementalencoder(encoding)()
        self.offset = _bom_size(stream, self._encoder.encode(""))  # bytes of the lines given
        self.line_start = self.offset
        self._lines: Iterator[str] = iter(())
        self._tail = ""  # decoded text after the last line end
        self._read = 0  # bytes read from the stream
        self._failed: _Undecodable | None = None
        self._ended = False
        self._first = True

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._lines, None)
        while line is None:
            self._decode_more()
            line = next(self._lines, None)
        self.line_start = self.offset
        self.offset += len(self._encoder.encode(line))
        return line

    def _decode_more(self) -> None:
        """The lines of the next read (StopIteration at the end, _Undecodable at bad bytes)."""
        if self._failed is not None:
            raise self._failed
        if self._ended:
            raise StopIteration
        data = self.stream.read(_READ_SIZE)
        self._ended = not data
        text = self._decoded(data)
        if self._first and text:  # a BOM the decoder kept (UTF-8's, a spreadsheet's): no text
            self._first = False
            if text.startswith("\ufeff"):
                self.offset += len(self._encoder.encode("\ufeff"))
                text = text[1:]
        lines = _LINE_END.split(self._tail + text)
        # split() gives [text, end, text, end, ..., text]: pair each line with its end.
        self._tail = lines.pop()
        if lines and lines[-1] == "\r" and not self._ended and self._failed is None:
            self._tail = lines.pop(-2) + lines.pop() + self._tail  # its \n may come next
        whole = list(map("".join, zip(lines[::2], lines[1::2], strict=True)))
        if self._ended and self._tail:
            whole.append(self._tail)  # a last line with no line end
        if self._ended or self._failed is not None:
            self._tail = ""  # given, or the start of the line bad bytes are in: not a line
        self._lines = iter(whole)
        self._check_length()

    def _decoded(self, data: bytes) -> str:
        """The text of ``data``; up to its first bad byte if it has one (kept as _failed)."""
        pending, flag = self._decoder.getstate()
        start = self._read - len(pending)  # where the bytes being decoded start
        self._read += len(data)
        try:
            return self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            self._failed = _Undecodable(exc.reason, (start + exc.start, start + exc.end))
            self._decoder.setstate((pending, flag))
            good = data[: max(0, exc.start - len(pending))]
            try:
                return self._decoder.decode(good)
            except UnicodeDecodeError:
                return ""

    def _check_length(self) -> None:
        if len(self._tail) > MAX_LINE:
            raise MalformedRecord(
                f"{self.url}: a line (after byte {self.offset}) is longer than {MAX_LINE} "
                "characters: is this a binary file? Read it with readers.fixed() or "
                "readers.whole_file()",
                url=self.url,
                span=(self.offset, self._read),
            )


def _bom_size(stream: BinaryIO, bom: bytes) -> int:
    """The bytes of ``bom`` (what the encoder writes first) that the stream starts with."""
    peek = getattr(stream, "peek", None)
    if not bom or peek is None:
        return 0
    head = peek(len(bom))[: len(bom)]
    return len(bom) if head in _BOMS else 0


def _next_row(rows: Iterator[list[str]], lines: _Lines, record: int) -> list[str] | None:
    """The next row, None at the end; MalformedRecord for a row that cannot be read."""
    start = lines.offset
    try:
        return next(rows, None)
    except _Undecodable as exc:
        what = f"byte {exc.span[0]}) is not valid {lines.encoding} ({exc.reason})"
        span = exc.span
    except csv.Error as exc:
        what = f"bytes {start}-{lines.offset}) is not a CSV row ({exc})"
        span = (start, lines.offset)
    row = "its header row (" if record < 0 else f"record {record} ("
    fix = "check the reader's delimiter, quotechar and encoding"
    if "NUL" in what:  # Python 3.10's csv module reads none; 3.11 reads them
        fix = "Python 3.10's csv module reads no NUL character: run on Python 3.11 or later"
    raise MalformedRecord(
        f"{lines.url}: {row}{what}: fix the input, or {fix}",
        url=lines.url,
        span=span,
        record=record,
    ) from None


def _wrong_width(
    url: str, record: int, span: tuple[int, int], width: int, header: list[str]
) -> MalformedRecord:
    return MalformedRecord(
        f"{url}: record {record} (bytes {span[0]}-{span[1]}) has {width} field(s), but the "
        f"header has {len(header)} ({', '.join(header)[:_SHOWN]}): fix the row, or check the "
        "reader's delimiter",
        url=url,
        span=span,
        record=record,
    )


def _fixed_records(stream: BinaryIO, url: str, *, size: int) -> Iterator[bytes]:
    offset = 0
    while record := _read_exactly(stream, size):
        if len(record) < size:
            raise MalformedRecord(
                f"{url}: record {offset // size} (bytes {offset}-{offset + len(record)}) is "
                f"{len(record)} bytes, short of fixed({size}): the input's length "
                f"({offset + len(record)}) is not a multiple of {size}; check the record size",
                url=url,
                span=(offset, offset + len(record)),
                record=offset // size,
            )
        yield record
        offset += size


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    """``size`` bytes, fewer only at the end of the stream."""
    data = stream.read(size)
    while 0 < len(data) < size and (more := stream.read(size - len(data))):
        data += more
    return data


def _whole_records(stream: BinaryIO, url: str, *, encoding: str | None) -> Iterator[Any]:
    data = stream.read()
    if encoding is None:
        yield url, data
        return
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise MalformedRecord(
            f"{url}: record 0 (byte {exc.start}) is not valid {encoding} ({exc.reason}): "
            "read it as bytes (whole_file() without encoding=), or fix its encoding",
            url=url,
            span=(exc.start, exc.end),
            record=0,
        ) from None
    yield url, text


# -- shared ---------------------------------------------------------------------------------


def _next_line(stream: BinaryIO, url: str, offset: int) -> bytes:
    """The next line with its line end (b"" at the end); refuses an overlong one."""
    line = stream.readline(MAX_LINE + 2)  # a document of MAX_LINE bytes, then \r\n
    ending = 2 if line.endswith(b"\r\n") else 1 if line.endswith(b"\n") else 0
    if len(line) - ending > MAX_LINE:
        raise MalformedRecord(
            f"{url}: a line (from byte {offset}) is longer than {MAX_LINE} bytes, the most "
            "json_lines() reads as one JSON document: split such a document, or read the file "
            "with readers.whole_file() and json.loads() it in the stage (a binary file: "
            "readers.fixed())",
            url=url,
            span=(offset, offset + len(line)),
        )
    return line


def _refuse_record_file(stream: BinaryIO, url: str, what: str) -> None:
    """A record file (which no text starts as) read as text: say what it is."""
    peek = getattr(stream, "peek", None)
    head = peek(HEADER_SIZE)[:HEADER_SIZE] if peek is not None else b""
    if head and is_record_file_prefix(head):
        raise MalformedRecord(
            f"{url} is a record file (an earlier job's results, a file a dir:// index lists, "
            f"a blob DDFS.chunk wrote), not {what}: read it without reader= to get its "
            "records (its (key, value) pairs, or a chunk blob's lines as bytes, which the map "
            "decodes)",
            url=url,
            span=(0, 0),
            record=0,
        )
