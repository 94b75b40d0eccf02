"""Reading task inputs: every URL scheme over real files and a real HTTP server,
dir:// indexes, and failover between replicas."""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import http.server
import itertools
import lzma
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discodsl import TaskFailed
from discodsl.worker import opening
from discodsl.worker.errors import BadURL, DamagedInput, DataError, MalformedRecord, retryable
from discodsl.worker.inputs import Cursor, iter_input, read_index
from discodsl.worker.opening import Node, open_url
from discodsl.worker.records import RecordWriter
from discodsl.worker.report import describe
from tests import jobs
from tests.loopback import LoopbackHTTPServer

ROWS: list[tuple[Any, Any]] = [(f"key-{i}", i) for i in range(300)]
TEXT = "first line\nsecond, ünïcode ✓\r\n\nlast line without newline"
LINES = ["first line", "second, ünïcode ✓", "", "last line without newline"]
STALL_SECONDS = 10.0


class Server:
    """An HTTP server on 127.0.0.1 serving ``root``, with paths that misbehave.

    ``/fail/...`` answers 500, ``/stall/...`` waits (until the test ends)
    before answering, ``/cut/PATH`` sends the first half of PATH and closes
    the connection early, ``/slow/PATH`` sends 100 KiB of PATH, then waits for
    ``release`` before the rest, ``/drop/N/PATH`` closes the connection without an
    answer N times before it sends PATH, ``/busy/CODE/N/PATH`` answers N times as a busy
    Disco node does (503 "Maximum number of downloaders reached", 403 "Disco node is
    busy"; 403 "Forbidden" for a path that is no file) before it sends PATH.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.release = threading.Event()
        self.stop = threading.Event()
        self.requests: list[str] = []
        self.dropped: dict[str, int] = {}
        self.httpd = LoopbackHTTPServer(self._handler())
        self.port = self.httpd.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                kind, _, rest = self.path.lstrip("/").partition("/")
                if kind == "fail":
                    self.send_error(500, "disk on fire")
                elif kind == "stall":
                    server.stop.wait(STALL_SECONDS)
                elif kind in ("cut", "slow"):
                    self._send(server.root / rest, kind)
                elif kind == "drop":
                    self._drop_or_send(*rest.split("/", 1))
                elif kind == "busy":
                    self._busy_or_send(*rest.split("/", 2))
                else:
                    self._send(server.root / self.path.lstrip("/"), "whole")

            def _drop_or_send(self, times: str, rest: str) -> None:
                dropped = server.dropped[rest] = server.dropped.get(rest, 0) + 1
                if dropped > int(times):
                    self._send(server.root / rest, "whole")
                else:
                    self.close_connection = True  # and nothing sent

            def _busy_or_send(self, code: str, times: str, rest: str) -> None:
                dropped = server.dropped[rest] = server.dropped.get(rest, 0) + 1
                if dropped > int(times):
                    self._send(server.root / rest, "whole")
                    return
                said = {"503": b"Maximum number of downloaders reached. Try again later"}
                body = said.get(code, b"Disco node is busy" if times != "99" else b"Forbidden")
                self.send_response(int(code))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _send(self, path: Path, how: str) -> None:
                if not path.is_file():
                    self.send_error(404, "no such file")
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if how == "cut":
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                elif how == "slow":
                    self.wfile.write(body[: 100 << 10])
                    self.wfile.flush()
                    server.release.wait(STALL_SECONDS)
                    self.wfile.write(body[100 << 10 :])
                else:
                    self.wfile.write(body)

        return Handler


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "served"
    root.mkdir()
    running = Server(root)
    running.thread.start()
    yield running
    running.stop.set()
    running.release.set()
    running.httpd.shutdown()
    running.httpd.server_close()
    running.thread.join(timeout=5)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    """This node is ``here``; its data directories are under tmp_path."""
    (tmp_path / "data").mkdir()
    (tmp_path / "ddfs").mkdir()
    return Node(
        host="here",
        disco_data=str(tmp_path / "data"),
        ddfs_data=str(tmp_path / "ddfs"),
        timeout=0.5,
    )


def remote(node: Node, server: Server) -> Node:
    """``node`` with its Disco port set to the test server's, so disco:// GETs reach it."""
    return Node(
        host=node.host,
        disco_port=server.port,
        disco_data=node.disco_data,
        ddfs_data=node.ddfs_data,
        timeout=node.timeout,
    )


def write_records(path: Path, rows: list[tuple[Any, Any]] = ROWS, **options: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with RecordWriter(str(path), **options) as writer:
        writer.write_many(rows)
    return path


def read_all(replicas: list[str], node: Node, label: int | str = "all") -> list[Any]:
    return list(iter_input(replicas, label, node, Cursor()))


# -- schemes ---------------------------------------------------------------------


def test_raw_urls_are_taken_verbatim(node: Node) -> None:
    assert read_all(["raw://hello%20world/ä?x=1"], node) == ["hello%20world/ä?x=1"]
    assert open_url("raw://abc", node).read() == b"abc"


def test_text_files_yield_lines_without_line_ends(tmp_path: Path, node: Node) -> None:
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    assert read_all([str(path)], node) == LINES
    assert read_all([f"file://{path}"], node) == LINES


def test_empty_file_has_no_records(tmp_path: Path, node: Node) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert read_all([str(tmp_path / "empty")], node) == []


def test_record_files_yield_key_value_tuples(tmp_path: Path, node: Node) -> None:
    path = write_records(tmp_path / "records", compress=True, hunk_size=100)
    assert read_all([str(path)], node) == ROWS


@pytest.mark.parametrize("compressor", [gzip, bz2], ids=["gz", "bz2"])
def test_compressed_files_are_read_decompressed(
    tmp_path: Path, node: Node, server: Server, compressor: Any
) -> None:
    suffix = ".gz" if compressor is gzip else ".bz2"
    (server.root / f"text{suffix}").write_bytes(compressor.compress(TEXT.encode()))
    records = write_records(tmp_path / "records").read_bytes()
    (server.root / f"records{suffix}").write_bytes(compressor.compress(records))
    for name, expected in ((f"text{suffix}", LINES), (f"records{suffix}", ROWS)):
        assert read_all([str(server.root / name)], node) == expected
        assert read_all([server.url(name)], node) == expected


@pytest.mark.parametrize("compressor", [gzip, bz2], ids=["gz", "bz2"])
def test_compressed_data_is_read_decompressed_whatever_its_name(
    tmp_path: Path, node: Node, server: Server, compressor: Any
) -> None:
    """A DDFS blob (``g1_txt_gz$<stamp>``) or a URL whose name lost its ending: by the bytes."""
    records = write_records(tmp_path / "records").read_bytes()
    blob = tmp_path / "ddfs" / "vol0" / "blob" / "c7"
    blob.mkdir(parents=True)
    for data, expected in ((TEXT.encode(), LINES), (records, ROWS)):
        (blob / "g1_txt_gz$5f1-2a-3b").write_bytes(compressor.compress(data))
        (server.root / "g1").write_bytes(compressor.compress(data))
        assert read_all([str(blob / "g1_txt_gz$5f1-2a-3b")], node) == expected
        assert read_all(["disco://here/ddfs/vol0/blob/c7/g1_txt_gz$5f1-2a-3b"], node) == expected
        assert read_all([server.url("g1")], node) == expected
        assert read_all(["disco://127.0.0.1/g1"], remote(node, server)) == expected


@pytest.mark.parametrize("compressor", [gzip, bz2], ids=["gz", "bz2"])
@pytest.mark.parametrize("kept", [1, 3])
def test_compressed_data_cut_within_its_magic_is_said_to_be_cut_short(
    tmp_path: Path, node: Node, compressor: Any, kept: int
) -> None:
    # Said to be "not gzip data", to be renamed or compressed again.
    suffix = ".gz" if compressor is gzip else ".bz2"
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(compressor.compress(TEXT.encode())[:kept])
    with pytest.raises(DamagedInput, match=r"cut short: copy the file again"):
        read_all([str(path)], node)


@pytest.mark.parametrize("compressor", [gzip, bz2], ids=["gz", "bz2"])
def test_compressed_data_padded_with_nuls_reads_as_gzip_reads_it(
    tmp_path: Path, node: Node, compressor: Any
) -> None:
    path = tmp_path / f"padded.{compressor.__name__}"
    path.write_bytes(compressor.compress(TEXT.encode()) + bytes(70_000))  # past a read
    assert read_all([str(path)], node) == LINES


@pytest.mark.parametrize("compressor", [gzip, bz2], ids=["gz", "bz2"])
def test_compressed_streams_one_after_another_read_as_one(
    tmp_path: Path, node: Node, compressor: Any
) -> None:
    """As `cat a.gz b.gz > ab.gz` joins them, and the command line tools read them."""
    big = "".join(f"line {n}\n" for n in range(100_000)).encode()  # streams past a read
    path = tmp_path / f"joined.{compressor.__name__}"
    path.write_bytes(
        compressor.compress(big) + compressor.compress(b"") + compressor.compress(TEXT.encode())
    )
    assert read_all([str(path)], node) == big.decode().splitlines() + LINES


def test_empty_compressed_streams_and_files_have_no_records(tmp_path: Path, node: Node) -> None:
    for name, data in (("gz", gzip.compress(b"")), ("bz2", bz2.compress(b"")), ("e.gz", b"")):
        (tmp_path / name).write_bytes(data)
        assert read_all([str(tmp_path / name)], node) == [], name


@pytest.mark.parametrize(
    "data",
    [b"BZh91AY&S is text\n", b"BZh9 begins this line\n", b"\x1f not gzip\n", b"BZ\n", b"B"],
)
def test_text_that_starts_like_a_compressed_file_is_read_as_text(
    tmp_path: Path, node: Node, data: bytes
) -> None:
    (tmp_path / "text").write_bytes(data)
    assert read_all([str(tmp_path / "text")], node) == data.decode().splitlines()


@pytest.mark.parametrize(
    ("name", "data", "holds"),
    [
        ("text.gz", TEXT.encode(), "not gzip"),
        ("text.bz2", TEXT.encode(), "not bzip2"),
        ("text.bz2", gzip.compress(TEXT.encode()), "gzip"),
        ("text.gz", bz2.compress(TEXT.encode()), "bzip2"),
    ],
    ids=["text.gz", "text.bz2", "gzip.bz2", "bzip2.gz"],
)
def test_a_compressed_name_over_other_data_fails_naming_both(
    tmp_path: Path, node: Node, name: str, data: bytes, holds: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError) as caught:
        read_all([str(path)], node)
    message = str(caught.value)
    assert str(path) in message and holds in message and name.rsplit(".")[-1] in message
    assert caught.value.url == str(path)


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("x.xz", lzma.compress(TEXT.encode()), "xz"),
        ("x.txt", lzma.compress(b""), "xz"),
        ("x.zst", bytes.fromhex("28b52ffd2000010000"), "zstd"),
    ],
)
def test_compressed_data_no_worker_reads_says_so_and_is_not_retried(
    tmp_path: Path, node: Node, name: str, data: bytes, kind: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(MalformedRecord, match=f"its bytes are {kind}-compressed data, which no"):
        read_all([str(path)], node)


@pytest.mark.parametrize(
    ("at", "value", "said"),
    [
        (0, 0x00, "first byte is damaged (0x00, not 0x81)"),
        (0, 0x41, "first byte is damaged (0x41, not 0x81)"),
        (0, 0x80, "first byte is damaged (0x80, not 0x81)"),
        # It was read as text, and refused as not UTF-8 with the advice to re-encode it.
        (1, 0x02, "compressed flag, its second byte, is damaged (0x02, not 0 or 1)"),
        (1, 0x41, "compressed flag, its second byte, is damaged (0x41, not 0 or 1)"),
        (1, 0xFF, "compressed flag, its second byte, is damaged (0xff, not 0 or 1)"),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_a_record_file_whose_header_byte_is_damaged_is_named_corrupt_not_text(
    tmp_path: Path, node: Node, at: int, value: int, said: str, compress: bool
) -> None:
    path = write_records(tmp_path / "records", compress=compress)
    data = bytearray(path.read_bytes())
    data[at] = value
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedInput) as caught:  # the same bytes would fail again
        read_all([str(path)], node)
    message = str(caught.value)
    assert f"starts as a record file whose {said}" in message, message
    assert "UTF-8" not in message and "iconv" not in message
    assert caught.value.span == (at, at + 1)


@pytest.mark.parametrize("compress", [False, True])
def test_a_record_file_whose_first_length_is_zeroed_is_named_corrupt_not_text(
    tmp_path: Path, node: Node, compress: bool
) -> None:
    path = write_records(tmp_path / "records", compress=compress)
    data = bytearray(path.read_bytes())
    data[6:14] = bytes(8)  # the first hunk's length: 0, its CRC still that of its bytes
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedInput) as caught:
        read_all([str(path)], node)
    message = str(caught.value)
    assert "bytes [0, 14): a hunk of length 0 whose crc32 is" in message
    assert "UTF-8" not in message


def test_corrupt_compressed_file_is_a_data_error(tmp_path: Path, node: Node) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(TEXT.encode() * 100)[:-30])
    with pytest.raises(DataError, match="reading failed") as caught:
        read_all([str(path)], node)
    assert str(path) in str(caught.value)
    assert "at or after byte 0 of its decompressed data" in str(caught.value)  # not the file's
    assert "the compressed data is cut short: copy the file again, whole" in str(caught.value)


def _damaged(compressor: Any, how: str) -> bytes:
    """Compressed text cut short, or with bytes in its middle overwritten."""
    data = compressor.compress(os.urandom(20_000).hex().encode())
    if how == "cut":
        return data[: len(data) // 2]
    if how == "trailing":  # bytes appended that are no stream (bz2.BZ2File dropped them)
        return data + b"appended line\n"
    middle = len(data) // 2
    return data[:middle] + bytes(64) + data[middle + 64 :]


DAMAGES = [
    ("gz", gzip, "cut"),
    ("gz", gzip, "overwritten"),
    ("bz2", bz2, "cut"),
    ("bz2", bz2, "overwritten"),
    ("gz", gzip, "trailing"),
    ("bz2", bz2, "trailing"),
    ("gz", None, "misnamed"),
]


@pytest.mark.parametrize(("suffix", "compressor", "how"), DAMAGES)
def test_damaged_compressed_data_is_not_retried_but_other_replicas_are_read(
    tmp_path: Path, node: Node, suffix: str, compressor: Any, how: str
) -> None:
    """The same bytes would fail the same way: the task is not run again (a master would
    retry it for an hour), but another replica may be whole, and is read."""
    bad, good = tmp_path / f"bad.{suffix}", tmp_path / f"good.{suffix}"
    bad.write_bytes(_damaged(compressor, how) if compressor else TEXT.encode())
    good.write_bytes((compressor or gzip).compress(TEXT.encode()))
    with pytest.raises(DamagedInput) as caught:
        read_all([str(bad)], node)
    assert caught.value.url == str(bad) and not retryable(caught.value)
    assert read_all([str(bad), str(good)], node) == LINES
    with pytest.raises(DamagedInput, match="could not read any of the 2 replicas") as caught:
        read_all([str(bad), str(bad)], node)
    assert not retryable(caught.value)


def test_a_job_over_a_damaged_file_fails_at_its_first_attempt(tmp_path: Path) -> None:
    path = tmp_path / "cut.gz"
    path.write_bytes(_damaged(gzip, "cut"))
    with pytest.raises(TaskFailed) as caught:
        jobs.wordcount.run([str(path)], mode="local", progress=False)
    assert "the compressed data is cut short" in str(caught.value)
    assert "attempts" not in str(caught.value)


def test_http_text_and_records(tmp_path: Path, node: Node, server: Server) -> None:
    (server.root / "text").write_text(TEXT, encoding="utf-8")
    write_records(server.root / "records")
    assert read_all([server.url("text")], node) == LINES
    assert read_all([server.url("records")], node) == ROWS


def test_http_bodies_are_streamed(node: Node, server: Server) -> None:
    """The first line arrives while the server still holds back the rest of the body."""
    body = "".join(f"line {i}\n" for i in range(60_000))
    (server.root / "big").write_text(body)
    records = iter_input([server.url("slow/big")], "all", node, Cursor())
    assert next(records) == "line 0"
    server.release.set()
    assert sum(1 for _ in records) == 59_999


def test_disco_urls_on_this_node_read_local_files(tmp_path: Path, node: Node) -> None:
    write_records(tmp_path / "data" / "here" / "ab" / "job" / "out")
    (tmp_path / "ddfs" / "vol0").mkdir()
    (tmp_path / "ddfs" / "vol0" / "blob").write_text("ddfs blob\n")
    assert read_all(["disco://here/disco/here/ab/job/out"], node) == ROWS
    assert read_all(["disco://here/ddfs/vol0/blob"], node) == ["ddfs blob"]


def test_disco_urls_on_other_nodes_are_fetched_over_http(node: Node, server: Server) -> None:
    write_records(server.root / "disco" / "other" / "ab" / "job" / "out")
    assert read_all(["disco://127.0.0.1/disco/other/ab/job/out"], remote(node, server)) == ROWS
    assert server.requests == ["/disco/other/ab/job/out"]


def test_a_port_in_a_disco_url_gives_way_to_the_nodes_disco_port(
    node: Node, server: Server
) -> None:
    # disco://HOST:PORT/... was read at http://HOST:PORT:DISCO_PORT/..., "Name or service
    # not known", retried; Disco's own worker reads it at HOST's DISCO_PORT.
    write_records(server.root / "disco" / "other" / "ab" / "job" / "out")
    url = "disco://127.0.0.1:1/disco/other/ab/job/out"
    assert read_all([url], remote(node, server)) == ROWS
    assert server.requests == ["/disco/other/ab/job/out"]


@pytest.mark.parametrize(
    "path", ["disco://here/other/path", "disco://here/ddfs/../../../../etc/hostname"]
)
def test_a_disco_url_of_this_node_outside_its_directories_is_not_retried(
    node: Node, path: str
) -> None:
    # The same URL fails the same way on every attempt: a master retried it for an hour.
    with pytest.raises(BadURL) as caught:
        read_all([path], node)
    assert not retryable(caught.value)


def test_http_urls_to_this_nodes_disco_port_read_local_files(tmp_path: Path, node: Node) -> None:
    write_records(tmp_path / "data" / "here" / "out")
    assert read_all([f"http://here:{node.disco_port}/disco/here/out"], node) == ROWS


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("disco://here/elsewhere/file", "must start with disco/ or ddfs/"),
        ("disco://here/disco/../../etc/passwd", "points outside disco_data"),
        ("disco://here/disco/missing", "cannot open"),
        ("disco://here", "expected SCHEME://HOST/PATH"),
        ("tag://data:logs", "discodsl resolves tags to their blobs before a job runs"),
        ("ftp://host/file", "unsupported URL scheme"),
        ("dir://here/disco/index", "read it with read_index or iter_input"),
        ("", "names no file"),
    ],
)
def test_bad_urls_are_data_errors_saying_what_to_do(node: Node, url: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as caught:
        open_url(url, node)
    assert caught.value.url == url


def test_local_disco_url_needs_the_data_directory(node: Node) -> None:
    bare = Node(host="here")
    with pytest.raises(DataError, match="disco_data is unknown"):
        open_url("disco://here/disco/file", bare)


def test_text_that_is_not_utf8_names_the_line(tmp_path: Path, node: Node) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"fine\nalso fine\ncaf\xe9\n")
    cursor = Cursor()
    with pytest.raises(
        DataError, match=r"record 2 \(line 3, bytes 18-19\) is not valid UTF-8"
    ) as caught:
        list(iter_input([str(path)], "all", node, cursor))
    assert str(path) in str(caught.value)
    assert "or read it in its encoding with a reader, e.g. reader=lambda" in str(caught.value)
    assert caught.value.span == (18, 19)
    assert caught.value.record == 2
    # the same bytes would fail again: not retried (a Disco master pauses 14 s or more
    # before each retry), nor read from another replica
    assert isinstance(caught.value, MalformedRecord) and not retryable(caught.value)


def expected_lines(data: bytes) -> list[str]:
    """What a text input's records are: its lines, split at ``\\n`` only, each without its
    ``\\n`` and one ``\\r`` before it (a last line may have no ``\\n``, and then keeps a
    ``\\r`` it ends with: the README's "a lone ``\\r`` stays in the line")."""
    *ended, last = data.decode("utf-8").split("\n")
    return [line.removesuffix("\r") for line in ended] + ([last] if last else [])


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"a\nb\r", ["a", "b\r"]),
        (b"a\n\r", ["a", "\r"]),
        (b"a\r", ["a\r"]),
        (b"a\rb\r", ["a\rb\r"]),
        (b"a\r\nb\r\n", ["a", "b"]),
    ],
)
def test_a_lone_cr_at_the_end_of_a_file_stays_in_its_line(
    tmp_path: Path, node: Node, data: bytes, lines: list[str]
) -> None:
    path = tmp_path / "cr.txt"
    path.write_bytes(data)
    assert read_all([str(path)], node) == lines


PIECES = ["a", "é", "✓", "\U0001f600", "\n", "\r", "\r\n", "\x0b", "\u2028"]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(PIECES)))
def test_text_lines_across_small_reads(
    tmp_path: Path, node: Node, monkeypatch: pytest.MonkeyPatch, pieces: list[str]
) -> None:
    """Lines are decoded a read at a time: cut anywhere (reads of 3 bytes here, inside
    characters and between \\r and \\n), the lines are the same."""
    from discodsl.worker import inputs

    monkeypatch.setattr(inputs, "_READ_BUFFER", 3)
    data = "".join(pieces).encode()
    path = tmp_path / "small-reads.txt"
    path.write_bytes(data)
    assert read_all([str(path)], node) == expected_lines(data)


def test_text_lines_longer_than_a_read(tmp_path: Path, node: Node) -> None:
    long = "x" * 200_000
    data = f"{long}\r\nshort\n{long}é{long}\n\n{long}".encode()
    path = tmp_path / "long-lines.txt"
    path.write_bytes(data)
    assert read_all([str(path)], node) == expected_lines(data)


def test_text_not_utf8_in_a_later_read_names_the_line_after_the_ones_before(
    tmp_path: Path, node: Node
) -> None:
    """The bad byte is 100 KB in: its line number and bytes count every read before, and the
    lines before it are given before the error."""
    good = b"".join(b"line %d\n" % i for i in range(20_000))
    path = tmp_path / "late-latin1.txt"
    path.write_bytes(good + b"caf\xe9\nnever read\n")
    given: list[str] = []
    with pytest.raises(
        DataError, match=r"record 20000 \(line 20001, bytes \d+-\d+\) is not valid"
    ) as caught:
        given.extend(iter_input([str(path)], "all", node, Cursor()))
    assert caught.value.span == (len(good) + 3, len(good) + 4)
    assert caught.value.record == 20_000
    assert given == [f"line {i}" for i in range(20_000)]


def test_text_ending_inside_a_character_names_the_last_line(tmp_path: Path, node: Node) -> None:
    path = tmp_path / "cut.txt"
    path.write_bytes(b"one\ntwo \xe2\x9c")
    with pytest.raises(
        DataError, match=r"record 1 \(line 2, bytes 8-10\) .*unexpected end of data"
    ):
        read_all([str(path)], node)


def test_text_line_past_the_limit_is_refused(
    tmp_path: Path, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    from discodsl.worker import inputs

    monkeypatch.setattr(inputs, "MAX_TEXT_LINE", 100_000)
    path = tmp_path / "binary.bin"
    path.write_bytes(b"first\n" + b"y" * 300_000 + b"\n")
    with pytest.raises(DataError, match=r"a line \(from byte 6\) is longer than 100000") as caught:
        read_all([str(path)], node)
    assert caught.value.span[0] == 6
    assert isinstance(caught.value, MalformedRecord) and not retryable(caught.value)


@pytest.mark.parametrize("before", [0, 65_000, 131_071])
@pytest.mark.parametrize("extra", [-1, 0, 1, 1000, 65_535])
@pytest.mark.parametrize("end", [b"\n", b"\r\n", b""])
def test_the_text_line_limit_is_exact_wherever_the_line_is(
    tmp_path: Path, node: Node, monkeypatch: pytest.MonkeyPatch, before: int, extra: int, end: bytes
) -> None:
    # Only the bytes still waiting for a newline were held to it, after each block read: a
    # line up to 64 KiB past it passed, or not, by where it started (probe DY F1).
    from discodsl.worker import inputs

    monkeypatch.setattr(inputs, "MAX_TEXT_LINE", 100_000)
    path = tmp_path / "lines.txt"
    whole, rest = divmod(before, 1000)  # short lines up to byte ``before``
    head = (b"x" * 999 + b"\n") * whole + (b"x" * (rest - 1) + b"\n" if rest else b"")
    lines_before = whole + (1 if rest else 0)
    after = end + b"last\n" if end else b""  # none: the file's last line
    path.write_bytes(head + b"y" * (100_000 + extra) + after)
    if extra <= 0:
        assert len(read_all([str(path)], node)) == lines_before + 1 + (1 if end else 0)
        return
    with pytest.raises(DataError, match=f"a line \\(from byte {before}\\) is longer than 100000"):
        read_all([str(path)], node)


def test_cursor_follows_the_record_being_read(tmp_path: Path, node: Node) -> None:
    path = write_records(tmp_path / "records")
    cursor = Cursor()
    assert (cursor.url, cursor.record) == ("", -1)
    for index, record in enumerate(iter_input([str(path)], "all", node, cursor)):
        assert record == ROWS[index]
        assert (cursor.url, cursor.record) == (str(path), index)


def test_cursor_follows_records_across_hunks_blocks_and_files(
    tmp_path: Path, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record files a hunk at a time, text a read at a time, several files of a task: the
    record number is the one last taken from the file being read; an empty file has -1."""
    from discodsl.worker import inputs

    monkeypatch.setattr(inputs, "_READ_BUFFER", 16)  # text in blocks of a line or two
    records = write_records(tmp_path / "records", hunk_size=50)  # a few records a hunk
    text = tmp_path / "text.txt"
    text.write_text("".join(f"line {i}\n" for i in range(40)))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    cursor = Cursor()
    seen = []
    for path in (records, text, empty):
        for record in iter_input([str(path)], "all", node, cursor):
            seen.append((cursor.url, cursor.record))
            assert record == (ROWS[cursor.record] if path == records else f"line {cursor.record}")
    assert seen == [(str(records), i) for i in range(300)] + [(str(text), i) for i in range(40)]
    assert (cursor.url, cursor.record) == (str(empty), -1)


# -- dir:// indexes ----------------------------------------------------------------


def make_index(tmp_path: Path, node: Node, server: Server) -> tuple[str, dict[int, list[Any]]]:
    """A local index of three labels: two local record files, one on another node."""
    rows = {label: [(f"label-{label}", i) for i in range(50)] for label in (0, 1, 2)}
    a = write_records(tmp_path / "data" / "here" / "job" / "a", rows[0]).stat().st_size
    b = write_records(tmp_path / "data" / "here" / "job" / "b", rows[1]).stat().st_size
    c = write_records(server.root / "disco" / "other" / "job" / "c", rows[2]).stat().st_size
    index = tmp_path / "data" / "here" / "job" / ".disco" / "map-0.results"
    index.parent.mkdir()
    index.write_text(
        f"0 disco://here/disco/here/job/a {a}\n"
        f"2 disco://127.0.0.1/disco/other/job/c {c}\n"
        f"1 disco://here/disco/here/job/b {b}\n"
    )
    return "dir://here/disco/here/job/.disco/map-0.results", rows


def test_cursor_follows_each_file_of_an_index(tmp_path: Path, node: Node, server: Server) -> None:
    url, _ = make_index(tmp_path, node, server)
    cursor = Cursor()
    records = iter_input([url], "all", remote(node, server), cursor)
    seen = [(cursor.url[-1], cursor.record) for _ in records]
    assert seen == [(name, i) for name in "acb" for i in range(50)]


def test_dir_index_is_filtered_by_label(tmp_path: Path, node: Node, server: Server) -> None:
    url, rows = make_index(tmp_path, node, server)
    here = remote(node, server)
    assert read_all([url], here, label=1) == rows[1]
    assert read_all([url], here, label=2) == rows[2]
    assert read_all([url], here, label=7) == []
    assert read_all([url], here, label="all") == rows[0] + rows[2] + rows[1]


def test_read_index_lists_the_entries(tmp_path: Path, node: Node, server: Server) -> None:
    url, _ = make_index(tmp_path, node, server)
    size = (tmp_path / "data" / "here" / "job" / "a").stat().st_size  # so are b's and c's
    assert read_index(url, node) == [
        (0, "disco://here/disco/here/job/a", size),
        (2, "disco://127.0.0.1/disco/other/job/c", size),
        (1, "disco://here/disco/here/job/b", size),
    ]


@pytest.mark.parametrize("change", ["emptied", "cut", "grown"])
def test_a_listed_file_whose_size_is_not_the_indexs_is_a_data_error(
    tmp_path: Path, node: Node, server: Server, change: str
) -> None:
    """An index gives each file's size: a file emptied or cut at a hunk's end (no closing
    hunk to miss when emptied) read short without a word."""
    url, _ = make_index(tmp_path, node, server)
    listed = tmp_path / "data" / "here" / "job" / "a"
    data = listed.read_bytes()
    listed.write_bytes({"emptied": b"", "cut": data[:-14], "grown": data + data}[change])
    with pytest.raises(
        DataError, match=r"/job/a is \d+ bytes, where the index .* says \d+"
    ) as info:
        read_all([url], node, label=0)
    # "re-run that task": a user runs jobs, not tasks (probe DO S2)
    assert str(info.value).endswith("since its task wrote it: run the job that wrote it again")


@pytest.mark.parametrize("change", ["emptied", "cut", "another_whole_file"])
def test_a_listed_file_over_http_whose_size_is_not_the_indexs_is_a_data_error(
    tmp_path: Path, node: Node, server: Server, change: str
) -> None:
    # Over HTTP only the body's own Content-Length was checked: a result file emptied, or
    # replaced by a shorter whole one, gave no records without a word (probe CV F4).
    url, _ = make_index(tmp_path, node, server)
    listed = server.root / "disco" / "other" / "job" / "c"
    data = listed.read_bytes()
    shorter = {"emptied": b"", "cut": data[:-14], "another_whole_file": b""}[change]
    if change == "another_whole_file":
        shorter = write_records(tmp_path / "whole", [("x", 1)]).read_bytes()
    listed.write_bytes(shorter)
    with pytest.raises(DataError, match=r"/job/c is \d+ bytes, where the index .* says \d+"):
        read_all([url], remote(node, server), label=2)


def test_a_file_an_index_listed_is_read_at_the_size_it_gave(tmp_path: Path, node: Node) -> None:
    # A job given an earlier job's files (the indexes expanded) checks each file's size as
    # a read through the index does (probes CW F19, CX F1); a replica of another size is
    # failed over.
    whole = write_records(tmp_path / "whole")
    cut = tmp_path / "cut"
    cut.write_bytes(write_records(tmp_path / "short", ROWS[:1]).read_bytes())
    size = whole.stat().st_size
    listed = {f"file://{path}": (size, "the index dir://here/x.results") for path in (whole, cut)}
    replicas = [f"file://{cut}", f"file://{whole}"]
    assert list(iter_input(replicas[1:], 0, node, Cursor(), listed=listed)) == ROWS
    assert list(iter_input(replicas, 0, node, Cursor(), listed=listed)) == ROWS
    with pytest.raises(DataError, match=r"/cut is \d+ bytes, where the index dir://here/x"):
        list(iter_input(replicas[:1], 0, node, Cursor(), listed=listed))
    assert list(iter_input(replicas[:1], 0, node, Cursor())) == ROWS[:1]  # nothing listed
    # Text a job listed is read as lines, as Disco's client reads it: a classic Disco job
    # may write text outputs (refusing them was a regression: probe DD F8).
    cut.write_bytes(b"x" * (size - 1) + b"\n")
    assert list(iter_input(replicas[:1], 0, node, Cursor(), listed=listed)) == ["x" * (size - 1)]


def test_an_empty_index_is_a_data_error(tmp_path: Path, node: Node, server: Server) -> None:
    # Disco writes an index at a task's first local output: an emptied one gave no records
    # without a word (probe CV F4).
    url, _ = make_index(tmp_path, node, server)
    (tmp_path / "data" / "here" / "job" / ".disco" / "map-0.results").write_bytes(b"")
    with pytest.raises(DataError, match=r"map-0.results: the index is empty"):
        read_all([url], remote(node, server), label="all")


def test_an_index_listing_a_file_twice_is_a_data_error(
    tmp_path: Path, node: Node, server: Server
) -> None:
    url, _ = make_index(tmp_path, node, server)
    index = tmp_path / "data" / "here" / "job" / ".disco" / "map-0.results"
    first = index.read_text().splitlines()[0]
    index.write_text(index.read_text() + first + "\n")
    with pytest.raises(DataError, match="lists disco://here/disco/here/job/a twice"):
        read_all([url], node, label=0)


def test_dir_index_on_another_node_is_fetched_over_http(node: Node, server: Server) -> None:
    size = write_records(server.root / "disco" / "other" / "job" / "c").stat().st_size
    index = server.root / "disco" / "other" / "job" / "index.gz"
    index.write_bytes(gzip.compress(b"5 disco://127.0.0.1/disco/other/job/c %d\n" % size))
    url = "dir://127.0.0.1/disco/other/job/index.gz"
    entry = (5, "disco://127.0.0.1/disco/other/job/c", size)
    assert read_index(url, remote(node, server)) == [entry]
    assert read_all([url], remote(node, server), label=5) == ROWS


@pytest.mark.parametrize(
    "line",
    [
        "0 disco://here/a\n",
        "x disco://here/a 10\n",
        "0 disco://here/a ten\n",
        "-1 disco://here/a 10\n",
        "0 disco://here/a 10 extra\n",
    ],
)
def test_malformed_index_lines_are_quoted_with_their_number(
    tmp_path: Path, node: Node, line: str
) -> None:
    (tmp_path / "data" / "index").write_text("0 disco://here/disco/ok 1\n" + line)
    with pytest.raises(DataError, match="index line 2 is malformed") as caught:
        read_index("dir://here/disco/index", node)
    assert repr(line.encode())[2:-4] in str(caught.value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.from_regex(r"[a-z0-9/_.%-]{1,30}", fullmatch=True)),
        min_size=1,  # an empty index is refused
        max_size=40,
    ),
    st.integers(0, 13),
    st.sampled_from([b"\n", b"\r\n"]),
    st.booleans(),
)
def test_an_index_read_for_one_label_gives_that_labels_entries(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[tuple[int, str]],
    label: int,
    end: bytes,
    last_ended: bool,
) -> None:
    """A reduce task reads every map task's index for its own label: searched for it, not
    parsed whole (which made a job's cost grow with the square of its partitions), with
    the same entries in the same order as a whole parse gives."""
    data = end.join(
        b"%d disco://h/%s %d" % (n, name.encode(), i) for i, (n, name) in enumerate(lines)
    )
    if data and last_ended:
        data += end
    root = tmp_path_factory.mktemp("index")
    (root / "index").write_bytes(data)
    here = Node(host="here", disco_data=str(root))
    whole = read_index("dir://here/disco/index", here)
    assert read_index("dir://here/disco/index", here, label) == [e for e in whole if e[0] == label]


@pytest.mark.parametrize(
    "content",
    [
        b"0 disco://here/a 1\n1 disco://here/b ten\n",  # the label's own line is malformed
        b"0 disco://here/a 1\n\n1 disco://here/b 10 extra\n",  # a blank line, then it
        b"hello there world\n",  # not an index at all
        b"0 disco://here/a 1\n1 disco://" + b"x" * 100_000 + b" 1\n",  # an overlong line
    ],
)
def test_an_index_read_for_one_label_checks_that_labels_lines(
    tmp_path: Path, node: Node, content: bytes
) -> None:
    (tmp_path / "data" / "index").write_bytes(content)
    with pytest.raises(DataError, match=r"index line \d+ is (malformed|longer than)"):
        read_index("dir://here/disco/index", node, 1)


def test_overlong_index_lines_are_refused(tmp_path: Path, node: Node) -> None:
    (tmp_path / "data" / "index").write_bytes(b"0 disco://" + b"x" * 100_000 + b" 1\n")
    with pytest.raises(DataError, match="index line 1 is longer than"):
        read_index("dir://here/disco/index", node)


# -- failover --------------------------------------------------------------------


def test_failover_skips_a_failing_and_a_stalling_replica(node: Node, server: Server) -> None:
    write_records(server.root / "records")
    cursor = Cursor()
    replicas = [server.url("fail/records"), server.url("stall/records"), server.url("records")]
    assert list(iter_input(replicas, "all", node, cursor)) == ROWS
    assert (cursor.url, cursor.record) == (server.url("records"), len(ROWS) - 1)


def test_failover_mid_file_resumes_without_duplicates(tmp_path: Path, node: Node) -> None:
    whole = write_records(tmp_path / "whole", hunk_size=500)
    data = whole.read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(data[: len(data) // 2])
    assert read_all([str(cut), str(whole)], node) == ROWS


def test_failover_mid_http_body(node: Node, server: Server) -> None:
    write_records(server.root / "records", hunk_size=500)
    (server.root / "text").write_text(TEXT * 1000)
    assert read_all([server.url("cut/records"), server.url("records")], node) == ROWS
    lines = read_all([server.url("cut/text"), server.url("text")], node)
    assert lines == read_all([server.url("text")], node)


def test_a_stalled_http_body_is_said_to_fail_at_or_after_the_bytes_counted(
    node: Node, server: Server
) -> None:
    """A read that stalls part way loses the count of what it took: 100 KB had come, and
    the error said byte 0."""
    (server.root / "text").write_text(TEXT * 5000)
    impatient = dataclasses.replace(node, timeout=0.5)
    with pytest.raises(DataError, match=r"reading failed at or after byte \d+: ") as caught:
        read_all([server.url("slow/text")], impatient)
    assert retryable(caught.value)


def test_a_get_whose_connection_is_dropped_is_sent_again(node: Node, server: Server) -> None:
    write_records(server.root / "records", hunk_size=500)
    assert read_all([server.url("drop/2/records")], node) == ROWS
    assert server.dropped == {"records": 3}  # two dropped, the third answered


def test_a_get_dropped_every_time_fails_saying_how_often_it_was_tried(
    node: Node, server: Server
) -> None:
    write_records(server.root / "records", hunk_size=500)
    with pytest.raises(DataError, match=r"Remote end closed.*; tried 3 times; check that"):
        read_all([server.url("drop/9/records")], node)
    assert server.dropped == {"records": 3}


@pytest.mark.parametrize("code", ["503", "403"])
def test_a_get_answered_busy_is_sent_again_after_a_pause(
    node: Node, server: Server, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Disco node answers 503, or 403 "Disco node is busy", when it is loaded (its file
    server's gate): reading a job's results failed for good on the first such answer."""
    monkeypatch.setattr(opening, "BUSY_PAUSES", (0.01, 0.01, 0.01))
    write_records(server.root / "records", hunk_size=500)
    assert read_all([server.url(f"busy/{code}/3/records")], node) == ROWS
    assert server.dropped == {"records": 4}  # three busy answers, then the file
    server.dropped.clear()
    with pytest.raises(DataError, match=rf"HTTP {code} .*\('(Maximum number|Disco node is)"):
        read_all([server.url(f"busy/{code}/4/records")], node)
    assert server.dropped == {"records": 4}  # asked once, then after each pause
    server.dropped.clear()
    with pytest.raises(DataError, match=r"HTTP 403 .*\('Forbidden'\)"):  # no file: not busy
        read_all([server.url("busy/403/99/records")], node)
    assert server.dropped == {"records": 1}


def test_a_get_answered_with_an_error_is_not_sent_again(node: Node, server: Server) -> None:
    with pytest.raises(DataError, match="HTTP 500"):
        read_all([server.url("fail/records")], node)
    assert server.requests == ["/fail/records"]


def test_when_every_replica_fails_the_error_names_each(
    tmp_path: Path, node: Node, server: Server
) -> None:
    replicas = [
        server.url("fail/records"),
        server.url("stall/records"),
        str(tmp_path / "missing"),
        "tag://data:logs",
    ]
    with pytest.raises(DataError) as caught:
        read_all(replicas, node)
    message = str(caught.value)
    assert "could not read any of the 4 replicas" in message
    for url in replicas:
        assert url in message
    assert "HTTP 500" in message
    assert "timed out" in message or "Timeout" in message
    assert "No such file" in message
    assert "resolves tags to their blobs" in message


def test_the_summary_of_every_replica_failing_names_each_with_its_reason(
    node: Node, server: Server
) -> None:
    """The first 600 characters of a task's failure (its summary, as a Disco master's
    events show it) name every replica tried and why it failed, each URL once."""
    replicas = [server.url(f"missing/replica-{n}") for n in range(4)]
    with pytest.raises(DataError) as caught:
        read_all(replicas, node)
    summary = describe(caught.value, stage="map", taskid=0).summary
    assert "characters cut" not in summary
    for url in replicas:
        assert summary.count(url) == 1
    assert summary.count("HTTP 404") == 4


@pytest.mark.parametrize(
    "urls",
    [
        ["tag://data:logs"],
        ["ftp://host/file"],
        ["tag://data:logs", "ddfs://data:logs"],
        ["disco://here"],
        ["http://127.0.0.1:9/q3 final.txt"],  # never sent: it cannot be
        ["http://127.0.0.1:9/caf\u00e9"],
    ],
)
def test_urls_no_worker_can_read_are_not_retried(node: Node, urls: list[str]) -> None:
    """A tag, a scheme no worker reads, a URL missing its path: the same URL fails on
    every retry, and a Disco master pauses 14 s or more before each (100 by default)."""
    with pytest.raises(DataError) as caught:
        read_all(urls, node)
    assert isinstance(caught.value, BadURL) and not retryable(caught.value)


def test_a_bad_url_beside_a_replica_that_fails_for_now_is_retried(
    node: Node, server: Server
) -> None:
    with pytest.raises(DataError) as caught:
        read_all(["tag://data:logs", server.url("fail/records")], node)
    assert retryable(caught.value)
    write_records(server.root / "records")
    assert read_all(["ftp://host/file", server.url("records")], node) == ROWS


def test_a_replica_with_fewer_records_is_not_trusted(tmp_path: Path, node: Node) -> None:
    whole = write_records(tmp_path / "whole", hunk_size=500)
    short = write_records(tmp_path / "short", ROWS[:10])
    data = whole.read_bytes()
    (tmp_path / "cut").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="fewer than the") as caught:
        read_all([str(tmp_path / "cut"), str(short)], node)
    assert str(short) in str(caught.value)


def test_no_replicas_or_a_bad_label_is_refused(node: Node) -> None:
    with pytest.raises(DataError, match="no replica URLs"):
        read_all([], node)
    with pytest.raises(ValueError, match="label"):
        read_all(["raw://x"], node, label="some")


def test_byte_ranges_of_a_text_file_cover_every_line_once(tmp_path: Path, node: Node) -> None:
    """Chunks cut at arbitrary offsets: each line read once, by the chunk it starts in."""
    path = tmp_path / "big.txt"
    lines = [f"line {i} " + "x" * (i % 37) for i in range(2000)]
    path.write_text("\n".join(lines) + "\n")
    size = path.stat().st_size
    url = path.resolve().as_uri()
    for cuts in ([0, size], [0, 1, size], [0, 100, 101, 5000, size], list(range(0, size, 997))):
        bounds = sorted(set(cuts) | {size})
        got: list[str] = []
        for start, end in itertools.pairwise(bounds):
            got.extend(iter_input([f"{url}#range={start}-{end}"], 0, node, Cursor()))
        assert got == lines, cuts


def test_a_chunk_of_a_split_file_names_lines_and_bytes_of_the_whole_file(
    tmp_path: Path, node: Node
) -> None:
    """A big file is cut into byte ranges for the local runner's cores: an error, and the
    record a failing stage was on, counted from the chunk's start sent the user to another
    line (tutorial 4 reads ``failure.record`` as the file's line)."""
    path = tmp_path / "big.txt"
    lines = [f"line {i}" for i in range(3000)]
    lines[2500] = "bad \udcff byte"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
    bad = path.read_bytes().index(b"\xff")
    url = f"{path.resolve().as_uri()}#range=10000-{path.stat().st_size}"
    with pytest.raises(MalformedRecord) as info:
        list(iter_input([url], 0, node, Cursor()))
    assert f"record 2500 (line 2501, bytes {bad}-{bad + 1})" in str(info.value)
    assert info.value.record == 2500 and info.value.span == (bad, bad + 1)
    cursor = Cursor()
    records = iter_input([url], 0, node, cursor)
    first = next(records)
    assert cursor.record == lines.index(first)  # the file's own line number, 0-based
    assert lines.index(first) > 0


def test_a_range_of_a_file_that_fails_to_read_closes_it(node: Node) -> None:
    """A ranged file whose reading fails (an I/O error: here /proc/self/mem, which refuses a
    read at address 0) is a DataError, and its descriptor is closed, not left to the error's
    traceback."""
    with pytest.raises(DataError, match="cannot read /proc/self/mem") as info:
        list(iter_input(["file:///proc/self/mem#range=1-2"], 0, node, Cursor()))
    assert not [fd for fd in os.listdir("/proc/self/fd") if _names_mem(f"/proc/self/fd/{fd}")]
    assert info.value.url == "file:///proc/self/mem#range=1-2"


def _names_mem(link: str) -> bool:
    try:
        return os.readlink(link).endswith("/mem")
    except OSError:  # the directory's own descriptor, closed since it was listed
        return False


def test_file_urls_are_percent_decoded(tmp_path: Path, node: Node) -> None:
    path = tmp_path / "a name with spaces.txt"
    path.write_text("hello\n")
    assert list(iter_input([path.resolve().as_uri()], 0, node, Cursor())) == ["hello"]


def test_unknown_fragment_is_refused(tmp_path: Path, node: Node) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x\n")
    with pytest.raises(DataError, match="#range=START-END"):
        list(iter_input([path.resolve().as_uri() + "#lines=1-2"], 0, node, Cursor()))


def test_cursor_follows_records_without_per_record_code(tmp_path: Path, node: Node) -> None:
    path = tmp_path / "f.txt"
    path.write_text("a\nb\nc\n")
    cursor = Cursor()
    reader = iter_input([str(path)], 0, node, cursor)
    assert cursor.record == -1
    assert next(reader) == "a" and cursor.record == 0 and cursor.url == str(path)
    assert next(reader) == "b" and cursor.record == 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_index_parser_on_random_bytes_gives_entries_or_a_data_error(data: bytes) -> None:
    """Whatever an index file holds: a list of entries or a DataError, nothing else."""
    import io as _io

    from discodsl.worker.inputs import _parse_index

    stream = _io.BufferedReader(_io.BytesIO(data))  # type: ignore[arg-type]
    try:
        entries = _parse_index(stream, "dir://fuzz/disco/index")
    except DataError as exc:
        assert "dir://fuzz/disco/index" in str(exc)
    else:
        assert all(isinstance(label, int) and isinstance(url, str) for label, url, _ in entries)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, 9), st.text(min_size=1, max_size=20), st.integers(0, 99)),
        max_size=20,
    ),
    st.integers(0, 400),
    st.binary(max_size=8),
)
def test_index_parser_on_mutated_indexes(
    entries: list[tuple[int, str, int]], at: int, junk: bytes
) -> None:
    import io as _io

    from discodsl.worker.inputs import _parse_index

    good = "".join(
        f"{label} disco://h/{name.replace(' ', '_')} {size}\n"
        for label, name, size in entries
        if name.strip()
    ).encode()
    mutated = good[:at] + junk + good[at:]
    try:
        parsed = _parse_index(_io.BufferedReader(_io.BytesIO(mutated)), "dir://h/i")  # type: ignore[arg-type]
    except DataError as exc:
        assert "dir://h/i" in str(exc)
    else:
        assert all(isinstance(size, int) and size >= 0 for _, _, size in parsed)


def test_a_range_of_a_file_cut_shorter_since_the_ranges_were_taken_is_a_data_error(
    tmp_path: Path, node: Node
) -> None:
    # A big input cut by logrotate's copytruncate while a local run read it: the ranges
    # past its new end read as empty, and the run counted 300,001 of 400,000 lines.
    path = tmp_path / "log.txt"
    path.write_text("".join(f"line {n:04d}\n" for n in range(1000)))  # 10 bytes a line
    url = f"{path.resolve().as_uri()}#range=5000-10000"
    os.truncate(path, 3000)
    with pytest.raises(
        DamagedInput,
        match=r"3000 bytes long, shorter than the 10000 this range reads to, as it was",
    ) as info:
        list(iter_input([url], 0, node, Cursor()))
    assert "changed while the job ran" in str(info.value)
    assert "or the range was given past its end" in str(info.value)  # a user's #range=
    path.write_text("".join(f"line {n:06d}\n" for n in range(400_000)))  # 4.8 MB
    records = iter_input([f"{path.resolve().as_uri()}#range=0-2400000"], 0, node, Cursor())
    assert next(records) == "line 000000"
    os.truncate(path, 2_000_000)  # while it is read, past what a read buffers
    # It said the file had 2400000 bytes, where only this range reads to there (probe CT F1).
    with pytest.raises(
        DataError, match="is 2000000 bytes long now, shorter than the 2400000 this range reads to"
    ):
        list(records)
    os.truncate(path, 0)  # to nothing, as copytruncate leaves it
    with pytest.raises(DataError, match="changed while the job ran"):
        list(iter_input([f"{path.resolve().as_uri()}#range=100-200"], 0, node, Cursor()))


@pytest.mark.parametrize("end", [17_000_000_000_000, 17_592_186_044_416, 2**63 - 1])
def test_a_range_past_what_a_file_system_can_seek_is_past_the_files_end(
    tmp_path: Path, node: Node, end: int
) -> None:
    # Past ext4's largest offset (16 TiB), a seek failed first: "Invalid argument", retried.
    path = tmp_path / "six.txt"
    path.write_text("line0\nline1\nline2\n")
    url = f"{path.resolve().as_uri()}#range=0-{end}"
    with pytest.raises(DamagedInput, match=rf"18 bytes long, shorter than the {end}"):
        list(iter_input([url], 0, node, Cursor()))


@pytest.mark.parametrize("cut", [2_000_000, 2_000_005, 0])
def test_a_whole_file_cut_shorter_while_it_is_read_is_damaged_input(
    tmp_path: Path, node: Node, cut: int
) -> None:
    # A task reading a whole file (a map with a hook reads it whole) counted a quarter of it
    # when logrotate's copytruncate cut it, without a word; a range of it was refused.
    path = tmp_path / "log.txt"
    path.write_text("".join(f"line {n:06d}\n" for n in range(400_000)))  # 4.8 MB
    for url in (str(path), path.resolve().as_uri()):
        records = iter_input([url], 0, node, Cursor())
        assert next(records) == "line 000000"
        os.truncate(path, cut)  # past what a read buffers; mid-line; to nothing
        with pytest.raises(DamagedInput, match=rf"is {cut} bytes long now, shorter than the "):
            list(records)
        path.write_text("".join(f"line {n:06d}\n" for n in range(400_000)))
    # A file that says it is bigger than what it holds (/sys's say 4096) is read as it is.
    sysfs = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if sysfs.exists() and 0 < len(sysfs.read_bytes()) < sysfs.stat().st_size:
        assert list(iter_input([str(sysfs)], 0, node, Cursor())) == sysfs.read_text().splitlines()
    with path.open("a") as grown:  # one that grows while read is read as far as it went
        records = iter_input([str(path)], 0, node, Cursor())
        assert next(records) == "line 000000"
        grown.write("line 400000\n")
    assert sum(1 for _ in records) == 400_000


def test_a_certificate_that_does_not_verify_is_said_so_and_not_retried(node: Node) -> None:
    # "check that the host is up and reachable", retried: the host was up, and every
    # attempt failed the same way.
    import ssl
    import urllib.error

    from discodsl.worker.opening import _get_failed

    cause = ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate")
    url = "https://127.0.0.1:1/data.txt"
    error = _get_failed(urllib.error.URLError(cause), url, node, url, 1)
    assert isinstance(error, BadURL) and not retryable(error)
    assert "TLS certificate does not verify" in str(error) and "SSL_CERT_FILE" in str(error)
    assert "up and reachable" not in str(error)
    # One trusted but issued for another name: its CA was no help to install.
    cause = ssl.SSLCertVerificationError(
        1,
        "certificate verify failed: IP address mismatch, certificate is not valid for "
        "'127.0.0.1'. (_ssl.c:1006)",
    )
    cause.verify_code = 64  # X509_V_ERR_IP_ADDRESS_MISMATCH
    error = _get_failed(urllib.error.URLError(cause), url, node, url, 1)
    said = str(error)
    assert isinstance(error, BadURL) and "SSL_CERT_FILE" not in said
    assert "the server's certificate does not name 127.0.0.1: give the host by the name" in said


def test_a_read_through_a_proxy_that_is_not_there_names_the_proxy(tmp_path: Path) -> None:
    # "check that the host is up and reachable": the host was, the proxy was not, and
    # only /proxy/ in a long URL told it.
    from tests.http_replay import closed_port

    with closed_port() as port, pytest.raises(DataError) as caught:
        proxy = f"http://127.0.0.1:{port}"
        here = Node(host="", disco_port=8989, proxy=proxy, timeout=2)
        read_all(["disco://node1/disco/node1/ab/job/out"], here)
    said = str(caught.value)
    assert f"DISCO_PROXY={proxy}" in said and "unset DISCO_PROXY" in said, said


@pytest.mark.parametrize("scheme", ["disco", "dir"])
def test_a_nodes_port_that_refuses_names_disco_port(scheme: str) -> None:
    # A wrong DISCO_PORT said to check that the host is up, naming the timeout's setting but
    # not the one that chose the port (probe DP F3).
    from tests.http_replay import closed_port

    with closed_port() as port, pytest.raises(DataError) as caught:
        here = Node(host="", disco_port=port, timeout=2)
        read_all([f"{scheme}://127.0.0.1/disco/node1/ab/job/out"], here)
    said = str(caught.value)
    assert f"and that port {port} (DISCO_PORT) is the one the nodes serve files at" in said


def test_a_nodes_port_that_answers_404_names_disco_port(server: Server) -> None:
    # Another server on DISCO_PORT's port answered 404: "check that the file exists" (DR F3).
    with pytest.raises(DataError) as caught:
        read_all(["disco://127.0.0.1/disco/nowhere"], Node(disco_port=server.port, timeout=2))
    said = str(caught.value)
    assert "answered HTTP 404" in said and f"port {server.port} (DISCO_PORT)" in said, said


def test_a_proxys_http_error_names_the_proxy(node: Node, server: Server) -> None:
    # A proxy's 502 said to check the node.
    here = Node(host="", disco_port=8989, proxy=f"http://127.0.0.1:{server.port}", timeout=2)
    with pytest.raises(DataError) as caught:
        read_all(["disco://node1/disco/node1/ab/job/out"], here)
    said = str(caught.value)
    assert "answered HTTP" in said and "through the proxy DISCO_PROXY=" in said, said


def test_a_stream_asked_to_seek_fails_the_same_way_again_so_is_not_retried() -> None:
    # numpy.load over a reader's stream: io.UnsupportedOperation, an OSError, was retried
    # (101 times on a master) though it fails the same way each time (probe DI F13).
    import io

    assert not retryable(io.UnsupportedOperation("File or stream is not seekable."))
    assert retryable(OSError("connection reset")) and retryable(ConnectionResetError())


@pytest.mark.timeout(30)
@pytest.mark.parametrize("ranged", [False, True], ids=["whole", "ranged"])
def test_a_named_pipe_where_an_input_was_is_refused_not_waited_on(
    tmp_path: Path, ranged: bool
) -> None:
    # A file replaced by a FIFO after the run started: its task blocked in open() for good
    # (probe DT F14). The client refuses FIFOs given as inputs; a worker now does too.
    fifo = tmp_path / "in.txt"
    os.mkfifo(fifo)
    url = fifo.as_uri() + ("#range=0-10" if ranged else "")
    with pytest.raises(DataError) as caught:
        open_url(url, Node())
    assert f"{fifo} is a named pipe (FIFO), not a file" in str(caught.value), caught.value
