"""Jobs whose first stage reads its inputs through a reader (discodsl.readers), for the
shared table (test_jobs.py) and test_readers.py."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from discodsl import job, map, readers, reduce


@reduce(combine=True)
def total(key: Any, counts: Iterable[int]) -> Iterator[tuple[Any, int]]:
    yield key, sum(counts)


# JSON lines: {"user": ..., "n": ...} per line, summed per user
@map(reader=readers.json_lines())
def user_counts(record: dict[str, Any]) -> Iterator[tuple[str, int]]:
    yield record["user"], record["n"]


@job(partitions=2)
def json_totals() -> list[Any]:
    return [user_counts, total]


def log_attempt(params: dict[str, str]) -> None:
    with open(params["log"], "a") as log:
        log.write("attempt\n")


@map(reader=readers.json_lines(), init=log_attempt)
def logged_user_counts(record: dict[str, Any]) -> Iterator[tuple[str, int]]:
    yield record["user"], record["n"]


@job
def json_attempts() -> list[Any]:
    return [logged_user_counts, total]


# CSV rows, counted
@map(reader=readers.csv_rows())
def csv_rows_seen(row: dict[str, str]) -> Iterator[tuple[str, int]]:
    yield "rows", 1


@job
def csv_count() -> list[Any]:
    return [csv_rows_seen, total]


# fixed-size records, counted by content
@map(reader=readers.fixed(4))
def chunks(record: bytes) -> Iterator[tuple[bytes, int]]:
    yield record, 1


@job
def chunk_count() -> list[Any]:
    return [chunks, total]


# whole files: their sizes
@map(reader=readers.whole_file())
def file_size(record: tuple[str, bytes]) -> Iterator[tuple[str, int]]:
    yield "bytes", len(record[1])


@job
def file_sizes() -> list[Any]:
    return [file_size, total]


JSON_GOOD = b'{"user": "ann", "n": 2}\n{"user": "bob", "n": 3}\n{"user": "ann", "n": 5}\n'

# reader -> (job, good input, its sorted results, bad input or None)
TAG_CASES: dict[str, tuple[Any, bytes, list[tuple[Any, Any]], bytes | None]] = {
    "json_lines": (json_totals, JSON_GOOD, [("ann", 7), ("bob", 3)], b'{"user": "a", "n": 1}\n{'),
    "csv_rows": (csv_count, b"a,b\n1,2\n3,4\n", [("rows", 2)], b"a,b\n1,2\n3\n"),
    "fixed": (chunk_count, b"abcdabcdwxyz", [(b"abcd", 2), (b"wxyz", 1)], b"abcdab"),
    "whole_file": (file_sizes, b"\x00\x01 any bytes", [("bytes", 12)], None),
}


def forgetful_reader(stream: Any, url: str) -> Any:
    [line.rstrip(b"\n") for line in stream]  # no return: None


@map(reader=forgetful_reader)
def forgetfully_read(record: bytes) -> Iterator[tuple[bytes, int]]:
    yield record, 1


@job(max_failures=0)
def forgetful() -> list[Any]:
    return [forgetfully_read]


def whole_text_reader(stream: Any, url: str) -> Any:
    return stream.read().decode()  # where [stream.read().decode()] was meant


@map(reader=whole_text_reader)
def read_whole(record: str) -> Iterator[tuple[str, int]]:
    yield record, 1


@job(max_failures=0)
def whole_text() -> list[Any]:
    return [read_whole]


def seeking_reader(stream: Any, url: str) -> Any:
    stream.seek(0, 2)  # as zipfile looks for its end
    return []


@map(reader=seeking_reader)
def read_by_seeking(record: bytes) -> Iterator[tuple[bytes, int]]:
    yield record, 1


@job
def seeking() -> list[Any]:
    return [read_by_seeking]


def zip_reader(stream: Any, url: str) -> Any:
    import zipfile

    with zipfile.ZipFile(stream) as archive:  # which seeks to its end first
        return [archive.namelist()]


@map(reader=zip_reader)
def read_zipped(record: Any) -> Iterator[tuple[str, int]]:
    yield str(record), 1


@job
def zipped() -> list[Any]:
    return [read_zipped]
