"""The record file format: Disco's golden files, round trips checked by an
independent decoder, corruption, fuzzing, and the worker-side import rule."""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import pickletools
import struct
import sys
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from discodsl.worker import records
from discodsl.worker.errors import DamagedInput, DataError, MalformedRecord
from discodsl.worker.records import (
    RecordWriter,
    is_record_file_prefix,
    read_hunks,
    read_records,
)

GOLDEN_RECORDS: list[tuple[Any, Any]] = [
    ("apple", 3),
    (b"bytes-key", [1, 2, 3]),
    (7, {"nested": (1.5, None)}),
    ("unicodé ✓", "value"),
    ("", 0),
]
GOLDEN_FILES = ["compressed-level2.disco", "uncompressed.disco", "small-hunks.disco"]
URL = "disco://node/disco/node/ab/job/map-0-0"

Loader = Callable[[bytes], list[Any]]


@pytest.fixture(params=["shared_fast", "shared_portable", "each"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Loader:
    """Run a test with each hunk loader (every file here is written with protocol <= 3)."""
    chosen: Loader = getattr(records, f"_load_{request.param}")
    monkeypatch.setattr(records, "_load", chosen)
    return chosen


# -- an independent decoder, written from the format description --------------


def decode_hunks(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(version byte, flag, uncompressed hunk)`` per hunk, up to EOF or a 0 length."""
    hunks = []
    offset = 0
    while offset < len(data):
        version, flag, crc, length = struct.unpack_from("<BBIQ", data, offset)
        offset += 14
        if length == 0:
            hunks.append((version, flag, b""))
            break
        stored = data[offset : offset + length]
        offset += length
        hunk = zlib.decompress(stored) if flag == 1 else stored
        if zlib.crc32(hunk) != crc:
            raise ValueError("crc mismatch")
        hunks.append((version, flag, hunk))
    return hunks


def decode_records(data: bytes) -> list[Any]:
    """Every record, each unpickled by a fresh ``pickle.load``, so each must stand alone."""
    found = []
    for _, _, hunk in decode_hunks(data):
        stream = io.BytesIO(hunk)
        while stream.tell() < len(hunk):
            found.append(pickle.load(stream))
    return found


def write_file(path: Path, rows: list[tuple[Any, Any]], **options: Any) -> bytes:
    with RecordWriter(str(path), **options) as writer:
        writer.write_many(rows)
    return path.read_bytes()


def read_bytes(data: bytes, url: str = URL, **options: Any) -> list[Any]:
    return list(read_records(io.BytesIO(data), url, **options))


# -- Disco's own files ----------------------------------------------------------


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_golden_files_read_to_the_fifteen_records(
    reference: Path, name: str, loader: Loader
) -> None:
    path = reference / "records" / name
    with open(path, "rb") as stream:
        assert list(read_records(stream, str(path))) == GOLDEN_RECORDS * 3


def test_golden_empty_file_has_no_records(reference: Path, loader: Loader) -> None:
    with open(reference / "records" / "empty.disco", "rb") as stream:
        assert list(read_records(stream, "empty")) == []


def test_golden_files_match_their_manifest(reference: Path) -> None:
    manifest = json.loads((reference / "records" / "manifest.json").read_text())
    for name, facts in manifest.items():
        assert (reference / "records" / name).stat().st_size == facts["bytes"]


def test_empty_compressed_file_is_byte_identical_to_discos(reference: Path, tmp_path: Path) -> None:
    ours = write_file(tmp_path / "empty", [], compress=True)
    assert ours == (reference / "records" / "empty.disco").read_bytes()


def test_the_fast_loader_is_used_on_cpython() -> None:
    if sys.implementation.name == "cpython":
        assert records._load_shared is records._load_shared_fast


# -- round trips ----------------------------------------------------------------

SHARED = [1, 2]
ROW_SETS: dict[str, list[tuple[Any, Any]]] = {
    "empty": [],
    "golden": GOLDEN_RECORDS,
    "many": [(f"key-{i}", i) for i in range(500)],
    # The same objects in many records: each pickle must still stand alone.
    "shared": [("k", SHARED), ("k", [SHARED, SHARED]), (SHARED, "k")] * 5,
    "big": [(b"x" * 200_000, 1), ("after", b"y" * 70_000)],
}


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("hunk_size", [1, 10, 100, 1 << 20])
@pytest.mark.parametrize("rows", list(ROW_SETS), ids=list(ROW_SETS))
def test_written_files_decode_independently_and_read_back(
    tmp_path: Path, compress: bool, hunk_size: int, rows: str, loader: Loader
) -> None:
    expected = ROW_SETS[rows]
    data = write_file(tmp_path / "out", expected, compress=compress, hunk_size=hunk_size)
    hunks = decode_hunks(data)
    assert all(version == 0x81 and flag == int(compress) for version, flag, _ in hunks)
    assert hunks[-1][2] == b"", "a file ends with one hunk of no records"
    assert all(hunk for _, _, hunk in hunks[:-1]), "only the closing hunk is empty"
    assert decode_records(data) == expected
    assert read_bytes(data) == expected


def test_a_datetime_or_time_keeps_its_fold(tmp_path: Path) -> None:
    # Protocol 3 pickles a datetime without its fold (the second of two equal wall times,
    # as a clock goes back): an aware one then names another instant.
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("America/New_York")
    moments = [
        datetime(2021, 11, 7, 1, 30, fold=1, tzinfo=zone),
        datetime(2000, 1, 1, fold=1),
        time(1, 30, fold=1),
        datetime(2021, 11, 7, 1, 30, tzinfo=zone),
        (datetime(2000, 1, 1, fold=1), [time(2, fold=1)]),
    ]
    data = write_file(tmp_path / "out", [(moment, moment) for moment in moments])
    back = read_bytes(data)
    assert back == [(moment, moment) for moment in moments]
    assert [repr(key) for key, _ in back] == [repr(moment) for moment in moments]
    assert back[0][1].timestamp() == moments[0].timestamp()


def test_types_pickled_through_copyreg_still_are(tmp_path: Path) -> None:
    # A pickler's own dispatch_table replaces copyreg's: re.Pattern is pickled only there.
    import copyreg
    import re

    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

    copyreg.pickle(Point, lambda point: (int, (point.x,)))  # a user's registration
    try:
        data = write_file(tmp_path / "out", [("p", re.compile("a+")), ("q", Point(3))])
    finally:
        copyreg.dispatch_table.pop(Point)
    assert read_bytes(data) == [("p", re.compile("a+")), ("q", 3)]


def test_shared_objects_keep_their_identity_within_a_record(tmp_path: Path) -> None:
    data = write_file(tmp_path / "out", [("k", [SHARED, SHARED])])
    ((_, value),) = read_bytes(data)
    assert value[0] is value[1]


@pytest.mark.parametrize("compress", [False, True])
def test_check_hunks_passes_a_whole_file_and_names_the_hunk_a_flipped_byte_is_in(
    tmp_path: Path, compress: bool
) -> None:
    path = tmp_path / "f"
    with RecordWriter(str(path), compress=compress, hunk_size=1000) as writer:
        writer.write_many((f"key{i}", i) for i in range(2000))
    with open(path, "rb") as stream:
        records.check_hunks(stream, "file://f")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with open(path, "rb") as stream, pytest.raises(DamagedInput, match=r"f: bad hunk at bytes \["):
        records.check_hunks(stream, "file://f")  # not retried: another replica may be whole


def test_a_hunk_is_flushed_once_it_passes_hunk_size(tmp_path: Path) -> None:
    rows = [(f"key-{i}", i) for i in range(100)]
    data = write_file(tmp_path / "out", rows, hunk_size=100)
    sizes = [len(hunk) for _, _, hunk in decode_hunks(data)]
    assert all(size > 100 for size in sizes[:-2]), sizes
    assert all(size < 150 for size in sizes), "flushed as soon as it passes, not later"


def test_uncompressed_file_ends_with_a_zero_length_header(tmp_path: Path) -> None:
    data = write_file(tmp_path / "out", GOLDEN_RECORDS)
    assert data[-14:] == struct.pack("<BBIQ", 0x81, 0, 0, 0)


def test_write_and_write_many_mix(tmp_path: Path) -> None:
    path = tmp_path / "out"
    with RecordWriter(str(path), hunk_size=20) as writer:
        writer.write("a", 1)
        writer.write_many([("b", 2), ("c", 3)])
        writer.write("d", 4)
    assert decode_records(path.read_bytes()) == [("a", 1), ("b", 2), ("c", 3), ("d", 4)]


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_files_of_any_pickle_protocol_read_back(protocol: int) -> None:
    """Protocols 4 and 5 number memo entries implicitly: each pickle needs its own Unpickler."""
    rows = ROW_SETS["shared"] + [("k", "k"), ("k", ["k", "k"])] + GOLDEN_RECORDS
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=protocol)
    for row in rows:
        pickler.dump(row)
        pickler.clear_memo()
    data = hunk_bytes(buffer.getvalue()) + hunk_bytes(b"")
    assert decode_records(data) == rows
    assert read_bytes(data) == rows


def test_the_writer_uses_explicit_memo_numbers(tmp_path: Path) -> None:
    """Protocol 3: the fast shared-Unpickler path applies to our own files."""
    data = write_file(tmp_path / "out", [("k", "v")])
    assert data[14:16] == b"\x80\x03"


# -- the writer's file handling -------------------------------------------------


def test_file_appears_only_on_close(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out"
    writer = RecordWriter(str(path))
    writer.write("k", "v")
    assert not path.exists()
    assert (tmp_path / "sub" / "out.partial").exists()
    size = writer.close()
    assert path.stat().st_size == size
    assert not (tmp_path / "sub" / "out.partial").exists()
    assert writer.close() == size, "closing twice returns the same size"


def test_abort_removes_the_partial_file(tmp_path: Path) -> None:
    writer = RecordWriter(str(tmp_path / "out"))
    writer.write("k", "v")
    writer.abort()
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="aborted"):
        writer.write("k", "v")


def test_leaving_with_by_an_exception_aborts(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), RecordWriter(str(tmp_path / "out")) as writer:
        writer.write("k", "v")
        raise RuntimeError("user code failed")
    assert os.listdir(tmp_path) == []


def test_abort_after_close_keeps_the_file(tmp_path: Path) -> None:
    writer = RecordWriter(str(tmp_path / "out"))
    writer.close()
    writer.abort()
    assert os.listdir(tmp_path) == ["out"]


@pytest.mark.parametrize("value", [[1, 2, lambda: 0], (b"z" * 100_000, lambda: 0)])
def test_unpicklable_record_raises_and_leaves_the_writer_whole(tmp_path: Path, value: Any) -> None:
    path = tmp_path / "out"
    with RecordWriter(str(path)) as writer:
        writer.write("before", 1)
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            writer.write("bad", value)
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            writer.write_many([("also-bad", value)])
        writer.write("after", 2)
    assert decode_records(path.read_bytes()) == [("before", 1), ("after", 2)]


def test_a_pair_refused_by_write_many_leaves_what_it_took_to_the_next_refusal(
    tmp_path: Path,
) -> None:
    """write_many took a and b, then refused an item; a record write() then refuses must
    drop only itself (it dropped a and b too: the writer's mark was write_many's start)."""
    path = tmp_path / "out"
    with RecordWriter(str(path), hunk_size=64) as writer:
        writer.write("k" * 40, 0)
        with pytest.raises(TypeError, match="is not a \\(key, value\\) pair"):
            writer.write_many([("x" * 50, 1), ("y", 2), ("z", 3), 42])  # flushes, then refuses
        with pytest.raises((pickle.PicklingError, AttributeError)):
            writer.write("c", lambda: None)
        writer.write("d", 4)
    assert decode_records(path.read_bytes()) == [
        ("k" * 40, 0),
        ("x" * 50, 1),
        ("y", 2),
        ("z", 3),
        ("d", 4),
    ]


def test_a_record_too_big_for_a_hunk_is_refused_as_written_and_the_rest_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers refuse a hunk over MAX_HUNK_SIZE (1 GiB) as damage: a record that big is
    refused by the writer, not written for the next stage to call the file corrupt."""
    monkeypatch.setattr(records, "MAX_HUNK_SIZE", 1000)
    path = tmp_path / "out"
    with RecordWriter(str(path), hunk_size=100) as writer:
        writer.write("small", 1)
        with pytest.raises(records.RecordTooBig, match=r"record of 20\d\d bytes .* at most 1000"):
            writer.write("big", b"x" * 2000)
        with pytest.raises(records.RecordTooBig):
            writer.write_many([("fine", 2), ("big", b"x" * 2000)])
        writer.write("after", 3)
    assert read_bytes(path.read_bytes()) == [("small", 1), ("fine", 2), ("after", 3)]


@pytest.mark.parametrize("how", ["write", "write_many"])
def test_a_record_under_the_hunk_limit_after_others_goes_in_a_hunk_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The records before it and a record of nearly MAX_HUNK_SIZE made a hunk over it: the
    record was refused, though alone it fits, with a size under the limit it named."""
    monkeypatch.setattr(records, "MAX_HUNK_SIZE", 1000)
    path = tmp_path / "out"
    rows = [("small", b"y" * 80), ("big", b"x" * 950), ("after", 3)]
    with RecordWriter(str(path), hunk_size=900) as writer:  # "small" waits in the buffer
        if how == "write":
            for key, value in rows:
                writer.write(key, value)
        else:
            writer.write_many(rows)
    data = path.read_bytes()
    assert read_bytes(data, max_hunk_size=1000) == rows
    assert max(len(hunk) for _, _, hunk in decode_hunks(data)) <= 1000


@pytest.mark.parametrize("rows", [1, 20_000], ids=["fails-on-close", "fails-mid-write"])
def test_no_space_left_is_a_data_error_and_leaves_no_partial_file(
    tmp_path: Path, rows: int
) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    path = tmp_path / "out"
    (tmp_path / "out.partial").symlink_to("/dev/full")
    with (
        pytest.raises(DataError, match="No space left") as caught,
        RecordWriter(str(path), hunk_size=100) as writer,
    ):
        writer.write_many((f"key-{i}", i) for i in range(rows))
    assert str(path) in str(caught.value)
    assert "free space" in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_unwritable_location_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(DataError, match="could not create") as caught:
        RecordWriter(str(tmp_path / "file" / "out"))
    assert str(tmp_path / "file" / "out.partial") in str(caught.value)


@pytest.mark.parametrize("options", [{"level": 10}, {"level": -1}, {"hunk_size": 0}])
def test_bad_writer_options_are_refused(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RecordWriter(str(tmp_path / "out"), **options)
    assert os.listdir(tmp_path) == []


# -- corruption -----------------------------------------------------------------


def hunk_bytes(payload: bytes, *, compress: bool = False, crc: int | None = None) -> bytes:
    stored = zlib.compress(payload) if compress else payload
    crc = zlib.crc32(payload) if crc is None else crc
    return struct.pack("<BBIQ", 0x81, int(compress), crc, len(stored)) + stored


def pickles(*rows: Any, protocol: int = records.PROTOCOL) -> bytes:
    return b"".join(pickle.dumps(row, protocol=protocol) for row in rows)


FIRST = hunk_bytes(pickles(("a", 1), ("b", 2)))
START = len(FIRST)  # every corrupt hunk below is the second one
SECOND = pickles(("c", 3))


def flipped(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]


CORRUPTIONS: dict[str, tuple[bytes, int]] = {
    # name: (the bytes after FIRST, end of the bad range after START)
    "truncated header": (hunk_bytes(SECOND)[:5], 5),
    "truncated hunk": (hunk_bytes(SECOND)[:20], 14 + len(SECOND)),
    "flipped crc": (flipped(hunk_bytes(SECOND), 3), 14 + len(SECOND)),
    "flipped payload byte": (flipped(hunk_bytes(SECOND), 20), 14 + len(SECOND)),
    "bad zlib": (
        struct.pack("<BBIQ", 0x81, 1, zlib.crc32(SECOND), 8) + b"notzlib!",
        14 + 8,
    ),
    "zlib cut short": (
        struct.pack("<BBIQ", 0x81, 1, zlib.crc32(SECOND), 10) + zlib.compress(SECOND)[:10],
        14 + 10,
    ),
    "huge claimed length": (struct.pack("<BBIQ", 0x81, 0, 0, 2**60) + b"xyz", 14 + 2**60),
    "bytes after the zlib stream": (  # the CRC is of the inflated payload: it cannot see them
        struct.pack("<BBIQ", 0x81, 1, zlib.crc32(SECOND), len(zlib.compress(SECOND)) + 4)
        + zlib.compress(SECOND)
        + b"junk",
        14 + len(zlib.compress(SECOND)) + 4,
    ),
    "bad version byte": (b"\x82" + hunk_bytes(SECOND)[1:], 14),
    "bad compressed flag": (b"\x81\x07" + hunk_bytes(SECOND)[2:], 14),
    "not pickles, good crc": (hunk_bytes(b"garbage!"), 14 + 8),
    "pickle cut short, good crc": (hunk_bytes(SECOND[:-1]), 14 + len(SECOND) - 1),
}


@pytest.mark.parametrize("protocol", [1, 2, 4, 5])
def test_none_records_are_read_as_discos_reader_reads_them(protocol: int) -> None:
    # Disco's DiscoOutputStream writes any object as a record, None too, and its reader
    # reads them: here the file was "corrupt", "re-run the task that wrote it" (probe CN F5).
    rows = (b"x", None, ("k", None), None)
    data = hunk_bytes(pickles(*rows, protocol=protocol)) + hunk_bytes(b"")
    assert list(read_records(io.BytesIO(data), URL)) == list(rows)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_is_a_data_error_naming_url_and_byte_range(name: str, loader: Loader) -> None:
    tail, end = CORRUPTIONS[name]
    stream = read_records(io.BytesIO(FIRST + tail), URL)
    assert next(stream) == ("a", 1), "hunks before the bad one are read"
    assert next(stream) == ("b", 2)
    with pytest.raises(DataError) as caught:
        next(stream)
    message = str(caught.value)
    assert URL in message
    assert f"[{START}, {START + end})" in message, message
    assert caught.value.url == URL
    assert caught.value.span == (START, START + end)


def test_legacy_format_is_refused_by_name() -> None:
    with pytest.raises(DataError, match="legacy") as caught:
        read_bytes(b"5 apple 1 3\n")
    assert URL in str(caught.value)


@pytest.mark.parametrize("claimed", [2**40, 2**30])
def test_lying_lengths_allocate_only_what_is_there(tmp_path: Path, claimed: int) -> None:
    path = tmp_path / "lie"
    path.write_bytes(struct.pack("<BBIQ", 0x81, 0, 0, claimed) + b"x" * 1000)
    tracemalloc.start()
    try:
        with open(path, "rb") as stream, pytest.raises(DataError, match="truncated"):
            list(read_records(stream, str(path), max_hunk_size=2**50))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_big_records_read_one_after_another_hold_about_three_at_most(tmp_path: Path) -> None:
    # Five 8 MB records, each its own hunk: reading the next held the last hunk's bytes,
    # its chunks and their join at once, over 4x a record (probe DC F3).
    size = 8 << 20
    path = tmp_path / "big"
    with RecordWriter(str(path), hunk_size=1) as writer:
        for number in range(5):
            writer.write(number, bytes([number]) * size)
    tracemalloc.start()
    try:
        with open(path, "rb") as stream:
            for key, value in read_records(stream, str(path)):  # the last is held, as here
                assert value[:1] == bytes([key]) and len(value) == size
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3.3 * size, peak / size


def test_a_hunk_that_inflates_past_the_memory_a_task_has_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1.5 MB inflating toward 1 GiB under a memory limit: the stage's own MemoryError,
    # retried, with advice for the stage's memory (probe DB F11).
    class Exhausting:
        def decompress(self, data: bytes, most: int) -> bytes:
            raise MemoryError

    data = hunk_bytes(pickles(("a", 1)), compress=True) + hunk_bytes(b"", compress=True)
    monkeypatch.setattr(records.zlib, "decompressobj", Exhausting)
    with pytest.raises(MalformedRecord, match=r"inflates to more memory than this process has"):
        read_bytes(data)


@pytest.mark.parametrize("compress", [False, True])
def test_a_hunk_of_exactly_the_limit_is_read(compress: bool) -> None:
    """The limit is on hunks *over* it (stored, or inflated): one of exactly the limit is a
    real file's ("more than the limit of 121" refused a hunk of 121)."""
    payload = pickles(*[("c", 3)] * 50)  # compresses: stored under the limit, inflated to it
    data = hunk_bytes(payload, compress=compress) + hunk_bytes(b"")
    assert read_bytes(data, max_hunk_size=len(payload)) == [("c", 3)] * 50
    with pytest.raises(DataError, match="more than") as caught:
        read_bytes(data, max_hunk_size=len(payload) - 1)
    assert "max_hunk_size" not in str(caught.value)  # advice no job could follow
    assert "write such data in smaller records" in str(caught.value)


def test_records_written_one_at_a_time_are_cut_into_hunks(tmp_path: Path) -> None:
    """write() per record (a @stage's output, a done hook's) buffered a whole task's output
    as one hunk, which past 1 GiB no reader takes."""
    path = tmp_path / "one-by-one"
    with RecordWriter(str(path), hunk_size=1000) as writer:
        for index in range(500):
            writer.write(f"key-{index}", index)
    with open(path, "rb") as stream:
        hunks = list(read_hunks(stream, str(path)))
    assert len(hunks) >= 10  # 500 records of about 25 bytes, in hunks of 1,000
    assert [record for hunk in hunks for record in hunk] == [
        (f"key-{index}", index) for index in range(500)
    ]


def test_zlib_bombs_are_refused() -> None:
    bomb = hunk_bytes(b"\0" * (4 << 20), compress=True)
    assert len(bomb) < 10_000
    with pytest.raises(DataError, match="decompresses to more than") as caught:
        read_bytes(bomb, max_hunk_size=1 << 20)
    assert caught.value.span == (0, len(bomb))


@pytest.mark.parametrize("compress", [False, True])
def test_files_joined_into_one_are_read_whole(compress: bool) -> None:
    """Disco's map_shuffle joins a node's map outputs byte for byte, each with its closing
    hunk: every part is read (Disco's own reader stops at the first closing hunk of length
    0, dropping the rest of an uncompressed file)."""
    closing = hunk_bytes(b"", compress=compress)
    assert read_bytes(FIRST + closing) == [("a", 1), ("b", 2)]
    second = hunk_bytes(SECOND, compress=compress) + closing
    assert read_bytes(FIRST + closing + second + second) == [("a", 1), ("b", 2), *[("c", 3)] * 2]


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_disco_files_joined_as_map_shuffle_joins_them_give_every_record(
    name: str, reference: Path
) -> None:
    data = (reference / "records" / name).read_bytes()
    once = read_bytes(data)
    assert read_bytes(data + data + data) == once * 3


@pytest.mark.parametrize("after", [b"x", b"hello world\n", b"\0" * 20])
def test_bytes_after_a_closing_hunk_that_start_no_record_file_are_damage(after: bytes) -> None:
    joined = FIRST + hunk_bytes(b"") + after
    with pytest.raises(DataError, match="bytes follow the closing hunk") as caught:
        read_bytes(joined)
    end = len(FIRST + hunk_bytes(b""))
    assert caught.value.span == (end, end + 1)


def test_a_joined_file_cut_short_is_truncated() -> None:
    joined = FIRST + hunk_bytes(b"") + hunk_bytes(SECOND)
    with pytest.raises(DataError, match=r"ends with no closing hunk.*cut short"):
        read_bytes(joined)


def test_a_file_cut_at_the_end_of_a_hunk_is_truncated_not_short() -> None:
    """Every hunk's CRC holds, and records were lost: the closing hunk says a file is whole."""
    with pytest.raises(DataError, match=r"ends with no closing hunk.*cut short") as caught:
        read_bytes(FIRST + hunk_bytes(SECOND))
    assert caught.value.span == (len(FIRST) + len(hunk_bytes(SECOND)),) * 2
    assert read_bytes(b"") == []  # no bytes at all: no records


def test_a_zero_length_header_whose_crc_is_not_of_no_bytes_is_damage() -> None:
    """A hunk's length byte zeroed: its CRC still names bytes, so it is no closing hunk, and
    the hunks after it must not be dropped silently."""
    damaged = FIRST + struct.pack("<BBIQ", 0x81, 0, zlib.crc32(SECOND), 0) + SECOND
    with pytest.raises(DataError, match=rf"bytes \[{START}, {START + 14}\): a hunk of length 0"):
        read_bytes(damaged + hunk_bytes(b""))


@pytest.mark.parametrize(
    ("number", "fix"),
    [
        (errno.EMFILE, "raise the limit on open files (`ulimit -n`), or use fewer partitions"),
        (errno.EFBIG, "the size limit on files (`ulimit -f`)"),
        (errno.ENAMETOOLONG, "the node's data directory (DISCO_DATA, or TMPDIR here) is too"),
        (errno.ENOSPC, "check free space and permissions on the node"),
    ],
)
def test_a_file_that_cannot_be_created_says_what_to_do_about_why(
    number: int, fix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past 1,024 partitions a map task ran out of open files, and was told to check space.
    def failing(*args: Any, **kwargs: Any) -> Any:
        raise OSError(number, os.strerror(number))

    monkeypatch.setattr("builtins.open", failing)
    with pytest.raises(DataError) as info:
        RecordWriter(str(tmp_path / "out"))
    assert fix in str(info.value) and "no partial file is left behind" in str(info.value)


def test_os_errors_while_reading_are_data_errors() -> None:
    class Failing(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            raise OSError(5, "Input/output error")

    with pytest.raises(DataError, match="Input/output error"):
        list(read_records(Failing(), URL))  # type: ignore[arg-type]


# -- fuzzing --------------------------------------------------------------------

VALID = b"".join(
    [
        hunk_bytes(pickles(("a", 1), ("b", [1, 2]))),
        hunk_bytes(pickles((3, {"x": None}), ("d", b"e")), compress=True),
        hunk_bytes(b"", compress=True),
    ]
)


def outcome(data: bytes) -> list[Any] | DataError:
    """Reading must end in records or a DataError, whatever the bytes (that make no memo
    of gigabytes: see :func:`no_huge_memo`)."""
    try:
        return read_bytes(data)
    except DataError as exc:
        assert exc.url == URL
        return exc


def no_huge_memo(payload: bytes) -> bool:
    """Whether unpickling ``payload`` asks for no memo slot past a million. C's unpickler
    sizes its memo to the slot asked for: a damaged pickle whose crc matches, naming slot
    1.2 billion, takes 9 GB and seconds to zero them, or the OOM killer. Record files are
    trusted as code is (the README's "What a node trusts"), and the crc stops what a disk
    or a wire damages, so such bytes are out of this property's reach."""
    stream = io.BytesIO(payload)
    while stream.tell() < len(payload):
        try:
            for opcode, argument, _ in pickletools.genops(stream):
                if opcode.name in ("PUT", "LONG_BINPUT") and int(argument) > 1_000_000:
                    return False
        except Exception:  # any damage past here: the reader names it
            return True
    return True


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_end_in_records_or_data_error(data: bytes) -> None:
    outcome(data)
    outcome(b"\x81" + data)
    outcome(b"\x81\x00" + data)


@FUZZ
@given(st.data())
def test_mutated_files_end_in_records_or_data_error(data: st.DataObject) -> None:
    mutated = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(mutated) - 1))
        mutated[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    outcome(bytes(mutated[:cut]))


@FUZZ
@given(st.binary(min_size=1, max_size=200), st.booleans())
def test_hunks_with_good_crc_and_bad_pickles_end_in_records_or_data_error(
    payload: bytes, compress: bool
) -> None:
    assume(no_huge_memo(payload) and no_huge_memo(b"\x80\x04" + payload))
    outcome(FIRST + hunk_bytes(payload, compress=compress))
    outcome(FIRST + hunk_bytes(b"\x80\x04" + payload, compress=compress))


@FUZZ
@given(st.data(), st.sampled_from([1, 3, 4]))
def test_mutated_pickles_with_fixed_crc_end_in_records_or_data_error(
    data: st.DataObject, protocol: int
) -> None:
    rows = [("a", 1), ("b", [1.5, None]), (b"c", {"d": (2, 3)}), ("e", "e")]
    payload = bytearray(pickles(*rows, protocol=protocol))
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(payload) - 1))
        payload[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(payload)))
    assume(no_huge_memo(bytes(payload[:cut])))
    outcome(hunk_bytes(bytes(payload[:cut])))


# -- sniffing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"", False),
        (b"hello world\n", False),
        ("ünïcode".encode(), False),
        (b"\x81", True),
        (b"\x81\x00", True),
        (b"\x81\x01", True),
        (b"\x81\x02", False),
        (b"\x80\x00", False),
        (struct.pack("<BBIQ", 0x81, 0, 0, 0), True),
        (struct.pack("<BBIQ", 0x81, 0, 12345, 0), False),
        (struct.pack("<BBIQ", 0x81, 1, 12345, 100), True),
    ],
)
def test_is_record_file_prefix(head: bytes, expected: bool) -> None:
    assert is_record_file_prefix(head) is expected


@pytest.mark.parametrize("name", [*GOLDEN_FILES, "empty.disco"])
def test_golden_files_sniff_as_record_files(reference: Path, name: str) -> None:
    assert is_record_file_prefix((reference / "records" / name).read_bytes()[:14])


@contextmanager
def module_of(name: str, source: str) -> Iterator[ModuleType]:
    """A module ``name`` made of ``source``, importable while in the block."""
    module = ModuleType(name)
    exec(source, module.__dict__)
    sys.modules[name] = module
    try:
        yield module
    finally:
        del sys.modules[name]


def test_records_of_a_class_missing_here_say_so_and_not_that_the_file_is_corrupt(
    tmp_path: Path,
) -> None:
    with module_of("discodsl_test_gone_module", "class Thing:\n    pass\n") as module:
        data = write_file(tmp_path / "out", [("k", module.Thing())])
    with pytest.raises(MalformedRecord) as info:  # not retried: every attempt would fail
        read_bytes(data)
    message = str(info.value)
    assert "need a class or module this process cannot import" in message
    assert "No module named 'discodsl_test_gone_module'" in message
    assert "at the top level of a module that both import" in message
    assert "corrupt" not in message
    assert "bad hunk" not in message  # the hunk is sound: its records' class is not here
    assert "run from the directory of discodsl_test_gone_module.py" in message


def test_records_of_a_class_defined_otherwise_since_say_so_and_not_that_the_file_is_corrupt(
    tmp_path: Path,
) -> None:
    # A notebook's NamedTuple given a field after results of it were made: "the file is
    # corrupt ... read another replica", though its checksum held (probe CP F1).
    key = "from typing import NamedTuple\nclass Key(NamedTuple):\n    a: int\n"
    with module_of("discodsl_test_changed_module", key) as module:
        data = write_file(tmp_path / "out", [(module.Key(1), 1)])
        exec("class Key(NamedTuple):\n    a: int\n    extra: int\n", module.__dict__)
        with pytest.raises(MalformedRecord) as info:  # not retried: every attempt would fail
            read_bytes(data)
    message = str(info.value)
    assert "do not load with the classes they name as they are defined here" in message
    assert "missing 1 required positional argument: 'extra'" in message
    assert "run the job that wrote them again" in message
    assert "corrupt" not in message and "replica" not in message


def test_records_that_pickle_but_never_unpickle_are_named_so(tmp_path: Path) -> None:
    # An exception whose __init__ takes two arguments, an Enum member of value NaN: blamed
    # on a class "defined again since", or a corrupt file to read another replica of
    # (probe CS F16).
    source = (
        "import enum\n"
        "class ParseError(Exception):\n"
        "    def __init__(self, line, reason):\n"
        "        super().__init__(f'{line}: {reason}')\n"
        "class Color(enum.Enum):\n    NAN = float('nan')\n"
    )
    with module_of("discodsl_test_unpickled_module", source) as module:
        for value, said in (
            (module.ParseError(1, "bad"), "an exception whose __init__ takes other arguments"),
            (module.Color.NAN, "an Enum member whose value is NaN"),
        ):
            data = write_file(tmp_path / "out", [("k", value)])
            with pytest.raises(MalformedRecord) as info:
                read_bytes(data)
            message = str(info.value)
            assert said in message and "pickle.loads(pickle.dumps(value))" in message
            assert "corrupt" not in message and "replica" not in message


def test_a_hunk_of_python_2_byte_strings_is_said_to_be_python_2s_not_corrupt() -> None:
    # A Python 2 Disco worker's str with non-ASCII bytes, as its protocol 1 writes it
    # (SHORT_BINSTRING): "the file is corrupt ... re-run the task that wrote it", though
    # its checksum held and every re-run gives the same bytes.
    python2 = b"(U\x03k\xc3\xa9K\x01t."
    url = "file:///data/py2.disco"
    with pytest.raises(DamagedInput) as caught:
        list(read_records(io.BytesIO(hunk_bytes(python2) + hunk_bytes(b"")), url))
    said = str(caught.value)
    assert "Python 2" in said and "corrupt" not in said and "re-run" not in said, said


def test_a_hunk_of_a_record_then_stray_bytes_is_not_blamed_on_a_class() -> None:
    # Its TypeError was taken for a class defined otherwise since, where no class is
    # involved (probe CV F8f).
    data = hunk_bytes(pickle.dumps(("k", 1), 1) + b"junk") + hunk_bytes(b"")
    with pytest.raises(MalformedRecord) as info:
        read_bytes(data)
    message = str(info.value)
    assert "do not unpickle, though its checksum holds" in message
    assert "their writer wrote other bytes than pickles" in message
    assert "defined otherwise" not in message


def test_an_empty_record_file_whose_first_byte_is_damaged_is_named_so(reference: Path) -> None:
    # Disco's empty.disco so damaged was read as text, and given UTF-8 advice (probe CV F8a).
    data = (reference / "records" / "empty.disco").read_bytes()
    assert records.damaged_header_byte(b"\x82" + data[1:]) == 0
    assert records.damaged_header_byte(data[:1] + b"\x07" + data[2:]) == 1
    assert records.damaged_header_byte(b"text, not records\n") is None


class _BufferLost:
    """A pickler whose dump fails as CPython's does when the BytesIO it writes cannot grow:
    MemoryError, and the buffer reads as closed from then on."""

    def __init__(self, writer: records.RecordWriter) -> None:
        self.writer = writer

    def dump(self, record: Any) -> None:
        self.writer._buffer.close()
        raise MemoryError

    def clear_memo(self) -> None:
        pass


@pytest.mark.parametrize("many", [True, False], ids=["write_many", "write"])
def test_a_memory_error_that_loses_the_buffer_stays_a_memory_error(
    tmp_path: Path, many: bool
) -> None:
    # Undoing the record's half-written bytes raised "ValueError: I/O operation on closed
    # file" in its place: not retried, blamed on the stage (probe DT F4).
    writer = records.RecordWriter(str(tmp_path / "out"))
    writer.write("kept", 1)
    writer._pickler = _BufferLost(writer)  # type: ignore[assignment]
    with pytest.raises(MemoryError):
        if many:
            writer.write_many([("k", "v")])
        else:
            writer.write("k", "v")
    with pytest.raises(ValueError, match=r"lost the records it held .* open a new one"):
        writer.write("after", 2)
    writer.abort()
    assert list(tmp_path.iterdir()) == []
