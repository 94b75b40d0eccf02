"""Readers (discodsl.readers): JSON lines, CSV rows, fixed-size records and whole files on
every input scheme (file, http from a 127.0.0.1 server, raw, dir:// indexes, DDFS tags on
the test master), malformed input named by URL, record and byte offset and never retried,
readers of one's own, and Results.to_pandas with and without pandas."""

from __future__ import annotations

import codecs
import csv
import dataclasses
import functools
import gzip
import http.server
import io
import json
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discodsl import DataError, JobError, TaskFailed, count, job, map, readers, reduce, stage
from discodsl.ddfs import DDFS
from discodsl.errors import MalformedRecord
from discodsl.results import Results
from discodsl.worker.errors import retryable
from discodsl.worker.inputs import Cursor, iter_input
from discodsl.worker.opening import Node
from tests import jobs, reader_jobs
from tests.loopback import LoopbackHTTPServer

# -- inputs of every scheme -----------------------------------------------------------


class Served:
    """Files under ``root`` served over HTTP on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.root = root
        self.httpd = LoopbackHTTPServer(handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    root = tmp_path / "served"
    root.mkdir()
    server = Served(root)
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
    server.thread.join(timeout=5)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    (tmp_path / "data").mkdir()
    return Node(host="here", disco_data=str(tmp_path / "data"), timeout=5)


SCHEMES = ["file", "http", "raw", "dir"]


def input_url(scheme: str, data: bytes, tmp_path: Path, served: Served, name: str) -> str:
    """A URL of ``scheme`` whose input (for dir://: whose one listed file) holds ``data``;
    the URL a reader's errors name comes back from :func:`named`."""
    if scheme == "raw":
        return "raw://" + data.decode("utf-8")
    if scheme == "http":
        (served.root / name).write_bytes(data)
        return served.url(name)
    path = tmp_path / name
    path.write_bytes(data)
    if scheme == "file":
        return path.as_uri()
    index = tmp_path / "data" / f"{name}.index"
    index.write_text(f"0 {path.as_uri()} {len(data)}\n1 raw://not-for-label-0 13\n")
    return f"dir://here/disco/{name}.index"


def named(url: str, tmp_path: Path) -> str:
    """The URL an error names: a dir:// index's listed file, else the URL itself."""
    if url.startswith("dir://"):
        return (tmp_path / url.rsplit("/", 1)[1].removesuffix(".index")).as_uri()
    return url


def read(reader: Callable[..., Any], url: str, node: Node, label: int | str = 0) -> list[Any]:
    return list(iter_input([url], label, node, Cursor(), reader))


# Each case: a reader, good bytes and their records (a callable of the URL read, for
# whole files), bad bytes and where the bad record is (its number, its first byte).
CASES: dict[str, tuple[Any, bytes, Any, bytes, int, int]] = {
    "json_lines": (
        readers.json_lines(),
        b'{"user": "ann", "n": 1}\n[1, 2.5, null]\r\n\n"text"\n7',
        [{"user": "ann", "n": 1}, [1, 2.5, None], "text", 7],
        b'{"n": 1}\n\n{"n": 2}\n{"n": \n{"n": 3}\n',
        2,
        19,
    ),
    "csv_rows": (
        readers.csv_rows(),
        b'name,n\nann,1\r\n"b, ""c""\nd",2\n\nzoe,\n',
        [{"name": "ann", "n": "1"}, {"name": 'b, "c"\nd', "n": "2"}, {"name": "zoe", "n": ""}],
        b"name,n\nann,1\nbob,2\ncid\ndan,4\n",
        2,
        19,
    ),
    "csv_rows;": (
        readers.csv_rows(delimiter=";"),
        b"a;b\n1,5;2\n",
        [{"a": "1,5", "b": "2"}],
        b'a;b\n1;2\n"3;4\n',
        1,
        8,
    ),
    "fixed": (
        readers.fixed(4),
        b"abcdefgh0123",
        [b"abcd", b"efgh", b"0123"],
        b"abcdefgh012",
        2,
        8,
    ),
    "whole_file": (
        readers.whole_file(),
        b"any bytes\n\x00at all",
        lambda url: [(url, b"any bytes\n\x00at all")],
        b"",
        -1,
        -1,
    ),
    "whole_file text": (
        readers.whole_file(encoding="utf-8"),
        "café\nlines ✓".encode(),
        lambda url: [(url, "café\nlines ✓")],
        b"caf\xe9",
        0,
        3,
    ),
}


def _expected(records: Any, url: str) -> list[Any]:
    return list(records(url)) if callable(records) else list(records)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("case", CASES)
def test_each_reader_reads_good_input_of_each_scheme(
    case: str, scheme: str, tmp_path: Path, served: Served, node: Node
) -> None:
    reader, good, records, *_ = CASES[case]
    url = input_url(scheme, good, tmp_path, served, "good")
    assert read(reader, url, node) == _expected(records, named(url, tmp_path))


def _malformed_cases() -> list[tuple[str, str]]:
    """Every bad input on every scheme, but raw:// (text only) for bytes that are not UTF-8."""
    return [
        (case, scheme)
        for case in CASES
        if CASES[case][4] >= 0
        for scheme in SCHEMES
        if scheme != "raw" or _is_utf8(CASES[case][3])
    ]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize(("case", "scheme"), _malformed_cases())
def test_malformed_input_names_url_record_and_byte(
    case: str, scheme: str, tmp_path: Path, served: Served, node: Node
) -> None:
    reader, _, _, bad, record, offset = CASES[case]
    url = input_url(scheme, bad, tmp_path, served, "bad")
    with pytest.raises(MalformedRecord) as caught:
        read(reader, url, node)
    error = caught.value
    where = named(url, tmp_path)
    assert isinstance(error, DataError)
    assert (error.url, error.record, error.span and error.span[0]) == (where, record, offset)
    assert where in str(error) and f"record {record}" in str(error)
    assert f"byte {offset}" in str(error) or f"bytes {offset}-" in str(error)
    assert not retryable(error)


def test_records_before_the_malformed_one_are_yielded(tmp_path: Path, node: Node) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"1\n2\n{oops\n4\n")
    records = iter_input([str(path)], "all", node, Cursor(), readers.json_lines())
    assert [next(records), next(records)] == [1, 2]
    with pytest.raises(MalformedRecord, match=r"record 2 \(line 3, bytes 4-9\) is not valid JSON"):
        next(records)


def test_compressed_inputs_are_read_decompressed(tmp_path: Path, node: Node) -> None:
    path = tmp_path / "data.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n{"a": 2}\n'))
    assert read(readers.json_lines(), str(path), node) == [{"a": 1}, {"a": 2}]


def test_compressed_inputs_are_read_decompressed_whatever_their_name(
    tmp_path: Path, node: Node
) -> None:
    """A DDFS blob of a pushed ``data.jsonl.gz`` is named ``data_jsonl_gz$<stamp>``."""
    path = tmp_path / "data_jsonl_gz$5f1-2a-3b"
    path.write_bytes(gzip.compress(b'{"a": 1}\n{"a": 2}\n'))
    assert read(readers.json_lines(), str(path), node) == [{"a": 1}, {"a": 2}]


def test_csv_header_only_or_empty_gives_no_records(tmp_path: Path, node: Node) -> None:
    assert read(readers.csv_rows(), "raw://a,b\n", node) == []
    (tmp_path / "empty.csv").write_bytes(b"")
    assert read(readers.csv_rows(), str(tmp_path / "empty.csv"), node) == []


def test_blank_lines_before_a_csv_header_are_skipped(tmp_path: Path, node: Node) -> None:
    """As later blank lines are: they became a header of no fields, and every row failed."""
    (tmp_path / "blank_first.csv").write_bytes(b"\n\r\n\na,b\n\n1,2\n")
    assert read(readers.csv_rows(), str(tmp_path / "blank_first.csv"), node) == [
        {"a": "1", "b": "2"}
    ]
    (tmp_path / "blank_only.csv").write_bytes(b"\n\n")
    assert read(readers.csv_rows(), str(tmp_path / "blank_only.csv"), node) == []


def test_a_csv_field_as_long_as_a_line_may_be_is_read(tmp_path: Path, node: Node) -> None:
    """csv's own field limit, 128 KiB, made a valid file malformed ("check the delimiter")."""
    path = tmp_path / "big.csv"
    big = "x" * 300_000
    path.write_text(f'a,b\n"{big}",1\n')
    assert read(readers.csv_rows(), str(path), node) == [{"a": big, "b": "1"}]


def test_reading_csv_leaves_the_programs_own_field_limit_as_it_was(
    tmp_path: Path, node: Node
) -> None:
    # An inline run's csv_rows() raised the process's csv.field_size_limit to 64 MiB for
    # good, a safety limit of the program's own csv code (probe DT F9).
    path = tmp_path / "big.csv"
    big = "x" * 300_000
    path.write_text(f'a,b\n"{big}",1\n')
    before = csv.field_size_limit()
    assert read(readers.csv_rows(), str(path), node) == [{"a": big, "b": "1"}]
    assert csv.field_size_limit() == before


def test_a_json_line_longer_than_the_limit_says_how_to_read_it(
    tmp_path: Path, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It asked whether the file was binary, to read it with readers.fixed() (probe DT F8).
    from discodsl.worker import readers as worker_readers

    monkeypatch.setattr(worker_readers, "MAX_LINE", 64)
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"a": "x" * 100}) + "\n")
    with pytest.raises(MalformedRecord) as caught:
        read(readers.json_lines(), str(path), node)
    said = str(caught.value)
    assert "is longer than 64 bytes, the most json_lines() reads as one JSON document" in said
    assert "readers.whole_file() and json.loads() it in the stage" in said


@pytest.mark.parametrize("end", ["\n", "\r\n", ""])
@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_the_json_line_limit_holds_the_document_not_its_line_end(
    tmp_path: Path, node: Node, monkeypatch: pytest.MonkeyPatch, end: str, extra: int
) -> None:
    # A document of exactly the limit was refused when a line end followed it, read when
    # it was the file's last line (probe DY F2).
    from discodsl.worker import readers as worker_readers

    monkeypatch.setattr(worker_readers, "MAX_LINE", 64)
    document = json.dumps("x" * (62 + extra))  # 64 + extra bytes, its quotes included
    path = tmp_path / "limit.jsonl"
    path.write_bytes(f"{document}{end}".encode())
    if extra > 0:
        with pytest.raises(MalformedRecord, match="is longer than 64 bytes"):
            read(readers.json_lines(), str(path), node)
    else:
        assert read(readers.json_lines(), str(path), node) == ["x" * (62 + extra)]


def test_csv_bad_quoting_and_encoding_are_malformed(tmp_path: Path, node: Node) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b'a,b\n1,"2"x\n')
    with pytest.raises(MalformedRecord, match=r"record 0 \(bytes 4-11\) is not a CSV row"):
        read(readers.csv_rows(), str(path), node)
    path.write_bytes(b"a,b\n1,2\n3,caf\xe9\n")
    with pytest.raises(MalformedRecord, match=r"record 1 .*byte 13.* not valid utf-8") as caught:
        read(readers.csv_rows(), str(path), node)
    assert caught.value.span == (13, 14)


def test_a_csv_field_holding_a_nul_is_read_or_refused_naming_python_3_10(
    tmp_path: Path, node: Node
) -> None:
    # Python 3.10's csv module reads no NUL (3.11 does): it was refused with advice about
    # delimiters and encodings.
    path = tmp_path / "nul.csv"
    path.write_bytes(b"a,b\n1,x\x00y\n")
    if sys.version_info >= (3, 11):
        assert read(readers.csv_rows(), str(path), node) == [{"a": "1", "b": "x\x00y"}]
        return
    with pytest.raises(MalformedRecord, match=r"Python 3\.10's csv module reads no NUL"):
        read(readers.csv_rows(), str(path), node)


def _dict_reader_rows(data: bytes, encoding: str) -> list[dict[str, str]]:
    """What csv.DictReader(open(path, newline="", encoding=...)) reads from ``data``."""
    text = io.TextIOWrapper(io.BytesIO(data), encoding=encoding, newline="")
    return list(csv.DictReader(text))


def test_a_utf8_bom_names_no_csv_column(tmp_path: Path, node: Node) -> None:
    """Excel's "CSV UTF-8" starts with a BOM, which json_lines skipped and csv_rows kept
    in the first column's name: row["name"] was a KeyError (probe DG FR13)."""
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbfname,val\n\xef\xbb\xbfx,1\n")
    assert read(readers.csv_rows(), str(tmp_path / "excel.csv"), node) == [
        {"name": "\ufeffx", "val": "1"}  # a BOM within the data is the data's
    ]
    # Quoted after it, the header kept its quotes, or was split (probe DJ F5): the BOM
    # goes before the csv module reads the line.
    (tmp_path / "r.csv").write_bytes(b'\xef\xbb\xbf"last, first","n"\n"a, b",1\n')
    assert read(readers.csv_rows(), str(tmp_path / "r.csv"), node) == [
        {"last, first": "a, b", "n": "1"}
    ]
    (tmp_path / "bad.csv").write_bytes(b'\xef\xbb\xbf"a",b\n1,2\n1,2,3\n')
    with pytest.raises(MalformedRecord) as caught:  # offsets count the BOM's bytes
        read(readers.csv_rows(), str(tmp_path / "bad.csv"), node)
    assert caught.value.span == (13, 19), caught.value  # the BOM: bytes 0-3


CSV_TEXT = 'name,val\nx,1\r\n"ü, ✓\r\nz",2\n\ny,\u20ac3\n'


@pytest.mark.parametrize(
    "encoding",
    ["utf-16", "utf-16-be", "utf-32", "utf-8-sig", "cp037", "shift_jis", "latin-1", "utf-8"],
)
def test_csv_in_any_encoding_reads_as_csv_dictreader_does(
    tmp_path: Path, node: Node, encoding: str
) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(CSV_TEXT.encode(encoding, errors="replace"))  # ? for what it lacks
    want = _dict_reader_rows(path.read_bytes(), encoding)
    assert len(want) == 3
    assert read(readers.csv_rows(encoding=encoding), str(path), node) == want


def test_a_utf16_csv_file_in_a_job(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    with open(path, "w", encoding="utf-16", newline="") as out:
        out.write("name,val\nx,1\ny,2\n")
    assert sorted(_utf16_job.run(inputs=[path], mode="inline")) == [("x", "1"), ("y", "2")]


@map(reader=readers.csv_rows(encoding="utf-16"))
def _name_val(row: dict[str, str]) -> Iterator[tuple[str, str]]:
    yield row["name"], row["val"]


@job
def _utf16_job() -> list[Any]:
    return [_name_val]


def test_malformed_utf16_csv_names_record_and_byte(tmp_path: Path, node: Node) -> None:
    """Offsets are the file's bytes: a 2-byte BOM, then 2 bytes a character."""
    path = tmp_path / "bad.csv"
    path.write_bytes("name,val\nx,1\ny\n".encode("utf-16-le").join([codecs.BOM_UTF16_LE, b""]))
    with pytest.raises(MalformedRecord, match=r"record 1 \(bytes 28-32\) has 1 field") as caught:
        read(readers.csv_rows(encoding="utf-16"), str(path), node)
    assert caught.value.span == (28, 32)
    path.write_bytes("name,val\nx,1\ny,2\n".encode("utf-16") + b"\x00")  # a half character
    with pytest.raises(MalformedRecord, match=r"record 2 \(byte 36\) is not valid utf-16"):
        read(readers.csv_rows(encoding="utf-16"), str(path), node)
    path.write_bytes("name,val\nx,1\n".encode("utf-16") + b"\x00\xdc,\x002\x00\n\x00")
    with pytest.raises(MalformedRecord, match=r"record 1 \(byte 28\) is not valid utf-16"):
        read(readers.csv_rows(encoding="utf-16"), str(path), node)


@pytest.mark.parametrize(
    "data",
    [b"name,val\rx,1\ry,2\r", b"name,val\rx,1\r\ny,2", b'name,val\r"x\r",1\ny,2\r\n'],
    ids=["cr", "mixed", "quoted-cr"],
)
def test_csv_with_cr_line_ends_reads_as_csv_dictreader_does(
    tmp_path: Path, node: Node, data: bytes
) -> None:
    path = tmp_path / "cr.csv"
    path.write_bytes(data)
    want = _dict_reader_rows(data, "utf-8")
    assert [row["name"] for row in want][-1] == "y"
    assert read(readers.csv_rows(), str(path), node) == want


def test_csv_lines_across_reads(
    tmp_path: Path, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A \\r\\n, a character or a row cut by the end of a read is whole all the same."""
    from discodsl.worker import readers as worker_readers

    monkeypatch.setattr(worker_readers, "_READ_SIZE", 3)
    data = 'name,val\r\nx,é\r\n"y\r\nz",2\r\r\nw,✓\r'.encode()
    path = tmp_path / "small-reads.csv"
    path.write_bytes(data)
    assert read(readers.csv_rows(), str(path), node) == _dict_reader_rows(data, "utf-8")
    path.write_bytes(b"name,val\r\nx,1\r\ny,2,3\r\n")
    with pytest.raises(MalformedRecord, match=r"record 1 \(bytes 15-22\) has 3 field"):
        read(readers.csv_rows(), str(path), node)


def test_csv_rows_refuses_an_encoding_that_is_not_text() -> None:
    with pytest.raises(LookupError):
        readers.csv_rows(encoding="rot13")
    with pytest.raises(LookupError):
        readers.csv_rows(encoding="no-such-codec")


def test_whole_file_refuses_an_encoding_that_is_not_text_when_made() -> None:
    """It took base64 (which csv_rows refused), and then every task failed."""
    with pytest.raises(LookupError, match="not a text encoding"):
        readers.whole_file(encoding="base64")
    with pytest.raises(LookupError):
        readers.whole_file(encoding="no-such-codec")
    readers.whole_file(encoding="utf-16")  # a text encoding, though b"" decodes under any


def test_the_readers_are_a_module_of_their_own() -> None:
    """Messages say "see discodsl.readers", which could not be imported."""
    import importlib

    module = importlib.import_module("discodsl.readers")
    assert module is readers and module.json_lines is readers.json_lines
    from discodsl.readers import csv_rows, fixed, json_lines, whole_file

    assert (csv_rows, fixed, json_lines, whole_file) == (
        module.csv_rows,
        module.fixed,
        module.json_lines,
        module.whole_file,
    )


def _refusing_hook(params: Any, *, dsn: str) -> None:
    raise ConnectionError(f"cannot connect to {dsn}")


def _failing_reader(stream: BinaryIO, url: str, *, why: str) -> Iterator[Any]:
    raise LookupError(why)
    yield


def test_a_hook_or_reader_made_by_a_partial_is_named_when_it_fails(tmp_path: Path) -> None:
    """They were named '' ("the init hook '' of stage 'parse' raised ...")."""
    path = tmp_path / "in.txt"
    path.write_text("x\n")

    @map(init=functools.partial(_refusing_hook, dsn="db://x"))
    def parse(line: str) -> Iterator[tuple[str, int]]:
        yield line, 1

    @map(reader=functools.partial(_failing_reader, why="no codec"))
    def whole(record: Any) -> Iterator[tuple[str, int]]:
        yield record

    for stage_, culprit in (
        (parse, "the init hook '_refusing_hook' of stage 'parse' raised ConnectionError"),
        (whole, "the reader '_failing_reader' of stage 'whole' raised LookupError: no codec"),
    ):
        with pytest.raises(Exception, match=re.escape(culprit)):
            job(functools.partial(list, [stage_])).run(inputs=[path], mode="inline")


def test_a_malformed_header_names_the_header(tmp_path: Path, node: Node) -> None:
    with pytest.raises(MalformedRecord, match="header") as caught:
        read(readers.csv_rows(), 'raw://"a,b\n', node)
    assert caught.value.record == -1


def test_a_record_file_under_a_text_reader_says_so(tmp_path: Path, node: Node) -> None:
    """A dir:// index of an earlier local job lists record files: a reader reads each file
    the index lists; a text reader refuses them, saying to drop reader=."""
    (tmp_path / "in.txt").write_text("a b a\n")
    with jobs.wordcount.run(inputs=[tmp_path / "in.txt"], mode="local") as results:
        index = next(u for r in results.urls for u in r if u.startswith("dir://"))
        with pytest.raises(MalformedRecord, match="is a record file") as caught:
            list(iter_input([index], "all", results.node, Cursor(), readers.json_lines()))
        assert "without reader=" in str(caught.value)
        assert "a chunk blob's lines as bytes" in str(caught.value)  # probe CN F6
        whole = list(iter_input([index], "all", results.node, Cursor(), readers.whole_file()))
        assert whole and all(data[:1] == b"\x81" for _, data in whole)


def test_a_malformed_record_is_not_failed_over_to_another_replica(
    tmp_path: Path, node: Node
) -> None:
    """Replicas hold the same bytes: another would fail the same way."""
    bad, good = tmp_path / "bad.jsonl", tmp_path / "good.jsonl"
    bad.write_bytes(b"1\n{\n")
    good.write_bytes(b"1\n2\n")
    with pytest.raises(MalformedRecord) as caught:
        list(iter_input([str(bad), str(good)], "all", node, Cursor(), readers.json_lines()))
    assert caught.value.url == str(bad)
    twin = tmp_path / "twin.jsonl"  # a replica as bad: the error is the record's, not "could
    twin.write_bytes(bad.read_bytes())  # not read any of the 2 replicas" (which is retried)
    with pytest.raises(MalformedRecord, match="is not valid JSON") as caught:
        list(iter_input([str(bad), str(twin)], "all", node, Cursor(), readers.json_lines()))
    assert type(caught.value) is MalformedRecord and caught.value.url == str(bad)
    missing = str(tmp_path / "missing.jsonl")
    assert list(iter_input([missing, str(good)], 0, node, Cursor(), readers.json_lines())) == [
        1,
        2,
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=3, max_size=3), max_size=20))
def test_fixed_records_come_back_as_written(chunks: list[bytes]) -> None:
    stream = io.BufferedReader(io.BytesIO(b"".join(chunks)))  # type: ignore[arg-type]
    assert list(readers.fixed(3)(stream, "x")) == chunks


class _Trickling(io.RawIOBase):
    """A stream whose reads give at most 3 bytes, as an HTTP answer's or a decompressor's
    may give fewer than asked."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        taken, self.data = self.data[: min(3, size)], self.data[min(3, size) :]
        return taken


def test_fixed_records_are_whole_from_a_stream_of_short_reads() -> None:
    """The first short read was taken for a short last record: MalformedRecord."""
    records = [bytes([n]) * 8 for n in range(5)]
    stream = _Trickling(b"".join(records))
    assert list(readers.fixed(8)(stream, "http://h/x")) == records  # type: ignore[arg-type]


def test_fixed_records_of_a_raw_url_are_its_utf8_bytes(node: Node) -> None:
    assert read(readers.fixed(2), "raw://" + "é" * 3, node) == ["é".encode()] * 3


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=10,
    )
)
def test_json_lines_round_trip(values: list[Any]) -> None:
    data = "".join(json.dumps(v) + "\n" for v in values)
    assert read(readers.json_lines(), "raw://" + data, Node()) == values


def test_a_utf8_bom_starting_an_input_is_no_part_of_its_first_record(tmp_path: Path) -> None:
    # Editors on Windows and spreadsheet exports start files with one.
    data = tmp_path / "bom.txt"
    data.write_bytes("\ufeff".encode() + b'{"a": 1}\n[2]\n')
    assert read(readers.json_lines(), data.as_uri(), Node()) == [{"a": 1}, [2]]
    data.write_bytes("\ufeff".encode() + b"\n3\n")  # a first line of nothing but the BOM
    assert read(readers.json_lines(), data.as_uri(), Node()) == [3]
    data.write_bytes("\ufeff".encode() + b"k,v\n1,2\n")
    rows = read(readers.csv_rows(encoding="utf-8-sig"), data.as_uri(), Node())
    assert rows == [{"k": "1", "v": "2"}]


_NO_NUL = "\x00" if sys.version_info < (3, 11) else ""


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.text(
                # Python 3.10's csv module neither writes nor reads a NUL (3.11 does both)
                st.characters(blacklist_categories=["Cs"], blacklist_characters=_NO_NUL),
                max_size=6,
            ),
            min_size=3,
            max_size=3,
        ),
        max_size=10,
    )
)
def test_csv_rows_round_trip(rows: list[list[str]]) -> None:
    text = io.StringIO()
    csv.writer(text).writerows([["a", "b", "c"], *rows])
    # A row of three empty fields is written as ',,' and read back as one: no blank-line loss.
    want = [dict(zip("abc", row, strict=True)) for row in rows]
    assert read(readers.csv_rows(), "raw://" + text.getvalue(), Node()) == want


# -- readers in jobs --------------------------------------------------------------------


def test_a_job_reads_each_scheme_through_its_reader(
    tmp_path: Path, served: Served, node: Node
) -> None:
    lines = b'{"user": "ann", "n": 2}\n{"user": "bob", "n": 3}\n{"user": "ann", "n": 5}\n'
    (tmp_path / "a.jsonl").write_bytes(lines)
    (served.root / "b.jsonl").write_bytes(lines)
    inputs = [
        str(tmp_path / "a.jsonl"),
        served.url("b.jsonl"),
        "raw://" + lines.decode(),
    ]
    results = reader_jobs.json_totals.run(inputs=inputs, mode="inline")
    assert dict(results) == {"ann": 21, "bob": 9}


def test_malformed_input_fails_a_local_job_at_once(tmp_path: Path) -> None:
    """Not retried: each attempt of the map appends to a file, and there is one.
    (One input: a second task may or may not have started when the job fails.)"""
    (tmp_path / "bad.jsonl").write_text('{"user": "a", "n": 1}\n{"user": "b", n: 2}\n')
    attempts = tmp_path / "attempts"
    with pytest.raises(TaskFailed) as caught:
        reader_jobs.json_attempts.run(
            inputs=[tmp_path / "bad.jsonl"],
            mode="local",
            params={"log": str(attempts)},
            max_failures=3,
        )
    error = caught.value
    assert error.url.endswith("bad.jsonl") and error.record == 1
    assert "bytes 22-" in str(error) and "not valid JSON" in str(error)
    assert "not retried" in str(error) and "stage code" not in str(error)
    assert attempts.read_text() == "attempt\n"


def test_text_that_is_not_utf8_fails_a_local_job_at_once(tmp_path: Path) -> None:
    """No reader: a line that is not UTF-8 is bad data too, not retried (on a Disco master
    each retry would first wait 14 s or more)."""
    (tmp_path / "latin1.txt").write_bytes("ok line\ncaf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(TaskFailed, match=r"record 1 \(line 2, .* is not valid UTF-8") as caught:
        jobs.wordcount.run(inputs=[tmp_path / "latin1.txt"], mode="local", max_failures=3)
    assert "not retried" in str(caught.value) and "attempts" not in str(caught.value)


def test_malformed_input_inline_raises_malformed_record(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text("[1\n")
    with pytest.raises(MalformedRecord, match="record 0"):
        reader_jobs.json_totals.run(inputs=[tmp_path / "bad.jsonl"], mode="inline")


def test_a_big_file_under_a_reader_is_not_cut_into_ranges(tmp_path: Path) -> None:
    """The local runner cuts big text files into line ranges; a CSV header, fixed-size
    records or a whole file must reach one reader whole."""
    path = tmp_path / "big.csv"
    row = b"x" * 1000 + b",1\n"
    with path.open("wb") as out:
        out.write(b"word,n\n")
        for _ in range(40_000):  # ~40 MB: more than twice the runner's split threshold
            out.write(row)
    results = reader_jobs.csv_count.run(inputs=[path], mode="local", workers=2)
    assert dict(results) == {"rows": 40_000}


def _my_reader(stream: BinaryIO, url: str) -> Iterator[tuple[str, int]]:
    """A reader of one's own: the sizes of blank-line separated paragraphs."""
    for number, paragraph in enumerate(stream.read().split(b"\n\n")):
        if paragraph.strip() == b"boom":
            raise ValueError(f"paragraph {number} is boom")
        yield url.rsplit("/", 1)[-1], len(paragraph.split())


@map(reader=_my_reader)
def _paragraphs(record: tuple[str, int]) -> Iterable[tuple[str, int]]:
    return [record]


@job
def _paragraph_job() -> list[Any]:
    return [_paragraphs]


def _lenient_json(stream: BinaryIO, url: str) -> Iterator[Any]:
    """The README's reader that skips bad lines, counting them."""
    for line in stream:
        try:
            yield json.loads(line)
        except ValueError:
            count("bad lines")


@map(reader=_lenient_json)
def _lenient_users(record: dict[str, Any]) -> Iterator[tuple[str, int]]:
    yield record["user"], record["n"]


@job
def _lenient_job() -> list[Any]:
    return [_lenient_users, reader_jobs.total]


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_a_reader_that_skips_bad_lines_and_counts_them(tmp_path: Path, mode: str) -> None:
    (tmp_path / "a.jsonl").write_text('{"user": "a", "n": 1}\n{oops\n{"user": "a", "n": 2}\n[\n')
    results = _lenient_job.run(inputs=[tmp_path / "a.jsonl"], mode=mode)
    assert dict(results) == {"a": 3}
    assert results.counters == {"bad lines": 2}


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_a_reader_of_ones_own(tmp_path: Path, mode: str) -> None:
    (tmp_path / "p.txt").write_bytes(b"a b\nc\n\nd e f g\n")
    assert sorted(_paragraph_job.run(inputs=[tmp_path / "p.txt"], mode=mode)) == [
        ("p.txt", 3),
        ("p.txt", 4),
    ]


def test_an_exception_from_a_reader_of_ones_own_fails_the_job(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_bytes(b"a\n\nboom\n")
    with pytest.raises(TaskFailed, match="paragraph 1 is boom") as caught:
        _paragraph_job.run(inputs=[tmp_path / "p.txt"], mode="local")
    assert caught.value.url.endswith("p.txt")
    assert "not retried" in str(caught.value)
    assert "the reader '_my_reader' of stage '_paragraphs' raised ValueError" in str(caught.value)
    # It failed making paragraph 1, not on paragraph 0, which it gave and the map took.
    assert caught.value.record == 1 and "p.txt', record 1:" in str(caught.value)


def _refusing_reader(stream: BinaryIO, url: str) -> list[Any]:
    raise ZeroDivisionError("no records today")  # at the call, before any record


@map(reader=_refusing_reader)
def _refused(record: Any) -> Iterable[tuple[str, int]]:
    return [("r", 1)]


@job
def _refused_job() -> list[Any]:
    return [_refused]


def test_a_reader_failing_before_its_first_record_names_itself_and_the_input(
    tmp_path: Path,
) -> None:
    (tmp_path / "p.txt").write_bytes(b"a\n")
    with pytest.raises(TaskFailed) as caught:
        _refused_job.run(inputs=[tmp_path / "p.txt"], mode="local")
    message = str(caught.value)
    assert "the reader '_refusing_reader' of stage '_refused' raised ZeroDivisionError" in message
    assert caught.value.url.endswith("p.txt") and "p.txt', record 0:" in message


# -- tags on the test master --------------------------------------------------------------


@pytest.mark.parametrize("case", ["json_lines", "csv_rows", "fixed", "whole_file"])
def test_tag_inputs_on_a_cluster(case: str, ddfs: DDFS, ns: str, tmp_path: Path) -> None:
    job_, good, want, bad = reader_jobs.TAG_CASES[case]
    (tmp_path / "good").write_bytes(good)
    ddfs.push(f"{ns}:{case}:good", [tmp_path / "good"])
    assert sorted(job_.run(inputs=[f"tag://{ns}:{case}:good"], mode="cluster")) == want
    if bad is None:
        return
    (tmp_path / "bad").write_bytes(bad)
    ddfs.push(f"{ns}:{case}:bad", [tmp_path / "bad"])
    with pytest.raises(TaskFailed) as caught:
        job_.run(inputs=[f"tag://{ns}:{case}:bad"], mode="cluster")
    assert caught.value.url.startswith("disco://") and caught.value.record >= 0
    assert "MalformedRecord" in str(caught.value) or "record" in str(caught.value)
    assert "byte" in str(caught.value)


# -- declaring readers -------------------------------------------------------------------


def test_reader_factories_must_be_called() -> None:
    with pytest.raises(JobError, match=r"reader=readers.json_lines\(\)"):
        map(reader=readers.json_lines)(lambda record: [])
    with pytest.raises(JobError, match=r"reader=readers.fixed\(SIZE\)"):
        map(reader=readers.fixed)(lambda record: [])
    with pytest.raises(JobError, match="must be a function"):
        map(reader="json")(lambda record: [])
    for wrong in (lambda a, b, c: [], lambda a: [], lambda a, b, *, sep: []):
        with pytest.raises(
            JobError, match=r"called as reader\(stream, url\).* cannot be called so \("
        ):
            map(reader=wrong)(lambda record: [])
    for right in (lambda a, b: [], lambda *args: [], lambda a, b, c=1, *, sep=",": [], open):
        map(reader=right)(lambda record: [])


def test_fixed_needs_a_positive_size() -> None:
    for size in (0, -1, 2.5, "4"):
        with pytest.raises(ValueError, match="positive"):
            readers.fixed(size)  # type: ignore[arg-type]


def test_only_the_first_stage_reads_inputs_with_a_reader() -> None:
    first = map(lambda record: [(record, 1)])

    @reduce
    def counted(key: Any, values: Iterable[int]) -> Iterator[tuple[Any, int]]:
        yield key, sum(values)

    second = map(reader=readers.json_lines(), name="second")(lambda record: [record])
    with pytest.raises(JobError, match="only the first stage"):
        job(lambda: [first, counted, second])
    with pytest.raises(JobError, match="only the first stage"):
        job(lambda: [first, second])
    assert stage(reader=readers.whole_file(), grouping="split")(lambda records: records)


def test_readers_ship_by_reference_and_run_unchanged(tmp_path: Path) -> None:
    """The built-in readers live in discodsl.worker, which every node has."""
    import cloudpickle

    for reader, *_ in CASES.values():
        shipped = cloudpickle.loads(cloudpickle.dumps(reader))
        assert shipped.func is reader.func and shipped.keywords == reader.keywords
        assert b"def " not in cloudpickle.dumps(reader)


# -- results in a DataFrame ---------------------------------------------------------------


def _results(tmp_path: Path, rows: list[tuple[Any, Any]]) -> Results:
    from discodsl.worker.records import RecordWriter

    path = tmp_path / "results"
    with RecordWriter(str(path)) as writer:
        writer.write_many(rows)
    return Results("job", [[path.as_uri()]], node=Node(), mode="inline")


def test_to_pandas_gives_key_and_value_columns(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    rows: list[tuple[Any, Any]] = [("a", 1), (("t", 2), {"x": 1}), (None, [1, 2])]
    frame = _results(tmp_path, rows).to_pandas()
    assert list(frame.columns) == ["key", "value"]
    assert list(frame.itertuples(index=False, name=None)) == rows


def test_to_pandas_expands_dict_and_tuple_values(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    dicts = _results(tmp_path, [("a", {"n": 1, "s": "x"}), ("b", {"n": 2, "t": True})])
    frame = dicts.to_pandas(expand=True)
    assert list(frame.columns) == ["key", "n", "s", "t"]
    assert frame["n"].tolist() == [1, 2] and frame["key"].tolist() == ["a", "b"]
    pairs = _results(tmp_path / "..", [("a", (1, "x")), ("b", (2, "y"))])
    assert pairs.to_pandas(expand=True).columns.tolist() == ["key", "value_0", "value_1"]
    ragged = _results(tmp_path / "ragged", [("a", (1,)), ("b", (2, "y", True))])
    frame = ragged.to_pandas(expand=True)  # as wide as the longest, the others padded
    assert frame.columns.tolist() == ["key", "value_0", "value_1", "value_2"]
    assert frame["value_0"].tolist() == [1, 2] and frame["value_2"].isna().tolist() == [True, False]
    # No records: nothing to spread, the columns of to_pandas() (had no value column: CZ)
    empty = _results(tmp_path / "empty", []).to_pandas(expand=True)
    assert empty.columns.tolist() == ["key", "value"] and len(empty) == 0
    mixed = _results(tmp_path, [("a", {"n": 1}), ("b", 2)])
    with pytest.raises(ValueError, match="expand=True"):
        mixed.to_pandas(expand=True)
    # A field named key (a record's own) is the value's: refused, and a NamedTuple's raised
    # where its fields had spread as value_0, ... (probe CM F7).
    clash = _results(tmp_path / "clash", [("a", {"key": "A", "n": 1}), ("b", {"n": 2})])
    frame = clash.to_pandas(expand=True)
    assert frame.columns.tolist() == ["key", "value_key", "n"]
    assert frame["value_key"].tolist()[:1] == ["A"] and frame["key"].tolist() == ["a", "b"]
    taken = _results(tmp_path / "taken", [("a", {"key": 1, "value_key": 2})])
    with pytest.raises(ValueError, match="fields named 'key' and 'value_key'"):
        taken.to_pandas(expand=True)


class Stat(NamedTuple):
    n: int
    total: float


@dataclasses.dataclass
class DStat:
    n: int
    total: float


def test_to_pandas_expands_named_tuples_and_dataclasses_by_their_fields(tmp_path: Path) -> None:
    # A NamedTuple's fields came as value_0, value_1; a dataclass's were refused.
    pytest.importorskip("pandas")
    for kind in (Stat, DStat):
        rows = [("a", kind(1, 2.5)), ("b", kind(2, 4.0))]
        frame = _results(tmp_path / kind.__name__, rows).to_pandas(expand=True)
        assert frame.columns.tolist() == ["key", "n", "total"]
        assert frame["total"].tolist() == [2.5, 4.0] and frame["key"].tolist() == ["a", "b"]
    mixed = _results(tmp_path / "mixed", [("a", Stat(1, 2.0)), ("b", (2, 3.0))])  # as tuples
    assert mixed.to_pandas(expand=True).columns.tolist() == ["key", "value_0", "value_1"]
    keyed = _results(tmp_path / "keyed", [("a", Entry("A", 1))])
    assert keyed.to_pandas(expand=True).columns.tolist() == ["key", "value_key", "count"]


class Entry(NamedTuple):
    key: str
    count: int


def test_to_pandas_of_a_job_run_on_each_mode(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    (tmp_path / "in.txt").write_text("a b a\n")
    for mode in ("inline", "local"):
        frame = jobs.wordcount.run(inputs=[tmp_path / "in.txt"], mode=mode).to_pandas()
        assert dict(zip(frame["key"], frame["value"], strict=True)) == {"a": 2, "b": 1}


def test_to_pandas_without_pandas_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails
    results = _results(tmp_path, [("a", 1)])
    with pytest.raises(ImportError, match=r"pip install 'discodsl\[pandas\]'"):
        results.to_pandas()


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_a_disco_url_of_another_host_is_read_at_the_configured_disco_port(
    mode: str, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster's blob or saved result (``disco://HOST/...``) given to a run here is read
    from HOST at DISCO_PORT, as a tag's blobs are, not at Disco's default port."""
    (served.root / "ddfs").mkdir()
    (served.root / "ddfs" / "blob.txt").write_text("b a\nb\n")
    monkeypatch.setenv("DISCO_PORT", str(served.httpd.server_address[1]))
    results = jobs.wordcount.run(["disco://127.0.0.1/ddfs/blob.txt"], mode=mode)
    assert results.to_dict() == {"a": 1, "b": 2}
